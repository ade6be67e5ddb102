"""Tests for scripts/evaluate.py and scripts/calibration.py: a tiny crf_ner pipeline trained on the
spot and a plain spaCy ``ner`` one, evaluated end to end; the calibration maths on toy inputs; the
transition heatmap's forbidden-cell mask against the CRF's constraints."""
import html
import importlib.util
import json
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Corpus, Example
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


calibration = _load("calibration_script", ROOT / "scripts" / "calibration.py")
evaluate_script = _load("evaluate_script", ROOT / "scripts" / "evaluate.py")


def train(nlp, examples, steps):
    spacy.util.fix_random_seed(0)
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
    train(nlp, make_examples(nlp, 20, seed=1), steps=10)
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


def test_ece_matches_hand_computation():
    confidences = [0.9, 0.9, 0.2, 0.2, 0.65]
    correct = [True, False, False, False, True]
    result = calibration.expected_calibration_error(confidences, correct, n_bins=10)
    # bins: 9 -> conf 0.9, acc 0.5, gap 0.4 (n=2); 2 -> conf 0.2, acc 0 (n=2); 6 -> 0.65 vs 1 (n=1)
    assert result["ece"] == pytest.approx((2 * 0.4 + 2 * 0.2 + 1 * 0.35) / 5)
    assert result["mce"] == pytest.approx(0.4)
    assert result["n_entities"] == 5
    assert [b["count"] for b in result["bins"]] == [0, 0, 2, 0, 0, 0, 1, 0, 0, 2]
    assert result["bins"][9]["accuracy"] == 0.5 and result["bins"][9]["confidence"] == pytest.approx(0.9)
    assert result["bins"][0]["accuracy"] is None
    assert result["accuracy"] == pytest.approx(0.4)
    json.dumps(result)  # JSON-serialisable


def test_ece_is_zero_when_perfectly_calibrated():
    confidences = [0.8] * 10 + [0.25] * 4 + [1.0] * 3
    correct = [1] * 8 + [0] * 2 + [1] + [0] * 3 + [1] * 3
    result = calibration.expected_calibration_error(confidences, correct)
    assert result["ece"] == pytest.approx(0.0, abs=1e-12)
    assert result["mce"] == pytest.approx(0.0, abs=1e-12)
    assert result["bins"][9]["count"] == 3  # 1.0 falls in the last bin


def test_ece_bin_edges_and_errors():
    result = calibration.expected_calibration_error([0.0, 0.3, 0.7, 0.999, 1.0], [1, 1, 1, 1, 1])
    assert [b["count"] for b in result["bins"]] == [1, 0, 0, 1, 0, 0, 0, 1, 0, 2]
    empty = calibration.expected_calibration_error([], [])
    assert empty["ece"] is None and empty["n_entities"] == 0
    with pytest.raises(ValueError):
        calibration.expected_calibration_error([1.2], [True])
    with pytest.raises(ValueError):
        calibration.expected_calibration_error([0.5, 0.5], [True])


def test_reliability_diagram_writes_png(tmp_path):
    rng = numpy.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 200)
    result = calibration.expected_calibration_error(conf, rng.uniform(size=200) < conf)
    calibration.reliability_diagram(result, tmp_path / "r.png")
    assert_png(tmp_path / "r.png")


def test_confidences_use_only_doc_ents():
    """Extra candidates in the span group are left out, each entity is paired with its own
    score, and correctness is an exact span + label match."""
    nlp = spacy.blank("en")
    words = "Anna Berg flew to Oslo with Tomas".split()
    gold = Doc(nlp.vocab, words=words)
    gold.ents = [Span(gold, 0, 2, "PER"), Span(gold, 4, 5, "LOC"), Span(gold, 6, 7, "PER")]
    pred = Doc(nlp.vocab, words=words)
    pred.ents = [Span(pred, 0, 2, "PER"), Span(pred, 4, 5, "ORG")]  # right, wrong label
    group = [Span(pred, 0, 2, "PER"), Span(pred, 4, 5, "ORG"), Span(pred, 4, 5, "LOC"), Span(pred, 6, 7, "PER")]
    pred.spans["ner_key"] = group
    pred.spans["ner_key"].attrs["scores"] = [0.9, 0.6, 0.35, 0.3]
    conf, correct, counts, why = evaluate_script.collect_confidences([Example(pred, gold)], "ner_key")
    assert why is None
    assert conf.tolist() == [0.9, 0.6] and correct.tolist() == [True, False]
    assert counts == {"n_candidates": 2, "n_unscored": 0, "n_unannotated": 0}

    conf, correct, counts, why = evaluate_script.collect_confidences([Example(pred, gold)], "other")
    assert conf is None and "no doc.spans['other']" in why
    del pred.spans["ner_key"].attrs["scores"]
    assert "no attrs['scores']" in evaluate_script.collect_confidences([Example(pred, gold)], "ner_key")[3]


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
