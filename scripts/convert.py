"""Convert one CoNLL-style NER file into a spaCy DocBin (.spacy).

    python scripts/convert.py INPUT OUTPUT.spacy [--n-sents 10] [--format auto|conll|iob]

Accepted input: token-per-line files whose first column is the token and whose last column is the
NER tag (CoNLL-2003's four columns, or two columns `token<TAB>tag`), blank lines between sentences,
optional `-DOCSTART-` document breaks; or spaCy's sentence-per-line `.iob` format (`tok|tag` or
`tok|POS|tag`). Tags may be IOB1, IOB2, BILUO or BIOES.

The tag logic is spaCy's own (`conll_ner_to_docs`, `iob_to_docs`). What this script adds is what
those converters lack: it validates every line first and reports all the broken ones with file and
line number (spaCy's converters either raise one context-free error or, worse, quietly produce
wrong entities), normalises the input variants they mishandle, and checks that no sentence, token
or tag went missing on the way. The output path is explicit, unlike `spacy convert`, which names
outputs after the input stem (so `eng.train` and `eng.testa` would both become `eng.spacy`).
"""
import re
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import typer
from spacy.tokens import DocBin
from spacy.training.converters import conll_ner_to_docs, iob_to_docs
from wasabi import msg

# The only spelling conll_ner_to_docs recognises; any other (e.g. the common re-export
# `-DOCSTART- -X- -X- O`) would silently become a token called "-DOCSTART-".
DOC_DELIMITER = "-DOCSTART- -X- O O"
TAG_RE = re.compile(r"^(O|[BILUES]-\S+)$")
# spaCy's iob_to_biluo only knows B/I/L/U: left as they are, BIOES `B-X E-X` would become two
# one-token entities.
BIOES_TO_BILUO = {"S": "U", "E": "L"}
# Zero-width no-break space (a stray BOM). It is not whitespace to str.split(), so it would glue
# itself to tokens, or make a line that looks empty hold one column.
ZWNBSP = "\ufeff"
# A file whose only "entities" are these is a chunking file (e.g. CoNLL-2003 without its NER
# column), whose B-NP/I-VP tags would otherwise pass for entities.
CHUNK_LABELS = {"NP", "VP", "PP", "ADVP", "ADJP", "SBAR", "PRT", "CONJP", "INTJ", "LST", "UCP"}
MAX_SHOWN_ERRORS = 25
FORMATS = ("auto", "conll", "iob")


class ConversionError(ValueError):
    def __init__(self, path: Path, problems: List[str]):
        self.path = path
        self.problems = problems
        shown = problems[:MAX_SHOWN_ERRORS]
        more = len(problems) - len(shown)
        text = "\n".join(shown) + (f"\n... and {more} more" if more > 0 else "")
        super().__init__(f"{path}: {len(problems)} problem(s) found, nothing converted:\n{text}")


def _read_lines(path: Path) -> List[str]:
    # split("\n"), not splitlines(): the latter also breaks on U+2028, U+0085 and friends, which
    # may occur inside tokens and would shift every line number after them.
    text = path.read_text(encoding="utf-8")
    return [line.rstrip("\r") for line in text.split("\n")]


def _is_docstart(first_field: str) -> bool:
    return first_field.startswith("-DOCSTART-")


def _normalise_tag(tag: str) -> str:
    return BIOES_TO_BILUO.get(tag[0], tag[0]) + tag[1:] if tag != "O" else tag


def _detect_format(lines: List[str]) -> str:
    """'iob' if most content lines are sentences of `tok|tag` items, else 'conll'."""
    votes = Counter()
    for line in lines:
        fields = line.replace(ZWNBSP, "").split()
        if not fields or _is_docstart(fields[0]):
            continue
        votes["iob" if len(fields) > 1 and all("|" in f for f in fields) else "conll"] += 1
        if sum(votes.values()) >= 50:
            break
    return "iob" if votes["iob"] > votes["conll"] else "conll"


def _bad_tag(where: str, tag: str) -> str:
    return f"{where}: tag {tag!r} is not O or B-/I-/L-/U-/E-/S-<LABEL>"


