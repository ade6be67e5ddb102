"""Tests for the tag schemes in ``spacy_crf_ner.tags``, checked against spaCy's own converters."""
import itertools

import numpy
import pytest
from spacy.tokens import Doc
from spacy.training.iob_utils import biluo_to_iob, iob_to_biluo, offsets_to_biluo_tags, tags_to_entities
from spacy.vocab import Vocab

from spacy_crf_ner import tags as tagging

LABELS = ["PER", "LOC"]
MAX_LENGTH = 4
VOCAB = Vocab()


def make_doc(length):
    return Doc(VOCAB, words=[f"w{i}" for i in range(length)])


def all_sequences(tag_list, max_length=MAX_LENGTH):
    for length in range(max_length + 1):
        yield from itertools.product(tag_list, repeat=length)


def spacy_biluo(doc, spans):
    """Tags for ``(label, start, end_exclusive)`` token spans, written by spaCy from char offsets."""
    offsets = [(doc[start].idx, doc[end - 1].idx + len(doc[end - 1]), label) for label, start, end in spans]
    return offsets_to_biluo_tags(doc, offsets)


def reference_is_valid(sequence, scheme):
    """Validity defined through spaCy only: spaCy reads the tags as entities, and writing those
    entities back gives the very same tags."""
    sequence = list(sequence)
    if scheme == "BIO":
        # spaCy's iob_to_biluo is lenient (a stray I-X opens an entity); a strict sequence is
        # one it does not have to repair.
        return biluo_to_iob(iob_to_biluo(sequence)) == sequence
    try:
        entities = tags_to_entities(sequence)
    except ValueError:
        return False
    spans = [(label, start, end + 1) for label, start, end in entities]
    try:
        return spacy_biluo(make_doc(len(sequence)), spans) == sequence
    except ValueError:  # overlapping entities, as in "B-X U-X L-X"
        return False


def test_make_tags_and_split_tag():
    assert tagging.make_tags(LABELS, "BIO") == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    assert tagging.make_tags(LABELS, "BILUO") == [
        "O", "B-PER", "I-PER", "L-PER", "U-PER", "B-LOC", "I-LOC", "L-LOC", "U-LOC",
    ]
    assert tagging.make_tags([], "BIO") == ["O"]
    assert tagging.split_tag("B-PER") == ("B", "PER")
    assert tagging.split_tag("U-WORK-OF-ART") == ("U", "WORK-OF-ART")
    assert tagging.split_tag("O") == ("O", "")
    with pytest.raises(ValueError):
        tagging.make_tags(LABELS, "IOB2")


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_transition_constraints_agree_with_is_valid(scheme):
    tag_list = tagging.make_tags(LABELS, scheme)
    start, trans, end = tagging.transition_constraints(tag_list, scheme)
    assert start.dtype == trans.dtype == end.dtype == bool
    assert start.shape == end.shape == (len(tag_list),) and trans.shape == (len(tag_list),) * 2
    index = {tag: i for i, tag in enumerate(tag_list)}
    for sequence in all_sequences(tag_list):
        ids = [index[tag] for tag in sequence]
        by_masks = not ids or bool(
            start[ids[0]] and end[ids[-1]] and all(trans[a, b] for a, b in zip(ids, ids[1:]))
        )
        assert tagging.is_valid(sequence, scheme) == by_masks, sequence


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_is_valid_agrees_with_spacy(scheme):
    tag_list = tagging.make_tags(LABELS, scheme)
    num_valid = 0
    for sequence in all_sequences(tag_list):
        valid = tagging.is_valid(sequence, scheme)
        assert valid == reference_is_valid(sequence, scheme), sequence
        num_valid += valid
    assert num_valid > 100  # the check is not vacuous


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_valid_sequences_round_trip_through_spans(scheme):
    tag_list = tagging.make_tags(LABELS, scheme)
    for sequence in all_sequences(tag_list):
        if not tagging.is_valid(sequence, scheme):
            continue
        doc = make_doc(len(sequence))
        spans = tagging.to_spans(doc, sequence, scheme)
        doc.ents = spans  # spaCy accepts them: no overlaps, in bounds
        rebuilt = spacy_biluo(doc, [(span.label_, span.start, span.end) for span in spans])
        if scheme == "BIO":
            rebuilt = biluo_to_iob(rebuilt)
        assert rebuilt == list(sequence)
        # And the gold path: spaCy's BILUO, converted with from_biluo, gives the sequence back.
        assert tagging.from_biluo(spacy_biluo(doc, [(s.label_, s.start, s.end) for s in spans]), scheme) == list(sequence)


