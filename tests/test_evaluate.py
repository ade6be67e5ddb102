"""Tests for scripts/evaluate.py: a tiny crf_ner pipeline trained on the spot and a plain spaCy
``ner`` one, evaluated end to end (the calibration measures themselves are tested in
test_scoring.py), a calibrated one with its before/after reliability diagram; the transition
heatmap's forbidden-cell mask against the CRF's constraints."""
import html
import importlib.util
import json
import random
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import DocBin, Span
from spacy.training import Corpus
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


evaluate_script = _load("evaluate_script", ROOT / "scripts" / "evaluate.py")


def train(nlp, examples, steps, mislabelled=0.0):
    """``steps`` updates on ``examples``. A model initialised to predict ``O`` learns these easy
    template sentences without a single error, so an imperfect (and overconfident) model is
    trained on labels of which a share ``mislabelled`` is wrong (PER -> ORG -> LOC -> PER)."""
    spacy.util.fix_random_seed(0)
    rng = random.Random(0)
    swap = {"PER": "ORG", "ORG": "LOC", "LOC": "PER"}
    for eg in examples:
        ref = eg.reference
        ref.ents = [Span(ref, e.start, e.end, label=swap[e.label_] if rng.random() < mislabelled else e.label_) for e in ref.ents]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return nlp


def write_docbin(examples, path):
    DocBin(docs=[eg.reference for eg in examples]).to_disk(path)
    return path


@pytest.fixture(scope="module")
def crf_model(tmp_path_factory, make_examples):
    """A crf_ner pipeline trained a little (it gets most, not all, test entities right), saved,
    and a test corpus of other sentences."""
    path = tmp_path_factory.mktemp("crf_eval")
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner")
    train(nlp, make_examples(nlp, 20, seed=1), steps=10, mislabelled=0.3)
    nlp.to_disk(path / "model")
    write_docbin(make_examples(nlp, 30, seed=2), path / "test.spacy")
    return path


def assert_png(path: Path, min_bytes: int = 10_000):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > min_bytes, (path, len(data))
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas


def reference_scores(model_dir: Path, data: Path):
    nlp = spacy.load(model_dir)
    return nlp, nlp.evaluate(list(Corpus(data)(nlp)))


# -- end to end -------------------------------------------------------------------------------


def test_cli_on_crf_ner_pipeline(crf_model):
    out = crf_model / "out"
    result = CliRunner().invoke(
        evaluate_script.app,
        [str(crf_model / "model"), str(crf_model / "test.spacy"), str(out), "--n-examples", "1000"],
    )
    assert result.exit_code == 0, result.output
    assert "NER (per type)" in result.output

    nlp, expected = reference_scores(crf_model / "model", crf_model / "test.spacy")
    scores = json.loads((out / "scores.json").read_text(encoding="utf8"))
    assert scores["ents_f"] == expected["ents_f"]
    assert scores["ents_p"] == expected["ents_p"] and scores["ents_r"] == expected["ents_r"]
    assert scores["ents_per_type"] == expected["ents_per_type"]
    assert 0.0 < scores["ents_f"] < 1.0  # some right, some wrong: both kinds on the page
    assert scores["n_docs"] == 30 and scores["words_per_second"] > 0
    examples = list(Corpus(crf_model / "test.spacy")(nlp))
    assert scores["n_words"] == sum(len(eg.reference) for eg in examples)

    for name in ("per_label_prf.png", "transitions.png"):
        assert_png(out / name)

    # All sentences are shown (--n-examples 1000): every gold and every predicted entity is on
    # the page, and exactly the sentences whose entities differ are highlighted.
    page = (out / "examples.html").read_text(encoding="utf8")
    predicted = list(nlp.pipe(eg.reference.text for eg in examples))
    assert "GOLD" in page and "PREDICTED" in page
    n_differ = 0
    for eg, doc in zip(examples, predicted):
        for ent in list(eg.reference.ents) + list(doc.ents):
            assert html.escape(ent.text) in page
        gold = {(e.start_char, e.end_char, e.label_) for e in eg.reference.ents}
        n_differ += gold != {(e.start_char, e.end_char, e.label_) for e in doc.ents}
    assert n_differ > 0
    assert page.count('class="example differs"') == n_differ
    assert page.count('class="example same"') == len(examples) - n_differ

    # Calibration: the component stores confidences unless configured not to.
    ner = nlp.get_pipe("crf_ner")
    if ner.cfg.get("confidences", False):
        calib = scores["calibration"]
        n_pred = sum(len(doc.ents) for doc in predicted)
        assert calib["n_entities"] + calib["n_unscored"] + calib["n_unannotated"] == n_pred
        assert calib["n_unscored"] == 0
        # exact-match accuracy of the scored entities is the scorer's precision
        assert calib["accuracy"] == pytest.approx(expected["ents_p"])
        assert 0.0 <= calib["ece"] <= calib["mce"] <= 1.0
        assert sum(b["count"] for b in calib["bins"]) == calib["n_entities"]
        assert_png(out / "reliability.png")