def _prepare_conll(path: Path, lines: List[str], warnings: List[str]):
    """Validate a token-per-line file; return normalised text and the counts it must yield."""
    problems: List[str] = []
    out: List[str] = []
    n_cols: Optional[Tuple[int, int]] = None  # (columns, line where that count was first seen)
    n_sents = n_tokens = n_tagged = n_bad_tags = n_docstarts = 0
    labels = set()
    in_sentence = False
    for lineno, raw in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        fields = [f.replace(ZWNBSP, "") for f in raw.split()]
        if not fields:
            if in_sentence:
                out.append("")
            in_sentence = False
            continue
        if _is_docstart(fields[0]):
            n_docstarts += 1
            out.extend(["", DOC_DELIMITER, ""] if in_sentence else [DOC_DELIMITER, ""])
            in_sentence = False
            continue
        if not fields[0]:
            # Found in real data (WNUT17 dev ends with a line holding only U+FEFF): nothing is
            # lost by dropping it, so warn instead of failing the whole file.
            warnings.append(f"{where}: token is nothing but U+FEFF (zero-width no-break space); "
                            "line ignored")
            continue
        if len(fields) == 1:
            problems.append(f"{where}: only one column ({fields[0]!r}); expected a token and a tag")
            continue
        if n_cols is None:
            n_cols = (len(fields), lineno)
        elif len(fields) != n_cols[0]:
            # conll_ner_to_docs transposes lines with zip(), which truncates to the shortest line:
            # the tag column of the whole sentence would silently become another column.
            problems.append(
                f"{where}: {len(fields)} columns, but line {n_cols[1]} has {n_cols[0]}"
            )
            continue
        tag = fields[-1]
        if not TAG_RE.match(tag):
            problems.append(_bad_tag(where, tag))
            n_bad_tags += 1
            continue
        if not in_sentence:
            n_sents += 1
        in_sentence = True
        n_tokens += 1
        n_tagged += tag != "O"
        labels.add(tag[2:])
        out.append(" ".join(fields[:-1] + [_normalise_tag(tag)]))
    if n_bad_tags > n_tokens:
        problems.insert(0, f"{path}: the last column does not look like NER tags (most values are "
                           "not O or B-/I-/...-<LABEL>): is this a POS/chunk-only file?")
    text = "\n".join(out).strip("\n") + "\n"
    return text, (n_sents, n_tokens, n_tagged), labels, n_docstarts > 0, problems


def _prepare_iob(path: Path, lines: List[str], warnings: List[str]):
    """Validate a sentence-per-line file; return its documents' texts and the expected counts."""
    problems: List[str] = []
    docs: List[List[str]] = [[]]
    n_parts: Optional[Tuple[int, int]] = None
    n_sents = n_tokens = n_tagged = n_bad_tags = 0
    labels = set()
    for lineno, raw in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        items = [f.replace(ZWNBSP, "") for f in raw.split()]
        items = [item for item in items if item]
        if not items:
            if raw.strip():
                warnings.append(f"{where}: line holds nothing but U+FEFF; ignored")
            continue
        if _is_docstart(items[0]):
            docs.append([])
            continue
        line_ok = True
        normalised = []
        for item in items:
            parts = item.split("|")
            if n_parts is None:
                n_parts = (len(parts), lineno)
            if len(parts) not in (2, 3) or len(parts) != n_parts[0]:
                # iob_to_docs only inspects the first item and zips the rest, so a stray `|` in a
                # token would shift its columns unnoticed.
                problems.append(f"{where}: item {item!r} has {len(parts)} |-separated parts, "
                                f"expected {n_parts[0]} (2 or 3) as on line {n_parts[1]}")
                line_ok = False
                break
            if not TAG_RE.match(parts[-1]):
                problems.append(_bad_tag(where, parts[-1]))
                n_bad_tags += 1
                line_ok = False
                break
            labels.add(parts[-1][2:])
            normalised.append("|".join(parts[:-1] + [_normalise_tag(parts[-1])]))
        if line_ok:
            n_sents += 1
            n_tokens += len(items)
            n_tagged += sum(not item.endswith("|O") for item in normalised)
            docs[-1].append(" ".join(normalised))
    if n_bad_tags > n_sents:
        problems.insert(0, f"{path}: the last |-separated part does not look like NER tags")
    expected = (n_sents, n_tokens, n_tagged)
    return [doc for doc in docs if doc], expected, labels, len(docs) > 1, problems