def test_from_biluo_keeps_unknown_tokens():
    gold = ["B-PER", "L-PER", None, "U-LOC", "-", "", "O", "B-LOC", "I-LOC", "L-LOC"]
    assert tagging.from_biluo(gold, "BILUO") == [
        "B-PER", "L-PER", None, "U-LOC", None, None, "O", "B-LOC", "I-LOC", "L-LOC",
    ]
    assert tagging.from_biluo(gold, "BIO") == [
        "B-PER", "I-PER", None, "B-LOC", None, None, "O", "B-LOC", "I-LOC", "I-LOC",
    ]
    assert tagging.from_biluo([], "BIO") == []
    assert tagging.from_biluo(iter([None, "U-PER"]), "BIO") == [None, "B-PER"]


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_span_tags_spell_exactly_one_entity(scheme):
    for length in range(1, 6):
        span = tagging.span_tags("PER", length, scheme)
        assert len(span) == length and tagging.is_valid(span, scheme)
        doc = make_doc(length + 2)
        ents = tagging.to_spans(doc, ["O"] + span + ["O"], scheme)
        assert [(e.label_, e.start, e.end) for e in ents] == [("PER", 1, length + 1)]
    assert tagging.span_tags("PER", 1, "BILUO") == ["U-PER"]
    assert tagging.span_tags("PER", 3, "BILUO") == ["B-PER", "I-PER", "L-PER"]
    assert tagging.span_tags("PER", 3, "BIO") == ["B-PER", "I-PER", "I-PER"]
    with pytest.raises(ValueError):
        tagging.span_tags("PER", 0, scheme)


def test_span_query_and_span_queries():
    bio = tagging.make_tags(LABELS, "BIO")
    biluo = tagging.make_tags(LABELS, "BILUO")
    assert tagging.span_query("LOC", 3, "BIO", bio) == ([3, 4, 4], [4])
    assert tagging.span_query("LOC", 1, "BILUO", {t: i for i, t in enumerate(biluo)}) == ([8], [])
    assert tagging.span_query("PER", 2, "BILUO", biluo) == ([1, 3], [])
    paths, forbidden = tagging.span_queries([("PER", 0, 2), ("LOC", 5, 6)], bio, "BIO")
    assert paths.dtype == numpy.int64 and forbidden.dtype == bool
    numpy.testing.assert_array_equal(paths, [[1, 2], [3, -1]])
    numpy.testing.assert_array_equal(forbidden, [[0, 0, 1, 0, 0], [0, 0, 0, 0, 1]])
    paths, forbidden = tagging.span_queries([], biluo, "BILUO")
    assert paths.shape == (0, 1) and forbidden.shape == (0, len(biluo))


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_span_queries_equal_span_query_row_by_row(scheme):
    tag_list = tagging.make_tags(LABELS, scheme)
    rng = numpy.random.default_rng(0)
    spans = []
    for _ in range(50):
        start = int(rng.integers(0, 20))
        spans.append((LABELS[int(rng.integers(len(LABELS)))], start, start + int(rng.integers(1, 7))))
    paths, forbidden = tagging.span_queries(spans, tag_list, scheme)
    assert paths.shape == (len(spans), max(end - start for _, start, end in spans))
    for row, (label, start, end) in enumerate(spans):
        path, banned = tagging.span_query(label, end - start, scheme, tag_list)
        assert paths[row].tolist() == path + [-1] * (paths.shape[1] - len(path))
        assert numpy.flatnonzero(forbidden[row]).tolist() == banned
    with pytest.raises(ValueError, match="at least one token"):
        tagging.span_queries([("PER", 3, 3)], tag_list, scheme)
    with pytest.raises(KeyError):
        tagging.span_queries([("ORG", 0, 1)], tag_list, scheme)
