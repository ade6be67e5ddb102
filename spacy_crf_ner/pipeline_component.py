"""The ``crf_ner`` pipeline component: named entities from a linear-chain CRF."""
from itertools import islice
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.pipeline.ner import ner_score
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, set_dropout_rate
from thinc.types import Floats2d

from .layers import crf_decode, crf_loss, get_crf
from .tags import check_scheme, from_biluo, make_tags, to_spans

DEFAULT_CRF_LR_MULTIPLIER = 100.0

default_model_config = """
[model]
@architectures = "spacy-crf-ner.CRFTagger.v1"
nO = null

[model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 96
depth = 4
embed_size = 2000
window_size = 1
maxout_pieces = 3
subword_features = true
"""
DEFAULT_MODEL = Config().from_str(default_model_config)["model"]


@Language.factory(
    "crf_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": DEFAULT_MODEL,
        "scheme": "BILUO",
        "constrained": True,
        "crf_lr_multiplier": DEFAULT_CRF_LR_MULTIPLIER,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_crf_ner(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    scheme: str,
    constrained: bool,
    crf_lr_multiplier: float,
    scorer: Optional[Callable],
) -> "CRFEntityRecognizer":
    """Create a ``crf_ner`` component.

    model: a ``spacy-crf-ner.CRFTagger.v1`` model (an encoder, emission scores, a CRF).
    scheme: the tag scheme, ``"BILUO"`` or ``"BIO"``.
    constrained: forbid the moves the scheme forbids, in training and decoding, so every
        decoded sequence is a valid set of entities.
    crf_lr_multiplier: the CRF's learning rate as a multiple of the optimizer's.
    scorer: the scoring method (default: spaCy's NER scorer, ``ents_p/r/f`` per type).
    """
    return CRFEntityRecognizer(
        nlp.vocab,
        model,
        name,
        scheme=scheme,
        constrained=constrained,
        crf_lr_multiplier=crf_lr_multiplier,
        scorer=scorer,
    )


class CRFEntityRecognizer(TrainablePipe):
    """Predicts ``doc.ents`` with a CRF over per-token emission scores.

    ``predict`` returns, per doc, an int array of tag indices into :attr:`tags` (index 0 is
    ``O``); ``set_annotations`` turns them into ``doc.ents``.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "crf_ner",
        *,
        scheme: str = "BILUO",
        constrained: bool = True,
        crf_lr_multiplier: float = DEFAULT_CRF_LR_MULTIPLIER,
        scorer: Optional[Callable] = ner_score,
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict = {
            "labels": [],
            "scheme": check_scheme(scheme),
            "constrained": constrained,
            "crf_lr_multiplier": crf_lr_multiplier,
        }
        crf_layer = self.model.get_ref("crf")
        crf_layer.attrs["scheme"] = scheme
        crf_layer.attrs["constrained"] = constrained
        crf_layer.shims[0].lr_scale = crf_lr_multiplier

    # -- labels ------------------------------------------------------------------------------

    @property
    def labels(self) -> tuple:
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        """The labels, as ``spacy init labels`` writes them."""
        return list(self.labels)

    @property
    def tags(self) -> List[str]:
        """The tag of each emission column and CRF state; index 0 is ``O``."""
        return make_tags(self.labels, self.cfg["scheme"])

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label or "-" in label:
            raise ValueError(f"Invalid entity label {label!r}: a non-empty string without '-'")
        if label in self.labels:
            return 0
        if self.model.get_ref("crf").shims[0]._model is not None:
            raise ValueError(
                f"Cannot add label {label!r} to '{self.name}' after it was initialized: "
                "its emission layer and CRF are sized by the labels. Add it before initialize."
            )
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    # -- training ----------------------------------------------------------------------------

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        """Take the labels from ``labels`` (e.g. ``spacy init labels`` output) or the examples,
        and size the model. Every label in the examples must be known by then: this is checked
        here, before training starts, not hours into it."""
        validate_get_examples(get_examples, "CRFEntityRecognizer.initialize")
        seen = sorted({ent.label_ for eg in get_examples() for ent in eg.reference.ents})
        for label in labels if labels is not None else seen:
            self.add_label(label)
        unknown = [label for label in seen if label not in self.labels]
        if unknown:
            raise ValueError(
                f"Entity label(s) {unknown} occur in the training data of '{self.name}' but not in "
                f"its initialize labels {list(self.labels)}: add them to the labels file."
            )
        if not self.labels:
            raise ValueError(f"'{self.name}' has no labels: the training data has no entities")
        crf_layer = self.model.get_ref("crf")
        crf_layer.attrs["tags"] = self.tags
        self.model.set_dim("nO", len(self.tags))
        doc_sample = [eg.reference for eg in islice(get_examples(), 10)]
        self.model.initialize(X=doc_sample)

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd=None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        validate_examples(examples, "CRFEntityRecognizer.update")
        examples = list(examples)
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        emissions, backprop = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_emissions = self.get_loss(examples, emissions)
        backprop(d_emissions)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: List[Floats2d]):
        """The CRF's negative log-likelihood of the gold entities and its gradient with respect
        to the emission scores. Tokens with unknown gold tags are marginalised over.

        The CRF's own parameters get their gradients here too, applied by the next
        ``finish_update`` (the loss owns parameters, unlike a softmax's)."""
        validate_examples(examples, "CRFEntityRecognizer.get_loss")
        gold = [self._gold_tags(eg) for eg in examples]
        return crf_loss(self.model.get_ref("crf"), scores, gold)

    def _gold_tags(self, example: Example) -> numpy.ndarray:
        index = {tag: i for i, tag in enumerate(self.tags)}
        tags = from_biluo(example.get_aligned_ner(), self.cfg["scheme"])
        try:
            return numpy.array([-1 if tag is None else index[tag] for tag in tags], dtype="int64")
        except KeyError as err:
            label = err.args[0].partition("-")[2]
            raise ValueError(
                f"Entity label {label!r} in the example {example.reference.text[:60]!r} is not a "
                f"label of '{self.name}' {list(self.labels)}: it was not seen at initialize."
            ) from None

    # -- prediction --------------------------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> List[numpy.ndarray]:
        docs = list(docs)
        get_crf(self.model.get_ref("crf"))  # a clear error if not initialized
        if not any(len(doc) for doc in docs):
            return [numpy.zeros((0,), dtype="int64") for _ in docs]
        emissions = self.model.predict(docs)
        return crf_decode(self.model.get_ref("crf"), emissions)

    def set_annotations(self, docs: Iterable[Doc], paths: List[numpy.ndarray]) -> None:
        tags = self.tags
        for doc, path in zip(docs, paths):
            doc.set_ents(to_spans(doc, [tags[i] for i in path], self.cfg["scheme"]), default="outside")
