"""The ``crf_ner`` pipeline component: named entities from a linear-chain CRF."""
from itertools import islice
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence

import numpy
import torch
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, set_dropout_rate
from thinc.types import Floats2d

from .calibration import fit_temperature, held_out_entities, tempered
from .confidence import Analysis, Entity, entity_probabilities, kbest_analyses, likely_entities
from .layers import crf_loss, get_crf, pad_emissions
from .scoring import score_ner_calibration
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
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans"],
    default_config={
        "model": DEFAULT_MODEL,
        "scheme": "BILUO",
        "constrained": True,
        "use_crf": True,
        "crf_lr_multiplier": DEFAULT_CRF_LR_MULTIPLIER,
        "confidences": True,
        "spans_key": None,
        "threshold": None,
        "scorer": {"@scorers": "spacy-crf-ner.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_ece": 0.0, "ents_per_type": None},
)
def make_crf_ner(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    scheme: str,
    constrained: bool,
    use_crf: bool,
    crf_lr_multiplier: float,
    confidences: bool,
    spans_key: Optional[str],
    threshold: Optional[float],
    scorer: Optional[Callable],
) -> "CRFEntityRecognizer":
    """Create a ``crf_ner`` component.

    model: a ``spacy-crf-ner.CRFTagger.v1`` model (an encoder, emission scores, a CRF).
    scheme: the tag scheme, ``"BILUO"`` or ``"BIO"``.
    constrained: forbid the moves the scheme forbids, in training and decoding, so every
        decoded sequence is a valid set of entities.
    crf_lr_multiplier: the CRF's learning rate as a multiple of the optimizer's.
    confidences: also store each entity's probability: ``doc.spans[spans_key]`` holds the
        entities, ``.attrs["scores"]`` their probabilities in order.
    spans_key: the ``doc.spans`` key for the confidences (default: the component's name).
    threshold: if set, the span group also holds every other labelled span whose probability
        is at least this (high-recall candidates; ``doc.ents`` is unchanged).
    scorer: the scoring method (default: spaCy's NER scores, ``ents_p/r/f`` per type, plus the
        confidences' calibration, ``ents_ece`` and more: ``spacy-crf-ner.ner_scorer.v1``).
    """
    return CRFEntityRecognizer(
        nlp.vocab,
        model,
        name,
        scheme=scheme,
        constrained=constrained,
        use_crf=use_crf,
        crf_lr_multiplier=crf_lr_multiplier,
        confidences=confidences,
        spans_key=spans_key,
        threshold=threshold,
        scorer=scorer,
    )


class Predictions(NamedTuple):
    """What ``predict`` gives ``set_annotations``, one entry per doc: the best tag path (tag
    indices, ``(n_tokens,)``), its entities, and the spans and probabilities for the span group
    (empty lists when confidences are off)."""

    paths: List[numpy.ndarray]
    ents: List[List[Entity]]
    spans: List[List[Entity]]
    scores: List[numpy.ndarray]


