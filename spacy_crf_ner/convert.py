"""Convert one CoNLL-style NER file into a spaCy DocBin (.spacy).

    python -m spacy_crf_ner convert INPUT OUTPUT.spacy [--n-sents 10] [--format auto|conll|iob]
        [--lang zh] [--invalid-moves error|split]

(`python scripts/convert.py ...` is the same command, as the spaCy project runs it.)

Accepted input: token-per-line files whose first column is the token and whose last column is the
NER tag (CoNLL-2003's four columns, two columns `token<TAB>tag`, or a character per line as in
Chinese corpora), blank lines between sentences, optional `-DOCSTART-` document breaks; or spaCy's
sentence-per-line `.iob` format (`tok|tag` or `tok|POS|tag`). Tags may be IOB1, IOB2, BILUO, BIOES
or BMES (`M-` for a middle token).

The tag logic is spaCy's own (`conll_ner_to_docs`, `iob_to_docs`). What this module adds is what
those converters lack: it validates every line first and reports all the broken ones with file and
line number (spaCy's converters either raise one context-free error or, worse, quietly produce
wrong entities: `U-PER I-PER` becomes one entity), normalises the input variants they mishandle,
and checks that no sentence, token or tag went missing on the way. Invalid moves in a BILUO, BIOES
or BMES file are errors, or, with `invalid_moves="split"`, split into separate entities and listed
with file and line. With `lang="zh"` the documents are Chinese text without spaces, tokenized
exactly as `spacy.blank("zh")` tokenizes it. The output path is explicit, unlike `spacy convert`,
which names outputs after the input stem (so `eng.train` and `eng.testa` would both become
`eng.spacy`).
"""
import re
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import spacy
import typer
from spacy.tokens import Doc, DocBin, Span
from spacy.training.converters import conll_ner_to_docs, iob_to_docs
from wasabi import msg

# The only spelling conll_ner_to_docs recognises; any other (e.g. the common re-export
# `-DOCSTART- -X- -X- O`) would silently become a token called "-DOCSTART-".
DOC_DELIMITER = "-DOCSTART- -X- O O"
TAG_RE = re.compile(r"^(O|[BILUESM]-\S+)$")
# spaCy's iob_to_biluo only knows B/I/L/U, so BIOES (S = single, E = end) and BMES (M = middle)
# are spelled in BILUO first: left as they are, BIOES `B-X E-X` would become two one-token
# entities.
TO_BILUO = {"S": "U", "E": "L", "M": "I"}
# One tag with these prefixes makes the file BILUO, BIOES or BMES: schemes that close every
# entity explicitly. There `U-X I-X` is an error in the data, not IOB1's way of continuing an
# entity, and spaCy's iob_to_biluo would silently merge it into one entity.
CLOSING_PREFIXES = set("LUESM")
# What to do with an invalid move in such a file: fail, or end the entity before the move and
# begin a new one at it, so that no entity-tagged token becomes O and none is merged across.
INVALID_MOVE_POLICIES = ("error", "split")
# Languages written without spaces between words: a sentence's text is its tokens joined with
# nothing between them, and spacy.blank(lang) must tokenize that text back into the same tokens
# (Chinese: its default `char` segmenter, one token per character).
SPACELESS_LANGS = ("zh",)
# Zero-width no-break space (a stray BOM). It is not whitespace to str.split(), so it would glue
# itself to tokens, or make a line that looks empty hold one column.
ZWNBSP = "\ufeff"
# A file whose only "entities" are these is a chunking file (e.g. CoNLL-2003 without its NER
# column), whose B-NP/I-VP tags would otherwise pass for entities.
CHUNK_LABELS = {"NP", "VP", "PP", "ADVP", "ADJP", "SBAR", "PRT", "CONJP", "INTJ", "LST", "UCP"}
MAX_SHOWN_ERRORS = 25
FORMATS = ("auto", "conll", "iob")

