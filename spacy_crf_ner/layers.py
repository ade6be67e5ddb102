"""Thinc layers: the CRF as a Thinc model, with its own learning rate.

The CRF's parameters live in a PyTorch module (:class:`~spacy_crf_ner.crf.ConstrainedCRF`) held
by a :class:`CRFShim`. The shim is part of the pipeline's model tree, so ``nlp.update`` /
``spacy train`` apply its gradients through the usual ``finish_update(optimizer)``: the only
difference from Thinc's ``PyTorchShim`` is that it passes ``lr_scale`` to the optimizer.
"""
import contextlib
import io
from typing import List, Optional, Sequence, Tuple

import numpy
import torch
from thinc.api import Model, Optimizer, get_torch_default_device, torch2xp, xp2torch
from thinc.shims import PyTorchShim
from thinc.types import Floats2d

from .crf import ConstrainedCRF, lengths_to_mask, one_intra_op_thread
from .tags import transition_constraints


class CRFShim(PyTorchShim):
    """A ``PyTorchShim`` whose parameters train at ``lr_scale`` times the optimizer's rate.

    Thinc's ``PyTorchShim.finish_update`` calls ``optimizer(key, weights, grad)`` without
    ``lr_scale``, and Adam is invariant to the gradient's scale, so scaling the rate has to
    happen here. The shim also looks up parameter averages under the key the optimizer stores
    them with, ``(shim.id, name)``: ``PyTorchShim.use_params`` looks for another key, so
    averaged weights (``use_averages``) never reach a plain PyTorch-wrapped model.
    """

    def __init__(self, model: Optional[ConstrainedCRF] = None, lr_scale: float = 1.0):
        super().__init__(model, serialize_model=_serialize_crf, deserialize_model=_deserialize_crf)
        self.lr_scale = lr_scale

    def finish_update(self, optimizer: Optimizer) -> None:
        for name, param in self._model.named_parameters():
            if param.grad is None:
                continue
            if not self._grad_scaler.found_inf and self.lr_scale != 0.0:
                if isinstance(optimizer, Optimizer):
                    weights, _ = optimizer(
                        (self.id, name), torch2xp(param.data), torch2xp(param.grad), lr_scale=self.lr_scale
                    )
                else:
                    # Language.rehearse passes a function that only collects (key, weights,
                    # gradient), applied later by the optimizer at its own rate: hand it a copy
                    # of the gradient, which is zeroed below.
                    weights, _ = optimizer((self.id, name), torch2xp(param.data), torch2xp(param.grad).copy())
                param.data = xp2torch(weights, requires_grad=True, device=param.device)
            param.grad.zero_()
        self._grad_scaler.update()

    @contextlib.contextmanager
    def use_params(self, params):
        backup = {}
        for name, param in self._model.named_parameters():
            if (self.id, name) in params:
                backup[name] = param.data.clone()
                param.data = xp2torch(params[(self.id, name)], device=param.device)
        try:
            yield
        finally:
            for name, param in self._model.named_parameters():
                if name in backup:
                    param.data = backup[name]


def _serialize_crf(crf: Optional[ConstrainedCRF]) -> bytes:
    # A pipeline saved before initialize has no CRF yet (spaCy's ner and tagger save fine
    # uninitialized): empty bytes stand for "not built".
    if crf is None:
        return b""
    filelike = io.BytesIO()
    torch.save(crf.state_dict(), filelike)
    return filelike.getvalue()


def _deserialize_crf(model, state_bytes: bytes, device) -> Optional[ConstrainedCRF]:
    # The CRF is sized by the label count, which a freshly constructed pipeline does not know
    # yet: rebuild it from the saved state (sizes and constraints included) instead of loading
    # into an existing module.
    if not state_bytes:
        return None
    return ConstrainedCRF.from_state_bytes(state_bytes, device)