class CRFEntityRecognizer(TrainablePipe):
    """Predicts ``doc.ents`` with a CRF over per-token emission scores, and optionally each
    entity's probability in ``doc.spans[spans_key]`` (as spaCy's ``spancat`` stores scores).

    Tag paths are arrays of indices into :attr:`tags` (index 0 is ``O``).
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "crf_ner",
        *,
        scheme: str = "BILUO",
        constrained: bool = True,
        use_crf: bool = True,
        crf_lr_multiplier: float = DEFAULT_CRF_LR_MULTIPLIER,
        confidences: bool = True,
        spans_key: Optional[str] = None,
        threshold: Optional[float] = None,
        scorer: Optional[Callable] = score_ner_calibration,
    ) -> None:
        if threshold is not None and not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict = {
            "labels": [],
            "scheme": check_scheme(scheme),
            "constrained": constrained,
            "use_crf": use_crf,
            "crf_lr_multiplier": crf_lr_multiplier,
            "confidences": confidences,
            "spans_key": spans_key,
            "threshold": threshold,
            # Set by calibrate(): the CRF's scores are divided by it for every probability
            # the component reports (never for decoding, which it would not change).
            "temperature": 1.0,
        }
        crf_layer = self.model.get_ref("crf")
        crf_layer.attrs["scheme"] = scheme
        crf_layer.attrs["constrained"] = constrained
        crf_layer.attrs["transitions"] = use_crf
        # A rate of 0 keeps the zero scores of use_crf=False exactly (Adam's step and its
        # weight decay are both scaled by it), also after save and load.
        crf_layer.shims[0].lr_scale = crf_lr_multiplier if use_crf else 0.0

    # -- labels ------------------------------------------------------------------------------

    @property
    def labels(self) -> tuple:
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        """The labels, as ``spacy init labels`` writes them."""
        return list(self.labels)

    @property
    def spans_key(self) -> str:
        return self.cfg["spans_key"] or self.name

    @property
    def tags(self) -> List[str]:
        """The tag of each emission column and CRF state; index 0 is ``O``."""
        return make_tags(self.labels, self.cfg["scheme"])

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label:
            raise ValueError(f"Invalid entity label {label!r}: a non-empty string")
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
        index = {tag: i for i, tag in enumerate(self.tags)}
        gold = [self._gold_tags(eg, index) for eg in examples]
        return crf_loss(self.model.get_ref("crf"), scores, gold)

    def _gold_tags(self, example: Example, index: Dict[str, int]) -> numpy.ndarray:
        """Tag indices of the gold entities, -1 where the annotation is missing."""
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

    def predict(self, docs: Iterable[Doc]) -> Predictions:
        docs = list(docs)
        crf = get_crf(self.model.get_ref("crf"))
        tags, scheme = self.tags, self.cfg["scheme"]
        with torch.no_grad():
            emissions, mask = self._emissions(docs)
            _, best = crf.viterbi(emissions, mask)
            best = best.cpu().numpy()
            paths = [best[i, : len(doc)] for i, doc in enumerate(docs)]
            ents = [
                [(span.label_, span.start, span.end) for span in to_spans(doc, [tags[t] for t in path], scheme)]
                for doc, path in zip(docs, paths)
            ]
            if self.cfg["threshold"] is not None or self.cfg["confidences"]:
                crf, emissions = tempered(crf, emissions, self.cfg["temperature"])
            if self.cfg["threshold"] is not None:
                spans, scores = likely_entities(crf, emissions, mask, ents, tags, scheme, self.cfg["threshold"])
            elif self.cfg["confidences"]:
                spans, scores = ents, entity_probabilities(crf, emissions, mask, ents, tags, scheme)
            else:
                spans, scores = [[] for _ in docs], [numpy.zeros((0,), dtype="float32") for _ in docs]
        return Predictions(paths, ents, spans, scores)

    def set_annotations(self, docs: Iterable[Doc], predictions: Predictions) -> None:
        store = self.cfg["confidences"] or self.cfg["threshold"] is not None
        for doc, ents, spans, scores in zip(docs, predictions.ents, predictions.spans, predictions.scores):
            doc.set_ents([Span(doc, start, end, label=label) for label, start, end in ents], default="outside")
            if store:
                group = [Span(doc, start, end, label=label) for label, start, end in spans]
                doc.spans[self.spans_key] = SpanGroup(
                    doc, name=self.spans_key, spans=group, attrs={"scores": [float(p) for p in scores]}
                )

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        """The scorer's scores; it gets the span group's key resolved (the cfg has None for
        "the component's name")."""
        return super().score(examples, **{"spans_key": self.spans_key, **kwargs})

    # -- calibration -------------------------------------------------------------------------

    def calibrate(self, examples: Iterable[Example], *, nlp: Optional[Language] = None, batch_size: int = 256) -> Dict[str, Any]:
        """Fit the temperature of the CRF's probabilities on held-out ``examples`` (never the
        data you score) and store it in ``cfg["temperature"]``, saved with the component.
        ``doc.ents`` stay exactly as they are; the entity probabilities, threshold candidates and
        k-best probabilities become calibrated (see :mod:`spacy_crf_ner.calibration`).

        examples: gold entities in ``example.reference``. Their predicted docs are copied, not
        changed. If this component listens to an earlier one (a tok2vec or transformer), pass
        ``nlp``: the components before this one are run on the copies first.
        Returns what :func:`~spacy_crf_ner.calibration.fit_temperature` returns: the
        temperature, and the calibration error (ECE, 10 bins), Brier score, log loss and mean
        confidence on these examples before and after.
        """
        examples = list(examples)
        validate_examples(examples, "CRFEntityRecognizer.calibrate")
        batches = held_out_entities(self, examples, nlp=nlp, batch_size=batch_size)
        crf = get_crf(self.model.get_ref("crf"))
        result = fit_temperature(crf, batches, self.tags, self.cfg["scheme"], previous=self.cfg["temperature"])
        self.cfg["temperature"] = result["temperature"]
        return result

    def kbest(self, docs: Iterable[Doc], k: int = 5) -> List[List[Analysis]]:
        """The ``k`` best analyses of each doc, best first: ``Analysis(score, probability,
        tags, ents)``, with ``probability`` the CRF's exact probability of that tag path, at the
        calibrated temperature (``score`` is the path's score divided by it)."""
        docs = list(docs)
        crf = get_crf(self.model.get_ref("crf"))
        with torch.no_grad():
            emissions, mask = self._emissions(docs)
            crf, emissions = tempered(crf, emissions, self.cfg["temperature"])
            return kbest_analyses(crf, emissions, mask, docs, self.tags, self.cfg["scheme"], k)

    def _emissions(self, docs: List[Doc]):
        """``(B, L, T)`` emissions on the CRF's device and the ``(B, L)`` mask of real tokens."""
        get_crf(self.model.get_ref("crf"))  # a clear error if not initialized
        if any(len(doc) for doc in docs):
            scores = self.model.predict(docs)
        else:  # like spaCy's tagger, don't run the encoder on nothing
            scores = [self.model.ops.alloc2f(0, len(self.tags)) for _ in docs]
        return pad_emissions(self.model.get_ref("crf"), scores)


def entity_confidences(doc: Doc, key: str = "crf_ner") -> List[tuple]:
    """``[(entity span, probability), ...]`` for the spans ``crf_ner`` stored under ``key``."""
    group = doc.spans[key]
    return list(zip(group, group.attrs["scores"]))
