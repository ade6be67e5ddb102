"""The calibration measures of spacy_crf_ner.scoring against hand-computed values, and the
registered scorer spacy-crf-ner.ner_scorer.v1 against spaCy's NER scores and a brute count."""
import json
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry

from test_evaluate import train

from spacy_crf_ner.scoring import (
    calibration_report,
    entity_correctness,
    expected_calibration_error,
    score_ner_calibration,
    scored_entities,
)

ROOT = Path(__file__).resolve().parents[1]


# -- the measures -----------------------------------------------------------------------------


def test_ece_matches_hand_computation():
    confidences = [0.9, 0.9, 0.2, 0.2, 0.65]
    correct = [True, False, False, False, True]
    result = expected_calibration_error(confidences, correct, n_bins=10)
    # bins: 9 -> conf 0.9, acc 0.5, gap 0.4 (n=2); 2 -> conf 0.2, acc 0 (n=2); 6 -> 0.65 vs 1 (n=1)
    assert result["ece"] == pytest.approx((2 * 0.4 + 2 * 0.2 + 1 * 0.35) / 5)
    assert result["mce"] == pytest.approx(0.4)
    assert result["brier"] == pytest.approx((0.1**2 + 0.9**2 + 0.2**2 + 0.2**2 + 0.35**2) / 5)
    assert result["n_entities"] == 5
    assert [b["count"] for b in result["bins"]] == [0, 0, 2, 0, 0, 0, 1, 0, 0, 2]
    assert result["bins"][9]["accuracy"] == 0.5 and result["bins"][9]["confidence"] == pytest.approx(0.9)
    assert result["bins"][0]["accuracy"] is None
    assert result["accuracy"] == pytest.approx(0.4)
    assert result["mean_confidence"] == pytest.approx(0.57)
    json.dumps(result)  # JSON-serialisable


def test_ece_is_zero_when_perfectly_calibrated():
    confidences = [0.8] * 10 + [0.25] * 4 + [1.0] * 3
    correct = [1] * 8 + [0] * 2 + [1] + [0] * 3 + [1] * 3
    result = expected_calibration_error(confidences, correct)
    assert result["ece"] == pytest.approx(0.0, abs=1e-12)
    assert result["mce"] == pytest.approx(0.0, abs=1e-12)
    assert result["bins"][9]["count"] == 3  # 1.0 falls in the last bin


def test_ece_bin_edges_and_errors():
    result = expected_calibration_error([0.0, 0.3, 0.7, 0.999, 1.0], [1, 1, 1, 1, 1])
    assert [b["count"] for b in result["bins"]] == [1, 0, 0, 1, 0, 0, 0, 1, 0, 2]
    empty = expected_calibration_error([], [])
    assert empty["ece"] is None and empty["brier"] is None and empty["n_entities"] == 0
    with pytest.raises(ValueError, match="#1 is 1.2"):
        expected_calibration_error([0.5, 1.2], [True, True])
    with pytest.raises(ValueError, match="2 confidences but 1"):
        expected_calibration_error([0.5, 0.5], [True])
    with pytest.raises(ValueError, match="booleans or 0/1"):
        expected_calibration_error([0.5], [2])


# -- which entities count, and with which confidence -------------------------------------------


def hand_made_example(key: str = "ner_key"):
    """Gold: Anna Berg PER, Oslo LOC, Tomas PER. Predicted: Anna Berg PER (right), Oslo ORG
    (wrong label), and in the span group two extra candidates that are not predictions."""
    nlp = spacy.blank("en")
    words = "Anna Berg flew to Oslo with Tomas".split()
    gold = Doc(nlp.vocab, words=words)
    gold.ents = [Span(gold, 0, 2, "PER"), Span(gold, 4, 5, "LOC"), Span(gold, 6, 7, "PER")]
    pred = Doc(nlp.vocab, words=words)
    pred.ents = [Span(pred, 0, 2, "PER"), Span(pred, 4, 5, "ORG")]
    group = [Span(pred, 0, 2, "PER"), Span(pred, 4, 5, "ORG"), Span(pred, 4, 5, "LOC"), Span(pred, 6, 7, "PER")]
    pred.spans[key] = group
    pred.spans[key].attrs["scores"] = [0.9, 0.6, 0.35, 0.3]
    return Example(pred, gold)


