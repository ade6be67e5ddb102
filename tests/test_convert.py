"""Tests for spacy_crf_ner/convert.py (scripts/convert.py is its project entry): small inputs
written to tmp_path, plus the embedded sample corpus."""
import subprocess
import sys
from pathlib import Path

import pytest
from spacy.tokens import DocBin
from spacy.vocab import Vocab
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "sample"


from spacy_crf_ner import convert
from spacy_crf_ner.__main__ import app
from spacy_crf_ner.convert import ConversionError


def run(tmp_path, text, name="input.conll", **kwargs):
    """Convert `text`; return (summary, docs read back from the written DocBin)."""
    src = tmp_path / name
    src.write_text(text, encoding="utf-8")
    out = tmp_path / (name + ".spacy")
    summary = convert.convert_file(src, out, **kwargs)
    docs = list(DocBin().from_disk(out).get_docs(Vocab()))
    return summary, docs


def conversion_error(tmp_path, text, name):
    """Write `text` to `name` and convert it, which must fail; return (source path, the error)."""
    src = tmp_path / name
    src.write_text(text, encoding="utf-8")
    with pytest.raises(ConversionError) as info:
        convert.convert_file(src, src.with_suffix(".spacy"))
    return src, info.value


def ents(docs):
    return [(e.text, e.label_) for doc in docs for e in doc.ents]


def conll(rows):
    """rows: sentences as lists of (token, tag) -> four-column CoNLL-2003 text."""
    return "\n\n".join("\n".join(f"{w} NNP I-NP {t}" for w, t in sent) for sent in rows) + "\n"


