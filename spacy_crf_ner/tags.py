"""Tag schemes: the tag list for a set of labels, its transition constraints, and the
conversions between gold annotation, tag sequences and entity spans.

Tag index 0 is always ``O``. Then, label by label in the order given, one tag per scheme prefix:
BILUO gives ``B-X, I-X, L-X, U-X`` (1 + 4 * labels tags), BIO gives ``B-X, I-X`` (1 + 2 * labels).
So for labels ``["LOC", "PER"]`` in BIO: ``["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]``.

spaCy's gold annotation (``Example.get_aligned_ner``) is BILUO with ``None`` for unknown tokens;
spaCy's ``iob_utils`` does the BILUO <-> BIO and tags -> spans conversions.
"""
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy
from spacy.tokens import Doc, Span
from spacy.training.iob_utils import biluo_tags_to_spans, biluo_to_iob, iob_to_biluo

SCHEMES = {"BILUO": "BILU", "BIO": "BI"}


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown tag scheme {scheme!r}: choose one of {sorted(SCHEMES)}")
    return scheme


def make_tags(labels: Sequence[str], scheme: str) -> List[str]:
    """The tag list for ``labels`` in ``scheme``; index 0 is ``O``."""
    prefixes = SCHEMES[check_scheme(scheme)]
    return ["O"] + [f"{prefix}-{label}" for label in labels for prefix in prefixes]


def split_tag(tag: str) -> Tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``."""
    if tag == "O":
        return "O", ""
    prefix, _, label = tag.partition("-")
    return prefix, label


def _may_follow(prev: Optional[str], tag: str, scheme: str) -> bool:
    """Whether ``tag`` may follow ``prev`` (``None`` means the sequence start)."""
    prefix, label = split_tag(tag)
    if prev is None:
        prev_prefix, prev_label = "O", ""
    else:
        prev_prefix, prev_label = split_tag(prev)
    if scheme == "BIO":
        return prefix != "I" or (prev_prefix in ("B", "I") and prev_label == label)
    inside = prev_prefix in ("B", "I")  # an entity is open and must go on
    if inside:
        return prefix in ("I", "L") and label == prev_label
    return prefix in ("O", "B", "U")


def _may_end(tag: str, scheme: str) -> bool:
    return scheme == "BIO" or split_tag(tag)[0] in ("O", "L", "U")


def transition_constraints(tags: Sequence[str], scheme: str) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """``(allowed_start (T,), allowed_transitions (T, T), allowed_end (T,))`` as bool arrays.

    ``allowed_transitions[i, j]`` is True if ``tags[j]`` may follow ``tags[i]``.
    """
    check_scheme(scheme)
    start = numpy.array([_may_follow(None, tag, scheme) for tag in tags])
    trans = numpy.array([[_may_follow(prev, tag, scheme) for tag in tags] for prev in tags])
    end = numpy.array([_may_end(tag, scheme) for tag in tags])
    return start, trans, end


def is_valid(tags: Sequence[str], scheme: str) -> bool:
    """Whether a tag sequence obeys the scheme (the empty sequence does)."""
    prev: Optional[str] = None
    for tag in tags:
        if not _may_follow(prev, tag, scheme):
            return False
        prev = tag
    return prev is None or _may_end(prev, scheme)


def from_biluo(biluo: Iterable[Optional[str]], scheme: str) -> List[Optional[str]]:
    """spaCy's gold BILUO tags (``None`` or ``"-"`` = unknown) in ``scheme``, unknown kept as None."""
    biluo = [None if tag in (None, "-", "") else tag for tag in biluo]
    return biluo if scheme == "BILUO" else biluo_to_iob(biluo)


def repair(tags: Sequence[str], scheme: str) -> List[str]:
    """A valid sequence from any tag sequence, the way spaCy reads IOB: an entity starts at
    every B- tag and at every I- tag that does not continue one (``O I-X`` -> ``O B-X``)."""
    if is_valid(tags, scheme):
        return list(tags)
    biluo = iob_to_biluo(biluo_to_iob(tags))
    return biluo if scheme == "BILUO" else biluo_to_iob(biluo)