def test_plain_spacy_ner_pipeline(tmp_path, make_examples):
    """A spaCy `ner` pipeline: found although --component says crf_ner, scored, no heatmap and
    no calibration (notes say so), no crash."""
    nlp = spacy.blank("en")
    nlp.add_pipe("ner")
    train(nlp, make_examples(nlp, 20, seed=3), steps=8)
    nlp.to_disk(tmp_path / "model")
    data = write_docbin(make_examples(nlp, 10, seed=4), tmp_path / "test.spacy")

    result = evaluate_script.evaluate(tmp_path / "model", data, tmp_path / "out", n_examples=5, silent=True)
    _, expected = reference_scores(tmp_path / "model", data)
    scores = json.loads((tmp_path / "out" / "scores.json").read_text(encoding="utf8"))
    assert scores == json.loads(json.dumps(result))
    assert scores["component"] == "ner" and scores["factory"] == "ner"
    assert scores["ents_f"] == expected["ents_f"]
    assert scores["calibration"] is None
    assert any(note.startswith("calibration skipped") for note in scores["notes"])
    assert any(note.startswith("transition heatmap skipped") for note in scores["notes"])
    assert not (tmp_path / "out" / "transitions.png").exists()
    assert not (tmp_path / "out" / "reliability.png").exists()
    assert_png(tmp_path / "out" / "per_label_prf.png")
    assert (tmp_path / "out" / "examples.html").read_text(encoding="utf8").count('class="example ') == 5


def test_heatmap_skip_reason(make_examples):
    nlp = spacy.blank("en")
    crf = nlp.add_pipe("crf_ner")
    softmax = nlp.add_pipe("crf_ner", name="softmax_ner", config={"use_crf": False})
    ner = nlp.add_pipe("ner")
    nlp.initialize(lambda: make_examples(nlp, 5))
    assert evaluate_script.heatmap_skip_reason(crf) is None
    assert "use_crf=False" in evaluate_script.heatmap_skip_reason(softmax)
    assert "no CRF" in evaluate_script.heatmap_skip_reason(ner)
    assert evaluate_script.pipe_crf(ner) is None


def test_missing_component_is_an_error(crf_model, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(tmp_path / "model")
    with pytest.raises(ValueError, match="none that sets doc.ents"):
        evaluate_script.evaluate(tmp_path / "model", crf_model / "test.spacy", tmp_path / "out", silent=True)


# -- calibration ------------------------------------------------------------------------------


def test_calibrated_model_shows_before_and_after(crf_model, make_examples, tmp_path):
    """A calibrated model: scores.json holds the calibration at its temperature (the scorer's
    ents_ece) and as trained (temperature 1, the uncalibrated model's numbers); the diagram has
    both panels."""
    nlp = spacy.load(crf_model / "model")
    plain = evaluate_script.evaluate(crf_model / "model", crf_model / "test.spacy", tmp_path / "plain", silent=True)
    assert plain["calibration_uncalibrated"] is None and plain["ents_ece"] == plain["calibration"]["ece"]
    result = nlp.get_pipe("crf_ner").calibrate(make_examples(nlp, 40, seed=5))
    nlp.to_disk(tmp_path / "calibrated")
    scores = evaluate_script.evaluate(tmp_path / "calibrated", crf_model / "test.spacy", tmp_path / "out", silent=True)
    # (approx: the saved model's cfg is read with srsly's ujson, which can be an ulp off)
    assert scores["temperature"] == pytest.approx(result["temperature"], rel=1e-12) != 1.0
    assert scores["ents_f"] == plain["ents_f"]  # the same entities
    assert scores["calibration_uncalibrated"] == plain["calibration"]
    assert scores["calibration"]["ece"] == pytest.approx(scores["ents_ece"])
    assert scores["calibration"]["ece"] != plain["calibration"]["ece"]
    assert_png(tmp_path / "out" / "reliability.png")
    fig = evaluate_script.plot_reliability(
        [("before", scores["calibration_uncalibrated"]), ("after", scores["calibration"])], tmp_path / "r.png")
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["before", "after"]


# -- the transition heatmap -------------------------------------------------------------------


def test_transition_heatmap_marks_exactly_the_forbidden_moves(crf_model, tmp_path):
    nlp = spacy.load(crf_model / "model")
    ner = nlp.get_pipe("crf_ner")
    crf = ner.crf
    tags = ner.tags
    T = len(tags)
    table = evaluate_script.transition_table(crf, tags)
    assert table["rows"] == ["START"] + tags and table["cols"] == tags + ["END"]

    forbidden = table["forbidden"]
    assert forbidden.shape == (T + 1, T + 1)
    assert (forbidden[0, :T] == ~crf.allowed_start.cpu().numpy()).all()
    assert (forbidden[1:, :T] == ~crf.allowed_transitions.cpu().numpy()).all()
    assert (forbidden[1:, T] == ~crf.allowed_end.cpu().numpy()).all()
    assert not forbidden[0, T] and table["not_a_move"][0, T] and table["not_a_move"].sum() == 1
    assert forbidden.any() and not forbidden.all()
    # a few moves spelled out (BILUO)
    row, col = {t: i for i, t in enumerate(table["rows"])}, {t: i for i, t in enumerate(table["cols"])}
    assert forbidden[row["O"], col["I-PER"]] and forbidden[row["START"], col["L-LOC"]]
    assert forbidden[row["B-PER"], col["END"]] and forbidden[row["B-PER"], col["I-LOC"]]
    assert not forbidden[row["B-PER"], col["I-PER"]] and not forbidden[row["U-LOC"], col["END"]]

    scores = table["scores"]
    assert numpy.allclose(scores[0, :T], crf.start_transitions.detach().cpu().numpy())
    assert numpy.allclose(scores[1:, :T], crf.transitions.detach().cpu().numpy())
    assert numpy.allclose(scores[1:, T], crf.end_transitions.detach().cpu().numpy())
    assert numpy.isnan(scores[0, T])

    # The picture crosses exactly the forbidden cells.
    fig = evaluate_script.plot_transitions(table, tmp_path / "t.png")
    crosses = {(round(t.get_position()[1]), round(t.get_position()[0]))
               for ax in fig.axes for t in ax.texts if t.get_text() == "×"}
    assert crosses == set(zip(*numpy.nonzero(forbidden)))
    assert_png(tmp_path / "t.png")
