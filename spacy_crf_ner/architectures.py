"""Registered model architectures (referenced from configs as ``@architectures``)."""
from typing import List, Optional, Sequence

import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Linear, Model, chain, with_array
from thinc.types import Floats2d

from .layers import CRFShim, build_crf_layer, get_crf


@registry.architectures("spacy-crf-ner.CRFTagger.v1")
def build_crf_tagger(
    tok2vec: Model[List[Doc], List[Floats2d]], nO: Optional[int] = None
) -> Model[List[Doc], List[Floats2d]]:
    """Token vectors -> emission scores ``(n_tokens, n_tags)`` per doc, plus the CRF layer.

    The model's output is the emissions; the CRF (ref ``"crf"``) scores whole tag sequences
    and is used by the ``crf_ner`` component for the loss and for decoding. Its transition
    scores ``(n_tags, n_tags)`` are the only parameters besides the encoder's and the linear
    emission layer's.

    tok2vec: any encoder giving one vector per token (a CNN ``Tok2Vec``, a
        ``TransformerListener``, a ``Tok2VecListener``).
    nO: the number of tags, usually left unset and inferred from the labels at initialize.
    """
    width = tok2vec.get_dim("nO") if tok2vec.has_dim("nO") else None
    # Random (Glorot) weights, not zeros: with zero weights the encoder gets no gradient until
    # they grow, and a transformer at ~5e-5 then learns nothing in 100 steps (dev F1 0 against
    # 0.93 on the demo corpus). A fresh component is kept quiet by its untrained labels instead.
    output = Linear(nO=nO, nI=width)
    emission = chain(tok2vec, with_array(output))
    crf = build_crf_layer()
    return Model(
        "crf_tagger",
        _forward,
        init=_init,
        layers=[emission, crf],
        refs={"tok2vec": tok2vec, "output": output, "crf": crf},
        dims={"nO": nO},
    )


def _forward(model: Model, docs: List[Doc], is_train: bool):
    return model.layers[0](docs, is_train)


def _init(model: Model, X=None, Y=None) -> Model:
    n_tags = model.get_dim("nO")
    output = model.get_ref("output")
    if output.has_dim("nO") is not True:
        output.set_dim("nO", n_tags)
    model.layers[0].initialize(X=X)
    model.get_ref("crf").initialize()
    return model


def replace_output_layer(model: Model, n_tags: int) -> Model:
    """Put a new, uninitialized emission layer for ``n_tags`` tags in the model and return it.
    A new object, so that optimizers keep no moments of the old one's shape for it."""
    old_output = model.get_ref("output")
    width = old_output.get_dim("nI") if old_output.has_dim("nI") else None
    output = Linear(nO=n_tags, nI=width)
    emission = model.layers[0]  # chain(tok2vec, with_array(output))
    emission.layers[-1].layers[0] = output
    for layer in (model, emission, emission.layers[-1]):
        if layer.has_dim("nO"):
            layer.set_dim("nO", n_tags, force=True)
    model.set_ref("output", output)
    return output


def resize_crf_tagger(model: Model, tags: Sequence[str]) -> None:
    """Grow an initialized model to ``tags``, whose first ``nO`` entries are its current tags.

    The emission layer gets zero weights and biases for the new tags, the CRF zero start, end
    and transition scores to and from them; every old score is kept. The emission layer and the
    CRF's shim are new objects (as spaCy's parser does when it resizes), so an optimizer holding
    moments of the old shapes starts fresh for them instead of failing on the shapes.
    """
    old_output, crf_layer = model.get_ref("output"), model.get_ref("crf")
    n_old = old_output.get_dim("nO")
    if len(tags) < n_old:
        raise ValueError(f"Cannot shrink the model from {n_old} to {len(tags)} tags")
    output = replace_output_layer(model, len(tags))
    output.initialize()
    output.get_param("W")[:n_old] = old_output.get_param("W")
    output.get_param("b")[:n_old] = old_output.get_param("b")

    old_crf = get_crf(crf_layer)
    crf_layer.attrs["tags"] = list(tags)
    crf_layer.shims[0] = CRFShim(lr_scale=crf_layer.shims[0].lr_scale)
    crf_layer.initialize()
    with torch.no_grad():
        crf = get_crf(crf_layer)
        crf.start_transitions[:n_old] = old_crf.start_transitions
        crf.end_transitions[:n_old] = old_crf.end_transitions
        crf.transitions[:n_old, :n_old] = old_crf.transitions