# One token as read: where it is ("file:line", plus the item for .iob) and its fields, the token
# first and the tag last. A file is a list of sentences, with None for a -DOCSTART- break.
Token = Tuple[str, List[str]]
Sentence = List[Token]


class ConversionError(ValueError):
    def __init__(self, path: Path, problems: List[str]):
        self.path = path
        self.problems = problems
        shown = problems[:MAX_SHOWN_ERRORS]
        more = len(problems) - len(shown)
        text = "\n".join(shown) + (f"\n... and {more} more" if more > 0 else "")
        super().__init__(f"{path}: {len(problems)} problem(s) found, nothing converted:\n{text}")


def _read_lines(path: Path) -> List[str]:
    """The file's lines without their line ends; ConversionError naming each non-UTF-8 line."""
    # Split the bytes at b"\n" (never part of a multi-byte UTF-8 character), not the text with
    # splitlines(): the latter also breaks on U+2028, U+0085 and friends, which may occur inside
    # tokens and would shift every line number after them.
    lines, problems = [], []
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as err:
            problems.append(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[err.start]:02x} at byte "
                            f"{err.start + 1} of the line)")
    if problems:
        raise ConversionError(path, problems)
    return lines


def _is_docstart(first_field: str) -> bool:
    return first_field.startswith("-DOCSTART-")


def _normalise_tag(tag: str) -> str:
    return TO_BILUO.get(tag[0], tag[0]) + tag[1:] if tag != "O" else tag


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


def _read_conll(path: Path, lines: List[str], warnings: List[str], problems: List[str]):
    """Token-per-line file -> sentences (None for a -DOCSTART- break)."""
    blocks: List[Optional[Sentence]] = []
    sentence: Sentence = []
    for lineno, raw in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        fields = [f.replace(ZWNBSP, "") for f in raw.split()]
        if not fields or _is_docstart(fields[0]):
            if sentence:
                blocks.append(sentence)
                sentence = []
            if fields:
                blocks.append(None)
            continue
        if fields == [""]:
            # Found in real data (WNUT17 dev ends with a line holding only U+FEFF): nothing is
            # lost by dropping it, so warn instead of failing the whole file.
            warnings.append(f"{where}: token is nothing but U+FEFF (zero-width no-break space); "
                            "line ignored")
            continue
        if not fields[0]:
            problems.append(f"{where}: the token is nothing but U+FEFF (zero-width no-break space)")
        elif len(fields) == 1:
            problems.append(f"{where}: only one column ({fields[0]!r}); expected a token and a tag")
        else:
            sentence.append((where, fields))
    if sentence:
        blocks.append(sentence)
    return blocks


def _read_iob(path: Path, lines: List[str], warnings: List[str], problems: List[str]):
    """Sentence-per-line file of `tok|tag` or `tok|POS|tag` items -> sentences (None: break)."""
    blocks: List[Optional[Sentence]] = []
    for lineno, raw in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        items = [item for item in raw.split() if item.replace(ZWNBSP, "")]
        if not items:
            if raw.strip():
                warnings.append(f"{where}: line holds nothing but U+FEFF; ignored")
            continue
        if _is_docstart(items[0].replace(ZWNBSP, "")):
            blocks.append(None)
            continue
        sentence: Sentence = []
        for i, item in enumerate(items, 1):
            parts = item.replace(ZWNBSP, "").split("|")
            if len(parts) not in (2, 3):
                # iob_to_docs only inspects the first item and zips the rest, so a stray `|` in a
                # token would shift its columns unnoticed.
                problems.append(f"{where}: item {i} ({item!r}) has {len(parts)} |-separated parts, "
                                "expected 2 (tok|tag) or 3 (tok|POS|tag)")
            elif not parts[0]:
                # Would reach spaCy as an empty word: "[E031] Invalid token", with no location.
                what = "nothing but U+FEFF" if ZWNBSP in item.split("|")[0] else "empty"
                problems.append(f"{where}: item {i} ({item!r}): the token is {what}")
            else:
                sentence.append((f"{where} (item {i})", parts))
        if sentence:
            blocks.append(sentence)
    return blocks