def to_spans(doc: Doc, tags: Sequence[str], scheme: str) -> List[Span]:
    """Entity spans for a tag sequence over ``doc``'s tokens (repaired first if invalid, which
    only an unconstrained model can produce)."""
    tags = repair(tags, scheme)
    biluo = tags if scheme == "BILUO" else iob_to_biluo(tags)
    return biluo_tags_to_spans(doc, biluo)


def span_tags(label: str, length: int, scheme: str) -> List[str]:
    """The tags that spell one entity of ``length`` tokens: ``U-X`` or ``B-X I-X .. L-X`` (BILUO),
    ``B-X I-X ..`` (BIO)."""
    if length < 1:
        raise ValueError(f"an entity spans at least one token, got length {length}")
    if scheme == "BILUO":
        if length == 1:
            return [f"U-{label}"]
        return [f"B-{label}"] + [f"I-{label}"] * (length - 2) + [f"L-{label}"]
    return [f"B-{label}"] + [f"I-{label}"] * (length - 1)


def span_query(
    label: str, length: int, scheme: str, tag_index: Union[Mapping[str, int], Sequence[str]]
) -> Tuple[List[int], List[int]]:
    """One entity as a query for ``ConstrainedCRF.span_log_probs``: ``(path, forbidden_next)``.

    ``path`` holds the tag indices that spell the entity (:func:`span_tags`), ``forbidden_next``
    the tag indices the token after it may not take for the entity to end there: ``I-X`` in
    BIO (``B-X I-X`` followed by ``I-X`` is a longer entity), nothing in BILUO (``L-X`` and
    ``U-X`` close the entity themselves). ``tag_index`` maps tag -> index, or is the tag list.
    """
    check_scheme(scheme)
    if not isinstance(tag_index, Mapping):
        tag_index = {tag: i for i, tag in enumerate(tag_index)}
    path = [tag_index[tag] for tag in span_tags(label, length, scheme)]
    forbidden = [tag_index[f"I-{label}"]] if scheme == "BIO" else []
    return path, forbidden


def span_queries(
    spans: Sequence[Tuple[str, int, int]], tags: Sequence[str], scheme: str
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Batched :func:`span_query` for ``(label, start, end)`` spans (``end`` exclusive).

    Returns ``(span_tags (N, M) int64, forbidden_next (N, T) bool)`` with ``M`` the longest span
    (at least 1) and rows padded with -1, ready for ``torch.from_numpy`` and
    ``ConstrainedCRF.span_log_probs``. Built with array operations (a row per span would cost a
    Python loop per entity on every batch the component predicts).
    """
    prefixes = SCHEMES[check_scheme(scheme)]
    label_ids = {label: i for i, label in enumerate(sorted({label for label, _, _ in spans}))}
    tag_index = {tag: i for i, tag in enumerate(tags)}
    # (labels, prefixes): the tag index of each prefix of each label, in SCHEMES order (B, I, L, U)
    label_tags = numpy.array(
        [[tag_index[f"{p}-{label}"] for p in prefixes] for label in label_ids], dtype=numpy.int64
    ).reshape(len(label_ids), len(prefixes))
    label_of = numpy.array([label_ids[label] for label, _, _ in spans], dtype=numpy.intp)
    bounds = numpy.array([(start, end) for _, start, end in spans], dtype=numpy.int64).reshape(-1, 2)
    lengths = bounds[:, 1] - bounds[:, 0]  # (N,)
    if (lengths < 1).any():
        raise ValueError(f"an entity spans at least one token, got length {int(lengths.min())}")
    width = max(int(lengths.max(initial=1)), 1)
    rows = numpy.arange(len(spans))
    own = label_tags[label_of]  # (N, prefixes)
    begin, inside = own[:, 0], own[:, 1]
    paths = numpy.where(numpy.arange(width) < lengths[:, None], inside[:, None], -1)  # (N, M)
    paths[:, 0] = begin
    forbidden = numpy.zeros((len(spans), len(tags)), dtype=bool)
    if scheme == "BILUO":  # the last token closes the span: L-X, or U-X for a one-token span
        paths[rows, lengths - 1] = numpy.where(lengths == 1, own[:, 3], own[:, 2])
    else:  # BIO: the next token may not continue the entity
        forbidden[rows, inside] = True
    return paths, forbidden
