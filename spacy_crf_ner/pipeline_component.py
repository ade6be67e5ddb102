"""The ``crf_ner`` pipeline component: named entities from a linear-chain CRF."""
from itertools import islice
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Union

import numpy
import torch
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, set_dropout_rate
from thinc.types import Floats2d

from .architectures import replace_output_layer, resize_crf_tagger
from .calibration import fit_temperature, held_out_entities, tempered
from .confidence import Analysis, Entity, entity_probabilities, kbest_analyses, likely_entities
from .crf import IMPOSSIBLE, ConstrainedCRF, one_intra_op_thread
from .layers import crf_loss, drop_crf, get_crf, has_crf, pad_emissions
from .objectives import negative_examples_loss, rehearsal_loss
from .scoring import score_ner_calibration
from .tags import check_scheme, from_biluo, make_tags, span_tags, to_spans

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
        "overwrite_ents": False,
        "incorrect_spans_key": None,
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
    overwrite_ents: bool,
    incorrect_spans_key: Optional[str],
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
    overwrite_ents: False (default, as spaCy's ``ner``): keep the entities and blocked tokens
        already on the doc and predict around them (the most likely path that agrees with them);
        True: replace ``doc.ents`` entirely, as ``entity_ruler``'s ``overwrite_ents`` does.
    incorrect_spans_key: the ``doc.spans`` key of negative examples in the training data:
        spans known NOT to be entities of their label (as spaCy's ``ner``).
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
        overwrite_ents=overwrite_ents,
        incorrect_spans_key=incorrect_spans_key,
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

    Unless ``overwrite_ents`` is set, the entities already on a doc (from an ``entity_ruler``,
    by hand) and its blocked tokens (``doc.set_ents(blocked=...)``) constrain decoding: each
    doc's annotation becomes a ``(n_tokens, T)`` allowed-tags mask (:meth:`_allowed_tags`), and
    disallowed tags get the emission score ``IMPOSSIBLE``, so Viterbi, the confidences and the
    k-best analyses all see the same distribution, the CRF's restricted to the paths that
    agree with the doc. As in spaCy's ``ner``, tokens preset as outside (``O``) and tokens with
    no annotation are free.
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
        overwrite_ents: bool = False,
        incorrect_spans_key: Optional[str] = None,
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
            "overwrite_ents": overwrite_ents,
            "incorrect_spans_key": incorrect_spans_key,
            # Labels added to an initialized model and not yet updated: their tags stay out of
            # decoding, so adding a label changes no prediction until the model is trained.
            "untrained_labels": [],
            # Set by calibrate(): the CRF's scores are divided by it for every probability
            # the component reports (never for decoding, which it would not change).
            "temperature": 1.0,
        }
        # Set by nlp.resume_training(): the model as it was, for rehearse().
        self._rehearsal_model: Optional[Model] = None
        crf_layer = self.model.get_ref("crf")
        crf_layer.attrs["scheme"] = scheme
        crf_layer.attrs["constrained"] = constrained
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
    def crf(self) -> ConstrainedCRF:
        """The PyTorch CRF inside the model (an error if the component is not initialized)."""
        return get_crf(self.model.get_ref("crf"))

    @property
    def spans_key(self) -> str:
        return self.cfg["spans_key"] or self.name

    @property
    def tags(self) -> List[str]:
        """The tag of each emission column and CRF state; index 0 is ``O``."""
        return make_tags(self.labels, self.cfg["scheme"])

    @property
    def is_initialized(self) -> bool:
        return has_crf(self.model.get_ref("crf"))

    def add_label(self, label: str) -> int:
        """Add an entity label; 1 if it is new, else 0. After initialize the model grows (new
        emission columns, CRF rows and columns, all zero) and the label's tags stay out of
        decoding until the next ``update``, so its predictions do not change until trained."""
        if not isinstance(label, str) or not label:
            raise ValueError(f"Invalid entity label {label!r}: a non-empty string")
        if label in self.labels:
            return 0
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        if self.is_initialized:
            resize_crf_tagger(self.model, self.tags)
            self.cfg["untrained_labels"].append(label)
        return 1

    # -- training ----------------------------------------------------------------------------

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Union[Sequence[str], Mapping[str, Mapping[str, int]]]] = None,
    ) -> None:
        """Take the labels from ``labels`` (``spacy init labels`` output, for ``crf_ner`` a list,
        for spaCy's ``ner`` a dict of moves) or the examples, and build the model afresh (a
        second call re-initializes, as ``ner`` does). With no labels at all the component
        predicts nothing, and learns the labels its ``update`` examples bring. Every label in
        the examples must be in ``labels``: this is checked here, not hours into training."""
        validate_get_examples(get_examples, "CRFEntityRecognizer.initialize")
        seen = sorted({ent.label_ for eg in get_examples() for ent in eg.reference.ents})
        new_labels = labels_from_label_data(labels, self.name) if labels is not None else seen
        unknown = [label for label in seen if label not in new_labels]
        if unknown:
            raise ValueError(
                f"Entity label(s) {unknown} occur in the training data of '{self.name}' but not in "
                f"its initialize labels {list(new_labels)}: add them to the labels file."
            )
        if self.is_initialized:  # again: start from a new emission layer and CRF, as ner does
            replace_output_layer(self.model, len(make_tags(new_labels, self.cfg["scheme"])))
        crf_layer = self.model.get_ref("crf")
        drop_crf(crf_layer)  # built below, so add_label has nothing to resize
        self.cfg["labels"], self.cfg["untrained_labels"] = [], []
        for label in new_labels:
            self.add_label(label)
        crf_layer.attrs["tags"] = self.tags
        self.model.set_dim("nO", len(self.tags), force=True)
        doc_sample = [eg.reference for eg in islice(get_examples(), 10)]
        self.model.initialize(X=doc_sample)
        # A fresh model predicts no entities (as its random emission weights would) until its
        # first update: its labels' tags stay out of decoding until then.
        self.cfg["untrained_labels"] = list(self.labels)

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
        # As spaCy's ner: a label first seen here is added (the model grows) and trained.
        for label in sorted({ent.label_ for eg in examples for ent in eg.reference.ents}):
            self.add_label(label)
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        emissions, backprop = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_emissions = self.get_loss(examples, emissions)
        backprop(d_emissions)
        if sgd is not None:
            self.finish_update(sgd)
        self.cfg["untrained_labels"] = []
        losses[self.name] += loss
        return losses

    def rehearse(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd=None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Pull the model towards the one ``nlp.resume_training()`` saw, on ``examples``' texts
        (their annotation is not used), against forgetting while training on new data.

        The target is the old model's distribution over tag paths; the loss is its KL
        divergence from the current model's, restricted to the old model's tags (as ``ner``,
        labels added since are not supervised by rehearsal)."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        if self._rehearsal_model is None:
            raise ValueError(
                f"'{self.name}' has no model to rehearse: call nlp.resume_training() before nlp.rehearse()"
            )
        validate_examples(examples, "CRFEntityRecognizer.rehearse")
        docs = [eg.predicted for eg in examples]
        if not any(len(doc) for doc in docs):
            return losses
        set_dropout_rate(self.model, drop)
        emissions, backprop = self.model.begin_update(docs)
        old_emissions = self._rehearsal_model.predict(docs)
        loss, d_emissions = rehearsal_loss(
            self.model.get_ref("crf"), emissions, self._rehearsal_model.get_ref("crf"), old_emissions
        )
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
        examples = list(examples)
        index = {tag: i for i, tag in enumerate(self.tags)}
        gold = [self._gold_tags(eg, index) for eg in examples]
        negatives = [self._negative_spans(eg) for eg in examples]
        if any(negatives):
            return negative_examples_loss(self.model.get_ref("crf"), scores, gold, negatives, self.cfg["scheme"])
        return crf_loss(self.model.get_ref("crf"), scores, gold)

    def _negative_spans(self, example: Example) -> List[Entity]:
        """The example's spans under ``incorrect_spans_key`` that the model could predict (the
        others need no training), as ``(label, start, end)`` over the predicted doc's tokens."""
        key = self.cfg["incorrect_spans_key"]
        if key is None or key not in example.reference.spans:
            return []
        rejected = example.reference.spans[key]
        gold = {(ent.start_char, ent.end_char, ent.label_) for ent in example.reference.ents}
        for span in rejected:
            if (span.start_char, span.end_char, span.label_) in gold:
                raise ValueError(
                    f"The span {span.text!r} ({span.start_char}, {span.end_char}, {span.label_!r}) of "
                    f"{example.reference.text[:60]!r} is both a gold entity and in doc.spans[{key!r}], "
                    "the spans known not to be entities."
                )
        aligned = example.get_aligned_spans_y2x([span for span in rejected if span.label_ in self.labels])
        return [(span.label_, span.start, span.end) for span in aligned]

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
        crf = self.crf
        tags, scheme = self.tags, self.cfg["scheme"]
        with torch.no_grad():
            emissions, mask, _ = self._emissions(docs)
        # The CRF's tensors are tiny: one intra-op thread keeps its cost the same on a busy machine.
        with torch.no_grad(), one_intra_op_thread():
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
        """Set ``doc.ents``: the predicted entities, plus (unless ``overwrite_ents``) the doc's
        own entities (``kb_id`` and ``id`` kept) and blocked tokens (still blocked)."""
        store = self.cfg["confidences"] or self.cfg["threshold"] is not None
        for doc, ents, spans, scores in zip(docs, predictions.ents, predictions.spans, predictions.scores):
            predicted = [Span(doc, start, end, label=label) for label, start, end in ents]
            if self.cfg["overwrite_ents"]:
                doc.set_ents(predicted, default="outside")
            else:
                preset, blocked = list(doc.ents), blocked_tokens(doc)
                taken = {i for ent in preset for i in range(ent.start, ent.end)} | set(blocked)
                # The decoding constraints keep a constrained model's entities off the doc's own
                # (a preset entity of one of its labels comes back as the same span, kept as the
                # doc's); an unconstrained one may decode an entity over them: it is dropped.
                new = [span for span in predicted if taken.isdisjoint(range(span.start, span.end))]
                doc.set_ents(preset + new, blocked=[doc[i : i + 1] for i in blocked], default="outside")
            if store:
                # Without a threshold the group holds the predicted entities themselves (the same
                # list): their Span objects serve both (each keeps its own copy of the spans).
                group = predicted if spans is ents else [Span(doc, start, end, label=label) for label, start, end in spans]
                doc.spans[self.spans_key] = SpanGroup(doc, name=self.spans_key, spans=group, attrs={"scores": scores.tolist()})

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
        result = fit_temperature(self.crf, batches, self.tags, self.cfg["scheme"], previous=self.cfg["temperature"])
        self.cfg["temperature"] = result["temperature"]
        return result

    def kbest(self, docs: Iterable[Doc], k: int = 5) -> List[List[Analysis]]:
        """The ``k`` best analyses of each doc, best first: ``Analysis(score, probability,
        tags, ents)``, with ``probability`` the CRF's exact probability of that tag path. Only
        paths that agree with the doc's own entities and blocked tokens count (fewer than ``k``
        if fewer do). Probabilities are at the calibrated temperature (``score`` is the path's
        score divided by it)."""
        docs = list(docs)
        crf = self.crf
        with torch.no_grad():
            emissions, mask, allowed = self._emissions(docs)
        with torch.no_grad(), one_intra_op_thread():
            crf, emissions = tempered(crf, emissions, self.cfg["temperature"])
            analyses = kbest_analyses(crf, emissions, mask, docs, self.tags, self.cfg["scheme"], k)
        index = {tag: i for i, tag in enumerate(self.tags)}
        return [
            [a for a in doc_analyses if allowed[b, numpy.arange(len(a.tags)), [index[t] for t in a.tags]].all()]
            for b, doc_analyses in enumerate(analyses)
        ]

    def _emissions(self, docs: List[Doc]):
        """``(B, L, T)`` emissions on the CRF's device, ``IMPOSSIBLE`` for the tags the docs'
        annotation rules out, the ``(B, L)`` mask of real tokens and the ``(B, L, T)`` allowed
        tags (:meth:`_allowed_tags`)."""
        self.crf  # a clear error if not initialized
        if any(len(doc) for doc in docs):
            scores = self.model.predict(docs)
        else:  # like spaCy's tagger, don't run the encoder on nothing
            scores = [self.model.ops.alloc2f(0, len(self.tags)) for _ in docs]
        emissions, mask = pad_emissions(self.model.get_ref("crf"), scores)
        allowed = self._allowed_tags(docs, emissions.shape[1])
        return emissions.masked_fill(~torch.from_numpy(allowed).to(emissions.device), IMPOSSIBLE), mask, allowed

    def _allowed_tags(self, docs: List[Doc], length: int) -> numpy.ndarray:
        """``(B, length, T)`` bool: the tags each token may take. Padding allows every tag.

        Tags of untrained labels are out everywhere. Unless ``overwrite_ents``: a preset entity
        of one of the component's labels allows exactly the tags that spell it (and, in BIO, the
        token after it may not continue it with ``I-``); a preset entity of another label and a
        blocked token allow only ``O`` (they are no entity of this model).
        """
        tags, scheme = self.tags, self.cfg["scheme"]
        index = {tag: i for i, tag in enumerate(tags)}
        allowed = numpy.ones((len(docs), length, len(tags)), dtype=bool)
        for label in self.cfg["untrained_labels"]:
            allowed[:, :, [i for i, tag in enumerate(tags) if tag[2:] == label]] = False
        if self.cfg["overwrite_ents"]:
            return allowed
        outside = numpy.eye(len(tags), dtype=bool)[0]
        for b, doc in enumerate(docs):
            for i in blocked_tokens(doc):
                allowed[b, i] = outside
            for ent in doc.ents:
                if ent.label_ not in self.labels:
                    allowed[b, ent.start : ent.end] = outside
                    continue
                for i, tag in zip(range(ent.start, ent.end), span_tags(ent.label_, len(ent), scheme)):
                    allowed[b, i] = False
                    allowed[b, i, index[tag]] = True
                if scheme == "BIO" and ent.end < len(doc):
                    allowed[b, ent.end, index[f"I-{ent.label_}"]] = False
        return allowed


def blocked_tokens(doc: Doc) -> List[int]:
    """The tokens ``doc.set_ents(blocked=...)`` marked as in no entity: entity-begin tokens
    with no entity type."""
    return [token.i for token in doc if token.ent_iob_ == "B" and not token.ent_type]


def labels_from_label_data(
    label_data: Union[Sequence[str], Mapping[str, Mapping[str, int]]], name: str
) -> List[str]:
    """The labels in ``spacy init labels`` output: a list (``crf_ner``'s own), or the dict of
    moves that spaCy's ``ner`` writes (``{"0": {}, "1": {"PER": 3, ...}, ...}``), whose labels
    are the keys of its move dicts, in first-seen order."""
    if isinstance(label_data, Mapping):
        labels: Dict[str, None] = {}
        for move, move_labels in label_data.items():
            if not isinstance(move_labels, Mapping):
                raise ValueError(
                    f"Labels for '{name}': a dict of labels must be spaCy ner's moves "
                    f"({{move: {{label: count}}}}), got {move!r}: {move_labels!r}"
                )
            labels.update((label, None) for label in move_labels if label)
        return list(labels)
    if isinstance(label_data, str) or not all(isinstance(label, str) for label in label_data):
        raise ValueError(f"Labels for '{name}': expected a list of label strings, got {label_data!r}")
    return list(label_data)


def entity_confidences(doc: Doc, key: str = "crf_ner") -> List[tuple]:
    """``[(entity span, probability), ...]`` for the spans ``crf_ner`` stored under ``key``."""
    group = doc.spans[key]
    return list(zip(group, group.attrs["scores"]))