def convert_file(
    input_path, output_path, n_sents: int = 10, fmt: str = "auto", allow_no_entities: bool = False
) -> Dict:
    """Convert INPUT to a DocBin at OUTPUT and return a summary of what was written.

    n_sents: sentences per document, as in `spacy convert -n`; 0 puts the whole file in one
    document. Like spaCy, it is ignored when the file has its own `-DOCSTART-` breaks.
    Raises ConversionError, listing every problem found, if any line is malformed, if the file
    has no entity at all (unless allow_no_entities), or if a sentence got lost on the way.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    if input_path.resolve() == output_path.resolve():
        raise ValueError(f"{output_path}: refusing to overwrite the input file")
    lines = _read_lines(input_path)
    fmt = _detect_format(lines) if fmt == "auto" else fmt
    warnings: List[str] = []
    if fmt == "conll":
        text, expected, labels, has_docstarts, problems = _prepare_conll(
            input_path, lines, warnings
        )
    else:
        doc_texts, expected, labels, has_docstarts, problems = _prepare_iob(
            input_path, lines, warnings
        )
    labels.discard("")  # the "" of O
    if expected[0] == 0 and not problems:
        problems.append(f"{input_path}: no sentences found")
    if expected[2] == 0 and expected[0] and not allow_no_entities and not problems:
        problems.append(f"{input_path}: every tag is O, so no entity would be converted; is the "
                        "tag column the last one? (allow_no_entities / --allow-no-entities "
                        "if this is intended)")
    if labels and labels <= CHUNK_LABELS and not problems:
        problems.append(f"{input_path}: the only labels are {sorted(labels)}, which are chunk tags, "
                        "not entity labels: is the NER column missing?")
    if problems:
        raise ConversionError(input_path, problems)

    if fmt == "conll":
        docs = list(conll_ner_to_docs(text, n_sents=n_sents, no_print=True))
    else:
        # iob_to_docs knows no document breaks, so honour -DOCSTART- by converting each
        # document on its own; blank lines are already gone, since minibatch() would count
        # them as sentences and make uneven (even empty) documents.
        docs = [
            doc
            for lines_ in doc_texts
            for doc in iob_to_docs("\n".join(lines_), n_sents=n_sents or len(lines_), no_print=True)
        ]

    label_counts = Counter(ent.label_ for doc in docs for ent in doc.ents)
    found = (
        sum(len(list(doc.sents)) for doc in docs),
        sum(len(doc) for doc in docs),
        sum(len(ent) for doc in docs for ent in doc.ents),
    )
    if found != expected:
        raise ConversionError(input_path, [
            f"{input_path}: the file has {expected[0]} sentences, {expected[1]} tokens and "
            f"{expected[2]} entity-tagged tokens, but spaCy's converter produced {found[0]}, "
            f"{found[1]} and {found[2]}"
        ])
    output_path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(output_path)
    return {
        "input": str(input_path),
        "output": str(output_path),
        "format": fmt,
        "documents": len(docs),
        "document_breaks": _describe_breaks(fmt, has_docstarts, n_sents),
        "sentences": found[0],
        "tokens": found[1],
        "entities": dict(sorted(label_counts.items())),
        "warnings": warnings,
    }


def _describe_breaks(fmt: str, has_docstarts: bool, n_sents: int) -> str:
    every = f"every {n_sents} sentences" if n_sents else "none"
    if not has_docstarts:
        return every
    # conll_ner_to_docs ignores n_sents when the file has its own breaks; iob format applies both.
    return "-DOCSTART-" if fmt == "conll" else f"-DOCSTART- and {every}"


def print_summary(summary: Dict) -> None:
    for warning in summary["warnings"]:
        msg.warn(warning)
    msg.good(
        f"{summary['input']} -> {summary['output']} ({summary['format']}): "
        f"{summary['documents']} documents ({summary['document_breaks']}), "
        f"{summary['sentences']} sentences, {summary['tokens']} tokens"
    )
    rows = list(summary["entities"].items()) + [("total", sum(summary["entities"].values()))]
    msg.table(rows, header=("label", "entities"), divider=True, aligns=("l", "r"))


app = typer.Typer(add_completion=False)


@app.command()
def main(
    input_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="CoNLL-style file"),
    output_path: Path = typer.Argument(..., dir_okay=False, help="Output .spacy file"),
    n_sents: int = typer.Option(
        10, "--n-sents", "-n",
        help="Sentences per document (0: one doc); ignored where the file has -DOCSTART- breaks",
    ),
    fmt: str = typer.Option("auto", "--format", "-f", help="auto, conll (token per line) or iob"),
    allow_no_entities: bool = typer.Option(False, "--allow-no-entities", help="Accept all-O files"),
) -> None:
    """Convert one CoNLL-style NER file to a spaCy DocBin, validating every line first."""
    try:
        summary = convert_file(input_path, output_path, n_sents, fmt, allow_no_entities)
    except ConversionError as err:
        msg.fail(f"{err.path}: {len(err.problems)} problem(s), nothing written")
        shown = err.problems[:MAX_SHOWN_ERRORS]
        print("\n".join(shown))
        if len(err.problems) > len(shown):
            print(f"... and {len(err.problems) - len(shown)} more")
        raise typer.Exit(1)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    print_summary(summary)


if __name__ == "__main__":
    app()