def test_confidences_use_only_doc_ents():
    eg = hand_made_example()
    assert entity_correctness(eg) == {(0, 2, "PER"): True, (4, 5, "ORG"): False}
    scored = scored_entities([eg], "ner_key")
    assert scored.confidences.tolist() == [0.9, 0.6] and scored.correct.tolist() == [True, False]
    assert scored.counts == {"n_candidates": 2, "n_unscored": 0, "n_unannotated": 0}
    assert calibration_report([eg], "other") is None
    del eg.predicted.spans["ner_key"].attrs["scores"]
    with pytest.raises(ValueError, match=r"doc 0 .*no attrs\['scores'\]"):
        scored_entities([eg], "ner_key")
    eg.predicted.spans["ner_key"].attrs["scores"] = [0.5]
    with pytest.raises(ValueError, match="4 spans but 1 scores"):
        scored_entities([eg], "ner_key")


def test_correctness_aligns_tokens_and_skips_missing_annotation():
    """A predicted entity on other tokenisation is right when its aligned span matches; one over
    gold tokens with missing annotation is neither right nor wrong."""
    nlp = spacy.blank("en")
    gold = Doc(nlp.vocab, words=["New", "York", "is", "big", "and", "Rome", "too"],
               ents=["B-LOC", "I-LOC", "O", "O", "O", "", "O"])
    pred = Doc(nlp.vocab, words=["New York", "is", "big", "and", "Rome", "too"],
               spaces=[True] * 5 + [False])
    pred.ents = [Span(pred, 0, 1, "LOC"), Span(pred, 4, 5, "LOC")]
    eg = Example(pred, gold)
    assert entity_correctness(eg) == {(0, 1, "LOC"): True}
    pred.spans["k"] = list(pred.ents)
    pred.spans["k"].attrs["scores"] = [0.8, 0.4]
    assert scored_entities([eg], "k").counts["n_unannotated"] == 1


# -- the scorer ------------------------------------------------------------------------------


def test_registered_scorer_adds_calibration_to_spacys_ner_scores():
    eg = hand_made_example("crf_ner")
    scorer = registry.scorers.get("spacy-crf-ner.ner_scorer.v1")()
    scores = scorer([eg], spans_key="crf_ner", labels=("PER", "LOC", "ORG"), temperature=1.0)
    spacy_scores = registry.scorers.get("spacy.ner_scorer.v1")()([eg])
    for key, value in spacy_scores.items():
        assert scores[key] == value
    # By hand: confidences 0.9 (right) and 0.6 (wrong), bins 9 and 6: (|1 - 0.9| + |0 - 0.6|) / 2
    assert scores["ents_ece"] == pytest.approx(0.35)
    assert scores["ents_mce"] == pytest.approx(0.6)
    assert scores["ents_brier"] == pytest.approx((0.1**2 + 0.6**2) / 2)
    assert scores["ents_confidence"] == pytest.approx(0.75)
    assert scorer([eg], spans_key="absent")["ents_ece"] is None


def test_pipeline_reports_ents_ece(make_examples):
    """nlp.evaluate through crf_ner's default scorer: ents_ece equals the ECE counted by brute
    force from the predicted docs (same tokenisation, so right = same span and label)."""
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner")
    train(nlp, make_examples(nlp, 20, seed=1), steps=6, mislabelled=0.3)
    held_out = make_examples(nlp, 30, seed=2)
    scores = nlp.evaluate(held_out)
    confidences, correct = [], []
    for eg, doc in zip(held_out, nlp.pipe(eg.reference.text for eg in held_out)):
        gold = {(e.start, e.end, e.label_) for e in eg.reference.ents}
        for span, p in zip(doc.spans["crf_ner"], doc.spans["crf_ner"].attrs["scores"]):
            confidences.append(p)
            correct.append((span.start, span.end, span.label_) in gold)
    confidences, correct = numpy.array(confidences), numpy.array(correct)
    assert 0 < correct.sum() < len(correct)  # some right, some wrong
    index = numpy.minimum((confidences * 10).astype(int), 9)
    ece = sum(abs(correct[index == b].mean() - confidences[index == b].mean()) * (index == b).sum()
              for b in range(10) if (index == b).any()) / len(confidences)
    assert scores["ents_ece"] == pytest.approx(ece, abs=1e-6)
    assert scores["ents_p"] == pytest.approx(correct.mean())

    nlp.get_pipe("crf_ner").cfg["confidences"] = False
    assert nlp.evaluate(held_out)["ents_ece"] is None


def test_scorer_is_the_default_of_the_factory_and_the_configs():
    nlp = spacy.blank("en")
    assert nlp.add_pipe("crf_ner").scorer is score_ner_calibration
    assert nlp.get_pipe_meta("crf_ner").default_score_weights["ents_ece"] == 0.0
    for name in ("crf_ner_cnn", "crf_ner_trf"):
        config = spacy.util.load_config(ROOT / "configs" / f"{name}.cfg")
        assert config["components"]["crf_ner"]["scorer"] == {"@scorers": "spacy-crf-ner.ner_scorer.v1"}
        assert config["training"]["score_weights"]["ents_ece"] == 0.0
