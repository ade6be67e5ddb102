"""How well entity confidences are calibrated: one definition for the scorer, the project's
evaluation and the benchmarks.

A predicted entity (a span of ``doc.ents``) is **right** when a gold entity has exactly its span
and label, decided as spaCy's NER scorer decides it (tokens aligned to the gold doc; an entity
over tokens whose gold annotation is missing is neither right nor wrong and is left out). Its
**confidence** is its score in the span group ``doc.spans[spans_key]`` (``attrs["scores"]``, one
probability per span, as ``crf_ner`` and spaCy's ``spancat`` store them); other spans in the group
(``crf_ner``'s ``threshold`` candidates) are not predictions and are left out.

Binning: ``n_bins`` equal-width bins over [0, 1]; bin ``b`` holds the confidences ``c`` with
``floor(c * n_bins) == b``, i.e. ``[b/n, (b+1)/n)``, except that the last bin also holds 1.0.

    ECE = sum_b (n_b / N) * |accuracy_b - mean confidence_b|
    MCE = max_b |accuracy_b - mean confidence_b|   (over non-empty bins)
    Brier = mean (confidence - right)^2

(Guo et al., 2017, "On Calibration of Modern Neural Networks").

The registered scorer ``spacy-crf-ner.ner_scorer.v1`` gives spaCy's NER scores plus
``ents_ece``, ``ents_mce``, ``ents_brier`` and ``ents_confidence`` (the mean confidence of the
predicted entities, to read next to ``ents_p``).
"""
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy
from spacy.pipeline.ner import ner_score
from spacy.training import Example
from spacy.util import registry

# The calibration error every report of this package uses; the README's numbers are in these bins.
N_BINS = 10

EntityKey = Tuple[int, int, str]  # (start token, end token exclusive, label) in the predicted doc


class ScoredEntities(NamedTuple):
    """The predicted entities that have a confidence and a defined correctness, in corpus order:
    ``confidences (N,)`` float64, ``correct (N,)`` bool, and ``counts``: ``n_candidates`` (spans
    of the group that are not in ``doc.ents``), ``n_unscored`` (entities of ``doc.ents`` missing
    from the group) and ``n_unannotated`` (entities over missing gold annotation)."""

    confidences: numpy.ndarray
    correct: numpy.ndarray
    counts: Dict[str, int]


def entity_correctness(example: Example) -> Dict[EntityKey, bool]:
    """Whether each predicted entity of ``example.predicted.ents`` is right: a gold entity has
    exactly its (aligned) span and label. Entities over tokens whose gold annotation is missing
    are left out, as spaCy's NER scorer leaves them out; without any gold NER annotation, all
    are."""
    out: Dict[EntityKey, bool] = {}
    if not example.reference.has_annotation("ENT_IOB"):
        return out
    golds = {(ent.label_, ent.start, ent.end) for ent in example.reference.ents}
    x2y = example.alignment.x2y
    for ent in example.predicted.ents:
        indices = x2y[ent.start : ent.end]
        if not len(indices):
            continue
        if all(token.ent_iob != 0 for token in example.reference[indices[0] : indices[-1] + 1]):
            key = (ent.label_, int(indices[0]), int(indices[-1]) + 1)
            out[(ent.start, ent.end, ent.label_)] = key in golds
            golds.discard(key)
    return out


def has_confidences(examples: Iterable[Example], spans_key: str) -> bool:
    """Whether any predicted doc has the span group ``spans_key`` (confidences to score)."""
    return any(spans_key in eg.predicted.spans for eg in examples)