def build_crf_layer(lr_scale: float = 1.0) -> Model:
    """A Thinc layer holding the CRF. It has no forward pass of its own: the functions below
    (:func:`crf_loss`, the component's ``predict``) use it. Its CRF is built in ``initialize`` from
    ``attrs["tags"]`` and ``attrs["scheme"]``, which the component sets, with
    ``attrs["constrained"]`` (forbidden moves on or off). Its start, end and transition scores
    start at 0."""
    return Model(
        "crf",
        _no_forward,
        init=_init_crf,
        shims=[CRFShim(lr_scale=lr_scale)],
        attrs={"tags": [], "scheme": "BILUO", "constrained": True},
    )


def _no_forward(model, X, is_train):
    raise NotImplementedError("the CRF layer has no forward pass: use crf_loss, or get_crf for decoding")


def _init_crf(model: Model, X=None, Y=None) -> Model:
    tags = model.attrs["tags"]
    if not tags:
        raise ValueError("The CRF layer needs its tag list (attrs['tags']) before initialize")
    masks = [None, None, None]
    if model.attrs["constrained"]:
        masks = [torch.from_numpy(m) for m in transition_constraints(tags, model.attrs["scheme"])]
    crf = ConstrainedCRF(len(tags), *masks)
    # Zero scores, not torchcrf's random ones: the transitions start neutral and learn at their
    # own rate; with use_crf=False the component trains them at rate 0, so they stay zero (a
    # softmax head).
    for param in crf.parameters():
        torch.nn.init.zeros_(param)
    model.shims[0]._model = crf.to(get_torch_default_device())
    return model


def has_crf(model: Model) -> bool:
    """Whether the CRF layer's PyTorch CRF is built (by initialize, or loaded)."""
    return model.shims[0]._model is not None


def drop_crf(model: Model) -> None:
    """Forget the CRF layer's PyTorch CRF, so the next initialize builds one for the current tags."""
    model.shims[0]._model = None


def get_crf(model: Model) -> ConstrainedCRF:
    """The PyTorch CRF inside the CRF layer."""
    crf = model.shims[0]._model
    if crf is None:
        raise ValueError("The CRF layer is not initialized: call nlp.initialize() first")
    return crf


def pad_emissions(model: Model, emissions: List[Floats2d], requires_grad: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-doc emissions, a list of ``(n_i, T)`` arrays, as one ``(B, L, T)`` tensor on the
    CRF's device, and the ``(B, L)`` bool mask of real tokens."""
    crf = get_crf(model)
    device = crf.transitions.device
    lengths = torch.tensor([len(e) for e in emissions], dtype=torch.long, device=device)
    if not emissions or int(lengths.max()) == 0:
        padded = torch.zeros((len(emissions), 0, crf.num_tags), device=device, requires_grad=requires_grad)
    else:
        padded = xp2torch(model.ops.pad(emissions), requires_grad=requires_grad, device=device)
    return padded, lengths_to_mask(lengths, padded.shape[1])


def crf_loss(
    model: Model, emissions: List[Floats2d], gold: Sequence[numpy.ndarray]
) -> Tuple[float, List[Floats2d]]:
    """Negative log-likelihood of the gold tags, summed over the batch, and its gradient with
    respect to each doc's emissions ``(n_i, T)``.

    ``gold[i]`` is an int array of tag indices for doc i, ``-1`` where the tag is unknown
    (those tokens are marginalised over). As in any CRF, the loss owns parameters: the CRF's
    gradients accumulate in the shim and are applied by the next ``finish_update``.
    """
    padded, mask = pad_emissions(model, emissions, requires_grad=True)
    tags = torch.full(mask.shape, -1, dtype=torch.long, device=padded.device)
    for i, doc_tags in enumerate(gold):
        tags[i, : len(doc_tags)] = torch.as_tensor(doc_tags, dtype=torch.long)
    with one_intra_op_thread():  # tiny tensors: see one_intra_op_thread
        nll = -get_crf(model)(padded, tags, mask, reduction="sum")
        nll.backward()
    d_padded = torch2xp(padded.grad)
    return float(nll.detach()), [d_padded[i, : len(e)] for i, e in enumerate(emissions)]