FOUR_COLUMNS = """{docstart}

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

{docstart}

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""
EXPECTED_FOUR = [("EU", "ORG"), ("German", "MISC"), ("Peter Blackburn", "PER"), ("BRUSSELS", "LOC")]


@pytest.mark.parametrize("docstart", ["-DOCSTART- -X- O O", "-DOCSTART- -X- -X- O"])
def test_four_columns_with_docstart(tmp_path, docstart):
    summary, docs = run(tmp_path, FOUR_COLUMNS.format(docstart=docstart))
    assert len(docs) == 2
    assert [len(list(doc.sents)) for doc in docs] == [2, 1]
    assert ents(docs) == EXPECTED_FOUR
    assert all("-DOCSTART-" not in doc.text for doc in docs)
    assert [t.tag_ for t in docs[0]][:2] == ["NNP", "VBZ"]  # the POS column is kept
    assert summary["documents"] == 2 and summary["sentences"] == 3 and summary["tokens"] == 9
    assert summary["entities"] == {"LOC": 1, "MISC": 1, "ORG": 1, "PER": 1}


def test_docstart_without_blank_line_and_crlf(tmp_path):
    text = "-DOCSTART- -X- -X- O\r\nOslo NNP B-NP B-LOC\r\nfell VBD B-VP O\r\n\r\n"
    summary, docs = run(tmp_path, text)
    assert [t.text for t in docs[0]] == ["Oslo", "fell"]
    assert ents(docs) == [("Oslo", "LOC")]


def test_two_column_tab(tmp_path):
    text = "R.H.\tB-ORG\nSaunders\tI-ORG\n(\tO\n968\tO\n)\tO\n\nAnders\tB-PER\nLindström\tI-PER\n"
    summary, docs = run(tmp_path, text, name="train.iob")
    assert summary["format"] == "conll"
    assert ents(docs) == [("R.H. Saunders", "ORG"), ("Anders Lindström", "PER")]
    assert summary["sentences"] == 2 and summary["documents"] == 1


def test_iob1_and_iob2_give_the_same_entities(tmp_path):
    # Includes the case where IOB1 needs B-: two PER entities with nothing between them.
    words = ["The", "coach", "told", "Anna", "Berg", "Tom", "Walsh", "would", "start", "in",
             "Oslo", "Norway", "."]
    iob2 = ["O", "O", "O", "B-PER", "I-PER", "B-PER", "I-PER", "O", "O", "O", "B-LOC", "B-LOC", "O"]
    iob1 = ["O", "O", "O", "I-PER", "I-PER", "B-PER", "I-PER", "O", "O", "O", "I-LOC", "B-LOC", "O"]
    second = [("Kestrel", "I-ORG"), ("Airlines", "I-ORG"), ("Lisbon", "I-LOC"), ("flights", "O")]
    second2 = [("Kestrel", "B-ORG"), ("Airlines", "I-ORG"), ("Lisbon", "B-LOC"), ("flights", "O")]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, docs1 = run(tmp_path / "a", conll([list(zip(words, iob1)), second]))
    _, docs2 = run(tmp_path / "b", conll([list(zip(words, iob2)), second2]))
    expected = [("Anna Berg", "PER"), ("Tom Walsh", "PER"), ("Oslo", "LOC"), ("Norway", "LOC"),
                ("Kestrel Airlines", "ORG"), ("Lisbon", "LOC")]
    assert ents(docs1) == ents(docs2) == expected


def test_bioes_and_biluo(tmp_path):
    words = ["Anna", "Berg", "met", "Tom", "Ray", "Walsh", "in", "Oslo", "Bergen", "."]
    bioes = ["B-PER", "E-PER", "O", "B-PER", "I-PER", "E-PER", "O", "S-LOC", "S-LOC", "O"]
    biluo = ["B-PER", "L-PER", "O", "B-PER", "I-PER", "L-PER", "O", "U-LOC", "U-LOC", "O"]
    expected = [("Anna Berg", "PER"), ("Tom Ray Walsh", "PER"), ("Oslo", "LOC"), ("Bergen", "LOC")]
    for scheme, tags in (("bioes", bioes), ("biluo", biluo)):
        (tmp_path / scheme).mkdir()
        _, docs = run(tmp_path / scheme, conll([list(zip(words, tags))]))
        assert ents(docs) == expected, scheme


def test_n_sents_grouping(tmp_path):
    sents = [[(f"w{i}", "B-PER" if i == 0 else "O"), ("x", "O")] for i in range(5)]
    # Extra blank lines would make spaCy's own grouping uneven; here they must not matter.
    text = conll(sents).replace("\n\n", "\n\n\n\n", 1)
    summary, docs = run(tmp_path, text, n_sents=2)
    assert [len(list(doc.sents)) for doc in docs] == [2, 2, 1]
    assert summary["sentences"] == 5 and summary["tokens"] == 10
    summary, docs = run(tmp_path, text, n_sents=0)
    assert len(docs) == 1 and len(list(docs[0].sents)) == 5


def test_sentence_per_line_iob_format(tmp_path):
    text = ("I|PRP|O like|VBP|O London|NNP|I-LOC and|CC|O New|NNP|B-LOC York|NNP|I-LOC\n"
            "\n"
            "Anna|NNP|B-PER left|VBD|O .|.|O\n"
            "Oslo|NNP|B-LOC wins|VBZ|O\n"
            "-DOCSTART- -X- O O\n"
            "Rome|NNP|B-LOC\n")
    summary, docs = run(tmp_path, text, name="x.txt", n_sents=2)
    assert summary["format"] == "iob"
    assert [len(list(doc.sents)) for doc in docs] == [2, 1, 1]
    assert ents(docs) == [("London", "LOC"), ("New York", "LOC"), ("Anna", "PER"), ("Oslo", "LOC"),
                          ("Rome", "LOC")]
    assert summary["document_breaks"] == "-DOCSTART- and every 2 sentences"


def test_malformed_tags_all_reported_with_file_and_line(tmp_path):
    text = "Anna B-PER\nBerg I_PER\n\nOslo LOC\nis O\n\nfine O\nhere B-LOC\n"
    src, error = conversion_error(tmp_path, text, "bad.conll")
    message = str(error)
    assert f"{src}:2: tag 'I_PER'" in message
    assert f"{src}:4: tag 'LOC'" in message
    assert len(error.problems) == 2
    assert not (tmp_path / "bad.spacy").exists()


def test_missing_column_and_inconsistent_columns(tmp_path):
    text = "Anna NNP B-NP B-PER\nfoo\nBerg NNP I-PER\nleft VBD B-VP O\n"
    src, error = conversion_error(tmp_path, text, "cols.conll")
    problems = error.problems
    assert any(p.startswith(f"{src}:2: only one column") for p in problems)
    assert any(p.startswith(f"{src}:3: 3 columns, but 2 of the 3 tokens have 4 (the first at "
                            f"{src}:1)") for p in problems)


def test_odd_first_line_is_the_one_blamed(tmp_path):
    # The column count of line 1 used to be the reference: every other line was blamed.
    text = "Anna NNP B-PER\nBerg I-PER\nleft O\n\nOslo B-LOC\nwins O\n"
    src, error = conversion_error(tmp_path, text, "first.conll")
    assert error.problems == [
        f"{src}:1: 3 columns, but 4 of the 5 tokens have 2 (the first at {src}:2)"
    ]
    iob = tmp_path / "first.iob"
    iob.write_text("Anna|NNP|B-PER Berg|I-PER\nOslo|B-LOC wins|O\n", encoding="utf-8")
    with pytest.raises(ConversionError) as info:
        convert.convert_file(iob, tmp_path / "first_iob.spacy")
    assert info.value.problems == [
        f"{iob}:1 (item 1): 3 |-separated parts, but 3 of the 4 tokens have 2 (the first at "
        f"{iob}:1 (item 2))"
    ]


INVALID_MOVES = [
    # tags of "Anna Berg Lea left", the entities the split policy makes, the reported moves
    (["U-PER", "I-PER", "O", "O"], ["Anna", "Berg"], [(2, "'U-PER' -> 'I-PER'"), (3, "'I-PER' -> 'O'")]),
    (["B-PER", "L-PER", "I-PER", "O"], ["Anna Berg", "Lea"],
     [(3, "'L-PER' -> 'I-PER'"), (4, "'I-PER' -> 'O'")]),
    (["S-PER", "I-PER", "O", "O"], ["Anna", "Berg"], [(2, "'S-PER' -> 'I-PER'"), (3, "'I-PER' -> 'O'")]),
    (["S-PER", "M-PER", "E-PER", "O"], ["Anna", "Berg Lea"], [(2, "'S-PER' -> 'M-PER'")]),
    (["B-PER", "B-PER", "E-PER", "O"], ["Anna", "Berg Lea"], [(2, "'B-PER' -> 'B-PER'")]),
]


@pytest.mark.parametrize("tags,expected,moves", INVALID_MOVES)
def test_invalid_biluo_moves_are_errors_or_split(tmp_path, tags, expected, moves):
    # spaCy's iob_to_biluo merges all of these silently (U-PER I-PER -> "Anna Berg").
    words = ["Anna", "Berg", "Lea", "left"]
    text = "\n".join(f"{w}\t{t}" for w, t in zip(words, tags)) + "\n\nOslo\tS-LOC\nwins\tO\n"
    src, error = conversion_error(tmp_path, text, "moves.conll")
    assert "invalid tag move" in error.problems[0]
    reported = error.problems[1:]
    assert len(reported) == len(moves)
    for problem, (line, what) in zip(reported, moves):
        assert problem.startswith(f"{src}:{line}: ") and what in problem, problem
    assert not (tmp_path / "moves.spacy").exists()

    summary, docs = run(tmp_path, text, name="moves.conll", invalid_moves="split")
    assert ents(docs) == [(name, "PER") for name in expected] + [("Oslo", "LOC")]
    assert len(summary["repaired"]) == len(moves)
    assert summary["repaired"] == reported
    assert summary["tokens"] == 6


def test_valid_iob_moves_are_left_to_spacy(tmp_path):
    # IOB1/IOB2 files know no closing tag: I-X after O begins an entity there, as in spaCy.
    _, docs = run(tmp_path, "Anna\tI-PER\nBerg\tI-PER\nleft\tO\nOslo\tI-LOC\n")
    assert ents(docs) == [("Anna Berg", "PER"), ("Oslo", "LOC")]


def test_iob_tags_in_a_bioes_file_are_reported_with_the_reason(tmp_path):
    # One S- tag makes the file BIOES, where the IOB2 entity "New York" is never closed.
    text = "New\tB-LOC\nYork\tI-LOC\nand\tO\nOslo\tS-LOC\n"
    src, error = conversion_error(tmp_path, text, "mixed.conll")
    assert f"'S-LOC' at {src}:4" in error.problems[0]
    assert error.problems[1:] == [f"{src}:3: invalid move 'I-LOC' -> 'O'"]


def test_non_utf8_input_names_file_and_line(tmp_path):
    src = tmp_path / "latin1.conll"
    src.write_bytes("Anna\tB-PER\n\nJos\u00e9\tB-PER\nleft\tO\nS\u00e3o\tB-LOC\n".encode("latin-1"))
    with pytest.raises(ConversionError) as info:
        convert.convert_file(src, tmp_path / "latin1.spacy")
    assert info.value.problems == [
        f"{src}:3: not UTF-8 (byte 0xe9 at byte 4 of the line)",
        f"{src}:5: not UTF-8 (byte 0xe3 at byte 2 of the line)",
    ]


@pytest.mark.parametrize("item,what", [("|O", "empty"), ("\ufeff|O", "nothing but U+FEFF"),
                                       ("\ufeff|NN|B-PER", "nothing but U+FEFF")])
def test_iob_item_without_token_names_file_and_line(tmp_path, item, what):
    # Reached spaCy as an empty word before: "[E031] Invalid token", with no file or line.
    pos = "|NN" if item.count("|") == 2 else ""
    text = f"Anna{pos}|B-PER left{pos}|O\nOslo{pos}|B-LOC {item} wins{pos}|O\n"
    src, error = conversion_error(tmp_path, text, "empty.iob")
    assert len(error.problems) == 1
    assert error.problems[0].startswith(f"{src}:2: item 2 (")
    assert f"the token is {what}" in error.problems[0]


def test_conll_line_with_a_tag_but_no_token_is_an_error(tmp_path):
    src, error = conversion_error(tmp_path, "Anna\tB-PER\n\ufeff\tI-PER\nleft\tO\n", "bom.conll")
    assert error.problems == [f"{src}:2: the token is nothing but U+FEFF (zero-width "
                                   "no-break space)"]


def test_pos_only_file_is_rejected(tmp_path):
    text = "The DT\ncat NN\nsat VBD\n.\t.\n\nDogs NNS\nbark VBP\n"
    src = tmp_path / "pos.conll"
    src.write_text(text, encoding="utf-8")
    with pytest.raises(ConversionError, match="does not look like NER tags"):
        convert.convert_file(src, tmp_path / "pos.spacy")


def test_chunk_only_file_is_rejected(tmp_path):
    text = "The DT B-NP\ncat NN I-NP\nsat VBD B-VP\n. . O\n"
    src = tmp_path / "chunks.conll"
    src.write_text(text, encoding="utf-8")
    with pytest.raises(ConversionError, match="chunk tags"):
        convert.convert_file(src, tmp_path / "chunks.spacy")


def test_all_o_file_needs_explicit_permission(tmp_path):
    text = "nothing O\nhere O\n"
    src = tmp_path / "empty.conll"
    src.write_text(text, encoding="utf-8")
    with pytest.raises(ConversionError, match="every tag is O"):
        convert.convert_file(src, tmp_path / "empty.spacy")
    summary = convert.convert_file(src, tmp_path / "empty.spacy", allow_no_entities=True)
    assert summary["sentences"] == 1 and summary["entities"] == {}


def test_zero_width_no_break_space(tmp_path):
    # As in WNUT17 dev: a token carrying U+FEFF, and a final line holding only U+FEFF.
    text = "\ufeffexcellent\tO\npoem\tO\nDubbz\ufeff\tB-person\n\nThis\tO\nguy\tO\n!\tO\n\ufeff\n"
    summary, docs = run(tmp_path, text)
    assert ents(docs) == [("Dubbz", "person")]
    assert [t.text for t in docs[0]][:1] == ["excellent"]
    assert summary["sentences"] == 2 and summary["tokens"] == 6
    assert len(summary["warnings"]) == 1
    assert summary["warnings"][0].startswith(f"{tmp_path / 'input.conll'}:8:")


def test_cli_writes_explicit_output_and_reports_errors(tmp_path):
    good = tmp_path / "eng.testa"
    good.write_text(FOUR_COLUMNS.format(docstart="-DOCSTART- -X- O O"), encoding="utf-8")
    out = tmp_path / "corpus" / "dev.spacy"
    # Once as a script, as `spacy project run` calls it.
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert.py"), str(good),
                             str(out), "--n-sents", "10"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.exists() and "MISC" in result.stdout and "total" in result.stdout
    bad = tmp_path / "bad.conll"
    bad.write_text("Anna B-PER\nfoo\nBerg X-PER\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["convert", str(bad), str(tmp_path / "bad.spacy")])
    assert result.exit_code == 1
    assert f"{bad}:2: only one column" in result.output
    assert f"{bad}:3: tag 'X-PER'" in result.output
    assert not (tmp_path / "bad.spacy").exists()


@pytest.mark.parametrize("split,n_sents", [("train", 400), ("dev", 80), ("test", 80)])
def test_embedded_sample_corpus(tmp_path, split, n_sents):
    summary = convert.convert_file(SAMPLE / f"{split}.conll", tmp_path / f"{split}.spacy")
    assert summary["sentences"] == n_sents
    assert set(summary["entities"]) == {"PER", "ORG", "LOC", "MISC"}
    assert min(summary["entities"].values()) >= n_sents // 5
    assert summary["documents"] > 3 and summary["warnings"] == []


def test_sample_generator_reproduces_the_files(tmp_path):
    subprocess.run([sys.executable, str(SAMPLE / "make_sample.py"), "--out", str(tmp_path)],
                   check=True)
    for split in ("train", "dev", "test"):
        assert (tmp_path / f"{split}.conll").read_bytes() == (SAMPLE / f"{split}.conll").read_bytes()