def scored_entities(examples: Iterable[Example], spans_key: str) -> ScoredEntities:
    """The confidence and correctness of every predicted entity (see the module docstring).

    A span group without ``attrs["scores"]``, or with a score count unlike its span count, is an
    error naming the doc; a doc without the group contributes its entities to ``n_unscored``."""
    confidences: List[float] = []
    correct: List[bool] = []
    counts = {"n_candidates": 0, "n_unscored": 0, "n_unannotated": 0}
    for i, eg in enumerate(examples):
        doc = eg.predicted
        scored: Dict[EntityKey, float] = {}
        if spans_key in doc.spans:
            group = doc.spans[spans_key]
            scores = group.attrs.get("scores")
            if scores is None:
                raise ValueError(f"doc {i} ({doc.text[:40]!r}): doc.spans[{spans_key!r}] has no attrs['scores']")
            if len(scores) != len(group):
                raise ValueError(
                    f"doc {i} ({doc.text[:40]!r}): doc.spans[{spans_key!r}] has {len(group)} spans "
                    f"but {len(scores)} scores"
                )
            scored = {(span.start, span.end, span.label_): float(p) for span, p in zip(group, scores)}
        ents = {(ent.start, ent.end, ent.label_) for ent in doc.ents}
        counts["n_candidates"] += sum(key not in ents for key in scored)
        rightness = entity_correctness(eg) if ents else {}
        for key in sorted(ents):
            if key not in scored:
                counts["n_unscored"] += 1
            elif key not in rightness:
                counts["n_unannotated"] += 1
            else:
                confidences.append(scored[key])
                correct.append(rightness[key])
    return ScoredEntities(numpy.asarray(confidences, dtype="float64"), numpy.asarray(correct, dtype=bool), counts)


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS
) -> Dict[str, Any]:
    """Calibration of ``confidences`` (probabilities in [0, 1]) against ``correct`` (bools, or
    0/1), one pair per prediction.

    Returns a JSON-serialisable dict: ``ece``, ``mce``, ``brier``, ``n_entities`` (the number of
    predictions), ``accuracy`` and ``mean_confidence`` over all of them, ``n_bins`` and ``bins``
    (the reliability diagram), a list of ``{"lower", "upper", "count", "confidence",
    "accuracy", "gap"}`` per bin (``confidence``, ``accuracy`` and ``gap`` are ``None`` for an
    empty bin). With no predictions, every summary number is ``None``.
    """
    conf = numpy.asarray(confidences, dtype="float64").reshape(-1)
    hits = numpy.asarray(correct).reshape(-1)
    if conf.shape != hits.shape:
        raise ValueError(f"{conf.size} confidences but {hits.size} correctness flags")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    outside = ~numpy.isfinite(conf) | (conf < 0.0) | (conf > 1.0)
    if outside.any():
        first = int(numpy.flatnonzero(outside)[0])
        raise ValueError(f"confidences must be probabilities in [0, 1]: #{first} is {float(conf[first])!r}")
    if hits.dtype != bool:
        if not numpy.all(numpy.isin(hits, (0, 1))):
            raise ValueError("correct must hold booleans or 0/1")
        hits = hits.astype(bool)
    n = conf.size
    index = numpy.minimum(numpy.floor(conf * n_bins).astype("int64"), n_bins - 1)
    bins = []
    ece, mce = 0.0, 0.0
    for b in range(n_bins):
        in_bin = index == b
        count = int(in_bin.sum())
        entry: Dict[str, Any] = {
            "lower": b / n_bins, "upper": (b + 1) / n_bins, "count": count,
            "confidence": None, "accuracy": None, "gap": None,
        }
        if count:
            mean_conf = float(conf[in_bin].mean())
            accuracy = float(hits[in_bin].mean())
            gap = abs(accuracy - mean_conf)
            entry.update(confidence=mean_conf, accuracy=accuracy, gap=gap)
            ece += count / n * gap
            mce = max(mce, gap)
        bins.append(entry)
    return {
        "ece": float(ece) if n else None,
        "mce": float(mce) if n else None,
        "brier": float(numpy.mean((conf - hits) ** 2)) if n else None,
        "n_entities": int(n),
        "accuracy": float(hits.mean()) if n else None,
        "mean_confidence": float(conf.mean()) if n else None,
        "n_bins": int(n_bins),
        "bins": bins,
    }


def calibration_report(examples: Iterable[Example], spans_key: str, n_bins: int = N_BINS) -> Optional[Dict[str, Any]]:
    """:func:`expected_calibration_error` of the predicted entities' confidences in
    ``doc.spans[spans_key]`` plus the counts of :class:`ScoredEntities` and ``spans_key``; None
    when no predicted doc has that span group (a model without confidences)."""
    examples = list(examples)
    if not has_confidences(examples, spans_key):
        return None
    scored = scored_entities(examples, spans_key)
    return {"spans_key": spans_key, **expected_calibration_error(scored.confidences, scored.correct, n_bins), **scored.counts}


def score_ner_calibration(examples: Iterable[Example], *, spans_key: Optional[str] = None, **kwargs) -> Dict[str, Any]:
    """spaCy's NER scores (``ents_p/r/f``, ``ents_per_type``) plus the calibration of the
    predicted entities' confidences in ``doc.spans[spans_key]``: ``ents_ece``, ``ents_mce``,
    ``ents_brier`` and ``ents_confidence`` (mean confidence), each None without confidences.

    ``crf_ner`` passes its ``spans_key`` (it is None in its cfg when it means the component's
    name); any other keyword (the component's cfg) is ignored, as spaCy's scorers do."""
    examples = list(examples)
    scores = dict(ner_score(examples))
    report = calibration_report(examples, spans_key) if spans_key is not None else None
    for key, field in (("ents_ece", "ece"), ("ents_mce", "mce"), ("ents_brier", "brier"), ("ents_confidence", "mean_confidence")):
        scores[key] = report[field] if report is not None else None
    return scores


@registry.scorers("spacy-crf-ner.ner_scorer.v1")
def make_ner_scorer() -> Callable:
    """spaCy's NER scorer plus the entity confidences' calibration (:func:`score_ner_calibration`)."""
    return score_ner_calibration
