"""Temperature calibration of crf_ner: the tempered probabilities against brute force, the fit
against its objective, no entity changed, the temperature saved and loaded, the CLI."""
import json
import math

import numpy
import pytest
import spacy
import torch
from spacy.tokens import DocBin
from spacy.training import Example
from test_confidence import TEXTS, brute_force, trained
from test_evaluate import train
from thinc.api import Config
from typer.testing import CliRunner

from spacy_crf_ner.__main__ import app
from spacy_crf_ner.calibration import minimise_scalar, tempered
from spacy_crf_ner.layers import get_crf
from spacy_crf_ner.scoring import calibration_report


def ents_of(docs):
    return [[(e.start, e.end, e.label_) for e in doc.ents] for doc in docs]


@pytest.fixture(scope="module")
def overconfident(make_examples):
    """A crf_ner trained on few sentences (right on some held-out entities, wrong on others),
    calibration and test examples of other sentences."""
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner")
    train(nlp, make_examples(nlp, 12, seed=1), steps=6, mislabelled=0.3)
    return nlp, make_examples(nlp, 60, seed=2), make_examples(nlp, 30, seed=3)


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_tempered_probabilities_equal_brute_force(scheme):
    """At temperature T the entity probabilities are those of the same model with its weights
    divided by T (emission layer and CRF; brute force over every valid path); the constraints
    are unchanged."""
    nlp, ner = trained(scheme)
    temperature = 2.5
    crf = get_crf(ner.model.get_ref("crf"))
    scaled_crf, _ = tempered(crf, crf.transitions.new_zeros((1, 3, crf.num_tags)), temperature)
    for mask in ("allowed_start", "allowed_transitions", "allowed_end"):
        assert bool((getattr(scaled_crf, mask) == getattr(crf, mask)).all())
    with pytest.raises(ValueError, match="positive"):
        tempered(crf, crf.transitions.new_zeros((1, 3, crf.num_tags)), 0.0)

    reference = spacy.blank("en").from_config(Config(nlp.config)).from_bytes(nlp.to_bytes())
    reference_ner = reference.get_pipe("crf_ner")
    output = reference_ner.model.get_ref("output")
    for name in ("W", "b"):
        output.set_param(name, output.get_param(name) / temperature)
    with torch.no_grad():
        for param in get_crf(reference_ner.model.get_ref("crf")).parameters():
            param.div_(temperature)
    ner.cfg["temperature"] = temperature
    n_checked = 0
    for doc, plain in zip(nlp.pipe(TEXTS), reference.pipe(TEXTS)):
        assert ents_of([doc]) == ents_of([plain])
        _, _, _, entity_probs = brute_force(reference_ner, plain)
        for span, p in zip(doc.spans["crf_ner"], doc.spans["crf_ner"].attrs["scores"]):
            assert p == pytest.approx(entity_probs[(span.label_, span.start, span.end)], abs=1e-4)
            n_checked += 1
    assert n_checked >= 2


def test_golden_section_finds_the_minimum():
    assert minimise_scalar(lambda x: (x - 0.7) ** 2, -3.0, 3.0, 1e-6) == pytest.approx(0.7, abs=1e-5)
    assert minimise_scalar(lambda x: abs(x + 2.0), -3.0, 3.0, 1e-6) == pytest.approx(-2.0, abs=1e-5)


def test_calibrate_changes_no_entity_and_minimises_the_log_loss(overconfident):
    nlp, calib, test = overconfident
    ner = nlp.get_pipe("crf_ner")
    ner.cfg["temperature"] = 1.0
    texts = [eg.reference.text for eg in calib + test]
    before = ents_of(nlp.pipe(texts))
    scores_before = nlp.evaluate(calib)
    result = ner.calibrate(calib)
    assert ner.cfg["temperature"] == result["temperature"] != 1.0
    assert ents_of(nlp.pipe(texts)) == before
    assert {"temperature", "previous_temperature", "n_entities", "ece_before", "ece_after"} <= set(result)
    assert result["previous_temperature"] == 1.0 and not result["at_bound"]
    json.dumps(result)

    # Before and after are the scorer's numbers on the same examples.
    scores_after = nlp.evaluate(calib)
    assert result["ece_before"] == pytest.approx(scores_before["ents_ece"], abs=1e-4)
    assert result["ece_after"] == pytest.approx(scores_after["ents_ece"], abs=1e-4)
    assert result["accuracy"] == pytest.approx(scores_after["ents_p"])
    assert result["log_loss_after"] < result["log_loss_before"]

    # The fitted T is the minimum of the log loss: 5% either way is worse.
    def log_loss_at(temperature):
        ner.cfg["temperature"] = temperature
        predicted = [Example(doc, eg.reference) for doc, eg in zip(nlp.pipe(eg.reference.text for eg in calib), calib)]
        report = calibration_report(predicted, "crf_ner")
        p = numpy.array([s for eg in predicted for s in eg.predicted.spans["crf_ner"].attrs["scores"]])
        right = numpy.array([
            (s.start, s.end, s.label_) in {(e.start, e.end, e.label_) for e in eg.reference.ents}
            for eg in predicted for s in eg.predicted.spans["crf_ner"]
        ])
        assert report["n_entities"] == len(p)
        return -numpy.mean(numpy.where(right, numpy.log(p), numpy.log1p(-p)))

    fitted = result["temperature"]
    best = log_loss_at(fitted)
    assert best == pytest.approx(result["log_loss_after"], abs=1e-4)
    assert log_loss_at(fitted * 1.05) > best - 1e-6 and log_loss_at(fitted / 1.05) > best - 1e-6
    ner.cfg["temperature"] = fitted


