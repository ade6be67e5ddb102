"""``python -m spacy_crf_ner debug-data``: spaCy debug data's NER checks, for crf_ner, against
spaCy's own counts of the same problems."""
import subprocess
import sys
from pathlib import Path

import spacy
from spacy.cli.debug_data import _compile_gold
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example

from spacy_crf_ner.debug_data import check_entities

CONFIG = Path(__file__).parent.parent / "configs" / "crf_ner_cnn.cfg"


def make_doc(nlp, words, ents, spaces=None, sents=None):
    doc = Doc(nlp.vocab, words=words, spaces=spaces)
    doc.ents = [Span(doc, s, e, label) for s, e, label in ents]
    for i, token in enumerate(doc):
        if sents is not None:
            token.is_sent_start = i in sents
    return doc


def corpora(nlp):
    train = [
        make_doc(nlp, ["Anna", "Berg", "lives", "in", "Oslo", "."], [(0, 2, "PER"), (4, 5, "LOC")]),
        make_doc(nlp, ["Anna", " ", "left", "."], [(0, 2, "PER")], spaces=[False, False, True, False]),
        make_doc(nlp, ["(", "Nordbank", ")", "grew", "."], [(0, 3, "ORG")]),
        make_doc(nlp, ["He", "met", "Lea", ".", "Park", "rose", "."], [(2, 5, "PER")], sents=[0, 4]),
    ]
    dev = [make_doc(nlp, ["Anna", "Berg", "lives", "."], [(0, 2, "PER")])]
    return train, dev


def test_counts_agree_with_spacy_debug_data():
    nlp = spacy.blank("en")
    train, _ = corpora(nlp)
    # Same tokens on both sides (spaCy checks the predicted doc, this command the reference).
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc]), doc) for doc in train]
    spacy_gold = _compile_gold(examples, ["ner"], nlp, make_proj=False)
    report = check_entities(examples)
    assert dict(report.label_counts) == {label: n for label, n in spacy_gold["ner"].items() if label != "-"}
    assert len(report.whitespace_ents) == spacy_gold["ws_ents"] == 1
    assert len(report.boundary_cross_ents) == spacy_gold["boundary_cross_ents"] == 1
    assert [text for text, _ in report.punct_ents] == ["( Nordbank )"]


def test_cli_reports_each_problem(tmp_path):
    nlp = spacy.blank("en")
    train, dev = corpora(nlp)
    DocBin(docs=train).to_disk(tmp_path / "train.spacy")
    DocBin(docs=dev).to_disk(tmp_path / "dev.spacy")
    run = subprocess.run(
        [sys.executable, "-m", "spacy_crf_ner", "debug-data", str(CONFIG),
         "--paths.train", str(tmp_path / "train.spacy"), "--paths.dev", str(tmp_path / "dev.spacy")],
        capture_output=True, text=True, env={"ANSI_COLORS_DISABLED": "1", "PATH": "", "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    out = " ".join(run.stdout.split())
    assert run.returncode == 1, run.stderr
    assert "Labels in train data: 'PER' (3), 'LOC' (1), 'ORG' (1)" in out
    assert "missing from the dev data: ['LOC', 'ORG']" in out
    assert "1 entity span(s) starting or ending with whitespace in the train data" in out
    assert "'( Nordbank )'" in out
    assert "1 entity span(s) crossing sentence boundaries in the train data 'Lea . Park'" in out
