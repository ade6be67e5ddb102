"""Thinc's CPU ops with PyTorch's matrix product: a faster CPU CNN, same arithmetic.

A spaCy CNN (``HashEmbed`` + ``Maxout`` + ``MaxoutWindowEncoder``) spends most of its training
and prediction time in ``Ops.gemm``, which Thinc's ``NumpyOps`` runs on its bundled BLIS, on one
thread. :class:`TorchGemmOps` is ``NumpyOps`` with ``gemm`` done by ``torch.matmul`` on the same
float32 numpy buffers (no copies), also on one thread: the same products, summed in another
order (float32 rounding apart, identical results). On the AMD EPYC (AVX-512) of this project's
machine a (1000 x 512) @ (512 x 384) product took 12.5 ms with BLIS, 4.1 ms with torch; the
Chinese CNN's training step 1.6x less time (bench/results/msra_tuning.md). Thinc's own
alternative, ``NumpyOps(use_blis=False)`` (numpy's BLAS), is as fast on one thread, but numpy's
BLAS threads can only be limited before numpy is imported (or with threadpoolctl): on shared
cores its default threads made the step 3x slower than BLIS.

Use it from a config; it applies whenever the pipeline is built, for training and by
``spacy.load``::

    [nlp.after_pipeline_creation]
    @callbacks = "spacy-crf-ner.torch_gemm_ops.v1"

It changes nothing on a GPU (CuPy ops stay) nor for ops other than plain ``NumpyOps``.
"""
from typing import Callable, Optional

import numpy
import torch
from spacy.language import Language
from spacy.util import registry
from thinc.api import Model, NumpyOps

from .crf import one_intra_op_thread


@registry.ops("TorchGemmOps")
class TorchGemmOps(NumpyOps):
    """``NumpyOps`` whose ``gemm`` is ``torch.matmul`` on one intra-op thread (as BLIS runs)."""

    name = "torch_gemm"

    def gemm(
        self,
        x: numpy.ndarray,
        y: numpy.ndarray,
        out: Optional[numpy.ndarray] = None,
        trans1: bool = False,
        trans2: bool = False,
    ) -> numpy.ndarray:
        """``op(x) @ op(y)``, op transposing where ``trans1`` / ``trans2``: x ``(m, k)`` (or
        ``(k, m)``), y ``(k, n)`` (or ``(n, k)``), float32; the result ``(m, n)``, written into
        ``out`` when given (then returned)."""
        if x.ndim != 2 or y.ndim != 2:
            raise ValueError(f"gemm takes 2-dimensional arrays, got shapes {x.shape} and {y.shape}")
        if x.dtype != numpy.float32 or y.dtype != numpy.float32:
            raise ValueError(f"gemm takes float32 arrays, got {x.dtype} and {y.dtype}")
        left, right = torch.from_numpy(x), torch.from_numpy(y)
        if trans1:
            left = left.T
        if trans2:
            right = right.T
        # One thread, as BLIS: on shared cores a second BLAS thread waits for a busy core.
        with one_intra_op_thread():
            if out is None:
                return torch.matmul(left, right).numpy()
            torch.matmul(left, right, out=torch.from_numpy(out))
        return out


@registry.callbacks("spacy-crf-ner.torch_gemm_ops.v1")
def make_torch_gemm_ops() -> Callable[[Language], Language]:
    """An ``[nlp.after_pipeline_creation]`` callback: every layer of the pipeline's models that
    runs on Thinc's plain CPU ``NumpyOps`` gets :class:`TorchGemmOps` instead. Only this
    pipeline's models change (not Thinc's current ops, which other pipelines would inherit)."""

    def use_torch_gemm(nlp: Language) -> Language:
        ops = TorchGemmOps()
        for _, component in nlp.components:
            model = getattr(component, "model", None)
            if isinstance(model, Model):
                for layer in model.walk():
                    if type(layer.ops) is NumpyOps:
                        layer.ops = ops
        return nlp

    return use_torch_gemm