def test_calibration_survives_serialization(overconfident, tmp_path):
    nlp, calib, test = overconfident
    ner = nlp.get_pipe("crf_ner")
    if ner.cfg["temperature"] == 1.0:
        ner.calibrate(calib)
    texts = [eg.reference.text for eg in test]
    docs = list(nlp.pipe(texts))
    nlp.to_disk(tmp_path / "model")
    for loaded in (spacy.load(tmp_path / "model"),
                   spacy.blank("en").from_config(Config(nlp.config)).from_bytes(nlp.to_bytes())):
        # (approx: spaCy reads the cfg with srsly's ujson, which can be an ulp off)
        assert loaded.get_pipe("crf_ner").cfg["temperature"] == pytest.approx(ner.cfg["temperature"], rel=1e-12)
        again = list(loaded.pipe(texts))
        assert ents_of(again) == ents_of(docs)
        for a, b in zip(docs, again):
            assert a.spans["crf_ner"].attrs["scores"] == pytest.approx(b.spans["crf_ner"].attrs["scores"], abs=1e-6)


def test_calibrate_needs_nlp_for_a_listener(make_examples):
    """With a tok2vec listener, calibrate() without nlp is an error (the listener would read
    empty vectors); with nlp it runs the tok2vec first and matches the pipeline's output."""
    nlp = spacy.blank("en")
    nlp.add_pipe("tok2vec")
    nlp.add_pipe("crf_ner", config={"model": {"@architectures": "spacy-crf-ner.CRFTagger.v1", "nO": None,
                                              "tok2vec": {"@architectures": "spacy.Tok2VecListener.v1", "width": 96}}})
    train(nlp, make_examples(nlp, 12, seed=1), steps=6)
    calib = make_examples(nlp, 40, seed=2)
    ner = nlp.get_pipe("crf_ner")
    with pytest.raises(ValueError, match="pass nlp="):
        ner.calibrate(calib)
    before = nlp.evaluate(calib)
    result = ner.calibrate(calib, nlp=nlp)
    assert result["ece_before"] == pytest.approx(before["ents_ece"], abs=1e-4)
    assert result["ece_after"] == pytest.approx(nlp.evaluate(calib)["ents_ece"], abs=1e-4)
    assert all(len(eg.predicted.ents) == 0 for eg in calib)  # the examples were not changed


def test_calibrate_without_entities_is_an_error(overconfident):
    nlp, _, _ = overconfident
    nothing = [Example.from_dict(nlp.make_doc("the the the ."), {"entities": []})]
    with pytest.raises(ValueError, match="no predicted entity"):
        nlp.get_pipe("crf_ner").calibrate(nothing)


def test_cli_calibrates_a_saved_pipeline(overconfident, tmp_path):
    nlp, calib, test = overconfident
    nlp.get_pipe("crf_ner").cfg["temperature"] = 1.0
    nlp.to_disk(tmp_path / "model")
    DocBin(docs=[eg.reference for eg in calib]).to_disk(tmp_path / "dev.spacy")
    result = CliRunner().invoke(app, ["calibrate", str(tmp_path / "model"), str(tmp_path / "dev.spacy"),
                                      "--output", str(tmp_path / "calibrated")])
    assert result.exit_code == 0, result.output
    assert "ece" in result.output
    loaded = spacy.load(tmp_path / "calibrated")
    temperature = loaded.get_pipe("crf_ner").cfg["temperature"]
    assert temperature != 1.0 and math.isfinite(temperature)
    assert loaded.meta["calibration"]["temperature"] == pytest.approx(temperature, rel=1e-12)
    texts = [eg.reference.text for eg in test]
    assert ents_of(loaded.pipe(texts)) == ents_of(nlp.pipe(texts))
    missing = CliRunner().invoke(app, ["calibrate", str(tmp_path / "model"), str(tmp_path / "dev.spacy"),
                                       "--output", str(tmp_path / "x"), "--component", "ner"])
    assert missing.exit_code == 1 and "No component 'ner'" in missing.output