def _check_widths(tokens: List[Token], unit: str, problems: List[str]) -> None:
    """Report every token whose number of fields is not the file's most common one (the first
    line is no more trusted than any other)."""
    widths = Counter(len(fields) for _, fields in tokens)
    if len(widths) < 2:
        return
    usual, n_usual = widths.most_common(1)[0]
    first = next(where for where, fields in tokens if len(fields) == usual)
    for where, fields in tokens:
        if len(fields) != usual:
            # conll_ner_to_docs transposes lines with zip(), which truncates to the shortest
            # line: the tag column of the whole sentence would silently become another column.
            problems.append(f"{where}: {len(fields)} {unit}, but {n_usual} of the {len(tokens)} "
                            f"tokens have {usual} (the first at {first})")


def _close(tag: str) -> str:
    """The BILUO tag that ends the entity at this B-/I- token here."""
    return ("U-" if tag[0] == "B" else "L-") + tag[2:]


def _split_invalid_moves(tags: List[str]) -> Tuple[List[str], List[int]]:
    """Valid BILUO for one sentence's BILUO tags, and the invalid moves found.

    An entity left open (B-/I- not followed by I-/L- of its label) is closed where the next tag
    begins; a continuation (I-/L-) with no open entity of its label begins a new one. Each move
    is given as the index of the token it leads to, len(tags) for a sentence that ends open.
    """
    out: List[str] = []
    moves: List[int] = []
    open_label: Optional[str] = None
    for i, tag in enumerate(tags):
        prefix, label = tag[0], tag[2:]
        continues = prefix in "IL" and open_label == label
        if not continues and (open_label is not None or prefix in "IL"):
            moves.append(i)
            if open_label is not None:
                out[-1] = _close(out[-1])
            if prefix in "IL":
                tag = ("B-" if prefix == "I" else "U-") + label
        out.append(tag)
        open_label = label if tag[0] in "BI" else None
    if open_label is not None:
        moves.append(len(tags))
        out[-1] = _close(out[-1])
    return out, moves


def _to_biluo(path: Path, sentences: List[Sentence], invalid_moves: str, problems: List[str],
              repaired: List[str]) -> None:
    """Spell every tag in BILUO, in place. In a BILUO/BIOES/BMES file, every invalid move is an
    error (invalid_moves="error") or split and listed in `repaired` ("split")."""
    strict = next(((where, fields[-1]) for sentence in sentences for where, fields in sentence
                   if fields[-1][0] in CLOSING_PREFIXES), None)
    found: List[str] = []
    for sentence in sentences:
        original = [fields[-1] for _, fields in sentence]
        tags = [_normalise_tag(tag) for tag in original]
        if strict:
            tags, moves = _split_invalid_moves(tags)
            for i in moves:
                if i == len(sentence):
                    found.append(f"{sentence[-1][0]}: {original[-1]!r} ends the sentence inside "
                                 "an entity")
                else:
                    before = repr(original[i - 1]) if i else "the sentence start"
                    found.append(f"{sentence[i][0]}: invalid move {before} -> {original[i]!r}")
        for (_, fields), tag in zip(sentence, tags):
            fields[-1] = tag
    if not found:
        return
    if invalid_moves == "split":
        repaired.extend(found)
        return
    problems.append(f"{path}: {len(found)} invalid tag move(s) for BILUO/BIOES/BMES (the scheme "
                    f"{strict[1]!r} at {strict[0]} implies); --invalid-moves split ends the "
                    "entity before each and begins a new one at it")
    problems.extend(found)


