"""Registered model architectures (referenced from configs as ``@architectures``)."""
from typing import List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Linear, Model, chain, with_array
from thinc.types import Floats2d

from .layers import build_crf_layer


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