def _check_spaceless(lang: str, sentences: List[Sentence], problems: List[str]) -> None:
    """Report every token that spacy.blank(lang) would not keep as one token of the joined text."""
    nlp = spacy.blank(lang)
    pieces_of: Dict[str, List[str]] = {}  # a corpus has a few thousand distinct characters
    for sentence in sentences:
        for where, fields in sentence:
            if fields[0] not in pieces_of:
                pieces_of[fields[0]] = [t.text for t in nlp.make_doc(fields[0])]
            pieces = pieces_of[fields[0]]
            if pieces != [fields[0]]:
                problems.append(f"{where}: token {fields[0]!r} becomes {pieces} in "
                                f"spacy.blank({lang!r}): a {lang} file needs one token per "
                                "line as that tokenizer makes it (e.g. one character)")


def _join_without_spaces(docs: List[Doc], lang: str, path: Path) -> List[Doc]:
    """The docs as spacy.blank(lang) makes them from their tokens joined with no space."""
    nlp = spacy.blank(lang)
    joined = []
    for doc in docs:
        rebuilt = nlp.make_doc("".join(token.text for token in doc))
        if [t.text for t in rebuilt] != [t.text for t in doc]:
            raise ConversionError(path, [f"{path}: spacy.blank({lang!r}) tokenizes the joined "
                                         f"text {rebuilt.text[:50]!r}... differently"])
        for source, token in zip(doc, rebuilt):
            token.is_sent_start = source.is_sent_start
            token.tag_ = source.tag_
        rebuilt.ents = [Span(rebuilt, ent.start, ent.end, label=ent.label_) for ent in doc.ents]
        joined.append(rebuilt)
    return joined


def _render_conll(blocks: List[Optional[Sentence]]) -> str:
    lines: List[str] = []
    for block in blocks:
        lines.extend([DOC_DELIMITER, ""] if block is None else
                     [" ".join(fields) for _, fields in block] + [""])
    return "\n".join(lines).strip("\n") + "\n"


def _render_iob(blocks: List[Optional[Sentence]]) -> List[List[str]]:
    """Each document's sentence lines."""
    docs: List[List[str]] = [[]]
    for block in blocks:
        if block is None:
            docs.append([])
        else:
            docs[-1].append(" ".join("|".join(fields) for _, fields in block))
    return [doc for doc in docs if doc]

def convert_file(
    input_path, output_path, n_sents: int = 10, fmt: str = "auto", allow_no_entities: bool = False,
    lang: Optional[str] = None, invalid_moves: str = "error",
) -> Dict:
    """Convert INPUT to a DocBin at OUTPUT and return a summary of what was written.

    n_sents: sentences per document, as in `spacy convert -n`; 0 puts the whole file in one
    document. Like spaCy, it is ignored when the file has its own `-DOCSTART-` breaks.
    lang: None for text with spaces between tokens, or a language of SPACELESS_LANGS ("zh"):
    then a document's text is its tokens with nothing between them, tokenized by spacy.blank(lang).
    invalid_moves: "error" or "split" (see INVALID_MOVE_POLICIES), for BILUO/BIOES/BMES files.
    Raises ConversionError, listing every problem found, if any line is malformed, if the file
    has no entity at all (unless allow_no_entities), or if a sentence got lost on the way.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    if lang is not None and lang not in SPACELESS_LANGS:
        raise ValueError(f"lang must be None (words separated by spaces) or one of "
                         f"{SPACELESS_LANGS}, not {lang!r}")
    if invalid_moves not in INVALID_MOVE_POLICIES:
        raise ValueError(f"invalid_moves must be one of {INVALID_MOVE_POLICIES}, not "
                         f"{invalid_moves!r}")
    if input_path.resolve() == output_path.resolve():
        raise ValueError(f"{output_path}: refusing to overwrite the input file")
    lines = _read_lines(input_path)
    fmt = _detect_format(lines) if fmt == "auto" else fmt
    warnings: List[str] = []
    repaired: List[str] = []
    problems: List[str] = []
    read = _read_conll if fmt == "conll" else _read_iob
    blocks = read(input_path, lines, warnings, problems)
    sentences = [block for block in blocks if block is not None]
    tokens = [token for sentence in sentences for token in sentence]
    _check_widths(tokens, "columns" if fmt == "conll" else "|-separated parts", problems)
    bad_tags = [(where, fields[-1]) for where, fields in tokens if not TAG_RE.match(fields[-1])]
    if len(bad_tags) > len(tokens) - len(bad_tags):
        problems.insert(0, f"{input_path}: the last column does not look like NER tags (most "
                           "values are not O or B-/I-/...-<LABEL>): is this a POS/chunk-only file?")
    problems.extend(f"{where}: tag {tag!r} is not O or B-/I-/L-/U-/E-/S-/M-<LABEL>"
                    for where, tag in bad_tags)
    if lang is not None:
        _check_spaceless(lang, sentences, problems)
    if not problems:
        _to_biluo(input_path, sentences, invalid_moves, problems, repaired)
    labels = {fields[-1][2:] for _, fields in tokens} - {""}  # the "" of O
    expected = (len(sentences), len(tokens), sum(fields[-1] != "O" for _, fields in tokens))
    if not sentences and not problems:
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
        docs = list(conll_ner_to_docs(_render_conll(blocks), n_sents=n_sents, no_print=True))
    else:
        # iob_to_docs knows no document breaks, so honour -DOCSTART- by converting each
        # document on its own; blank lines are already gone, since minibatch() would count
        # them as sentences and make uneven (even empty) documents.
        docs = [
            doc
            for lines_ in _render_iob(blocks)
            for doc in iob_to_docs("\n".join(lines_), n_sents=n_sents or len(lines_), no_print=True)
        ]
    if lang is not None:
        docs = _join_without_spaces(docs, lang, input_path)

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
        "lang": lang,
        "documents": len(docs),
        "document_breaks": _describe_breaks(fmt, any(block is None for block in blocks), n_sents),
        "sentences": found[0],
        "tokens": found[1],
        "entities": dict(sorted(label_counts.items())),
        "warnings": warnings,
        "invalid_moves": invalid_moves,
        "repaired": repaired,
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
    if summary["repaired"]:
        msg.warn(f"{len(summary['repaired'])} invalid tag move(s) split (--invalid-moves split: "
                 "the entity before each move ends there, a new one begins at it):")
        shown = summary["repaired"][:MAX_SHOWN_ERRORS]
        print("\n".join(shown))
        if len(summary["repaired"]) > len(shown):
            print(f"... and {len(summary['repaired']) - len(shown)} more")
    msg.good(
        f"{summary['input']} -> {summary['output']} ({summary['format']}): "
        f"{summary['documents']} documents ({summary['document_breaks']}), "
        f"{summary['sentences']} sentences, {summary['tokens']} tokens"
    )
    rows = list(summary["entities"].items()) + [("total", sum(summary["entities"].values()))]
    msg.table(rows, header=("label", "entities"), divider=True, aligns=("l", "r"))


def convert_cli(
    input_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="CoNLL-style file"),
    output_path: Path = typer.Argument(..., dir_okay=False, help="Output .spacy file"),
    n_sents: int = typer.Option(
        10, "--n-sents", "-n",
        help="Sentences per document (0: one doc); ignored where the file has -DOCSTART- breaks",
    ),
    fmt: str = typer.Option("auto", "--format", "-f", help="auto, conll (token per line) or iob"),
    allow_no_entities: bool = typer.Option(False, "--allow-no-entities", help="Accept all-O files"),
    lang: Optional[str] = typer.Option(
        None, "--lang", help="zh: tokens joined without spaces, as spacy.blank('zh') splits them",
    ),
    invalid_moves: str = typer.Option(
        "error", "--invalid-moves",
        help="BILUO/BIOES/BMES moves like U-X I-X: error, or split them into separate entities",
    ),
) -> None:
    """Convert one CoNLL-style NER file to a spaCy DocBin, validating every line first."""
    try:
        summary = convert_file(input_path, output_path, n_sents, fmt, allow_no_entities, lang,
                               invalid_moves)
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
