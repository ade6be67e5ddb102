"""Batch annotation: run a trained pipeline over a corpus and write each document's entities.

``annotate(model, inputs, output)`` (and ``python -m spacy_crf_ner annotate``) reads JSONL, Parquet
or plain-text files (one document per line), a directory or a glob of them, and writes shards of
``{id, entities: [{start_char, end_char, label, score}], error}`` rows to the ``output``
directory, as Parquet (default) or JSONL, optionally with one spaCy ``DocBin`` per shard.

Two engines share the reading, the annotation and the shard writing:

- ``local``: spaCy's ``nlp.pipe`` in this process (``n_process`` > 1: spaCy's worker processes);
- ``ray``: Ray Data. A ``FileBasedDatasource`` reads the files in parallel tasks, ``map_batches``
  sends the records through a pool of actors that each load the pipeline once from ``model``
  (a path or a package name, never a pickled ``nlp``), and a ``Datasink`` writes the shards.
  With no ``address``, a local Ray starts and stops with the run.

Guarantees, checked at the end of every run: the output holds each input id exactly once. A
shard is written to a temporary file and renamed, so a shard file that exists is complete; its
name is a hash of its ids, so a write that Ray retries after a killed worker replaces the same
file instead of adding a second one. ``resume`` reads the ids of the finished shards and only
annotates the rest. A bad record (no text, a text that is not a string, empty, longer than
``max_chars``, invalid UTF-8 or JSON) gets its ``error`` and the run goes on; an input file that
cannot be read is an error before any work starts.

Scores are the probabilities ``crf_ner`` stores in its span group; a pipeline with another NER
component (spaCy's ``ner``) gets the same rows with ``score`` null.
"""
import dataclasses
import glob
import hashlib
import json
import os
import time
import uuid
from collections import deque
from enum import Enum
from pathlib import Path
from typing import IO, Any, Callable, Container, Deque, Dict, Iterable, Iterator, List, Optional, Tuple

import pyarrow
import pyarrow.parquet
import spacy
import typer
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from tqdm import tqdm

from .pipeline_component import CRFEntityRecognizer

# spaCy's default ``nlp.max_length``: above it spaCy refuses a text unless told otherwise, because
# the parser's and NER's memory grows with the text; a longer "document" is almost always a
# mis-split file, so it becomes a bad record rather than a crash.
MAX_TEXT_CHARS = 1_000_000
DEFAULT_BATCH_SIZE = 256
DEFAULT_SHARD_SIZE = 10_000
# Rows per block that the Ray reader yields: small enough that the actors get work early.
READ_BLOCK_ROWS = 1_000
# CPUs that the embedded Ray keeps beside the actors: one for a read task and one for a write
# task. With none left, Ray Data's actors hold every CPU and the reads wait forever (seen with 2
# actors of 1 CPU on ``ray.init(num_cpus=2)``).
RAY_IO_CPUS = 2

INPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "text", ".parquet": "parquet"}
ENTITY_TYPE = pyarrow.struct(
    [("start_char", pyarrow.int64()), ("end_char", pyarrow.int64()), ("label", pyarrow.string()), ("score", pyarrow.float64())]
)
OUTPUT_SCHEMA = pyarrow.schema([("id", pyarrow.string()), ("entities", pyarrow.list_(ENTITY_TYPE)), ("error", pyarrow.string())])
# What travels between the steps: the records read (text or error) and the rows annotated (the
# output plus the word count for the summary and, with ``docbin``, the serialized doc).
RECORD_SCHEMA = pyarrow.schema([("id", pyarrow.string()), ("text", pyarrow.string()), ("error", pyarrow.string())])
ROW_SCHEMA = OUTPUT_SCHEMA.append(pyarrow.field("words", pyarrow.int64())).append(pyarrow.field("doc", pyarrow.binary()))
RUN_FILE = "_run.json"


class AnnotateError(Exception):
    """A problem with the command's input or output found before (or instead of) annotating."""


class Engine(str, Enum):
    local = "local"
    ray = "ray"


class OutputFormat(str, Enum):
    parquet = "parquet"
    jsonl = "jsonl"


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One input file; ``id_prefix`` goes before the line number of a record that has no id."""

    path: Path
    format: str
    id_prefix: str


@dataclasses.dataclass(frozen=True)
class RecordFields:
    text: str = "text"
    id: str = "id"
    max_chars: int = MAX_TEXT_CHARS


@dataclasses.dataclass
class Summary:
    docs_in: int  # records in the input
    docs_out: int  # rows in the output, this run's and earlier runs'
    docs_before: int  # rows that an earlier run had written (``resume``)
    docs_annotated: int  # rows written by this run
    errors: int  # rows of the output with an error
    words: int  # tokens annotated by this run
    seconds: float  # this run's wall time

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (
            f"docs in {self.docs_in:,}, docs out {self.docs_out:,} ({self.docs_before:,} from an earlier run, "
            f"{self.docs_annotated:,} now), errors {self.errors:,}, {self.words:,} words in {self.seconds:.1f} s "
            f"({self.words_per_second:,.0f} words/s)"
        )


# -- reading ------------------------------------------------------------------------------------


def input_files(spec: str) -> List[InputFile]:
    """The files that ``spec`` (a file, a directory, or a glob) names; in a directory, those with
    a known extension. Raises AnnotateError for no files, or naming a file of an unknown format
    (``count_records`` then finds the unreadable ones)."""
    root = Path(spec)
    if root.is_dir():
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in INPUT_FORMATS)
        where = f"directory {spec}"
    elif glob.has_magic(spec):
        paths = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        root, where = Path(_glob_root(spec)), f"glob {spec}"
    else:
        paths, where = [root], None
    if not paths:
        raise AnnotateError(f"no input files ({', '.join(INPUT_FORMATS)}) in {where}")
    files = []
    for path in paths:
        if path.suffix not in INPUT_FORMATS:
            raise AnnotateError(f"{path}: unknown input format {path.suffix!r}; expected one of {', '.join(INPUT_FORMATS)}")
        prefix = "" if where is None else f"{path.relative_to(root)}:"
        files.append(InputFile(path.resolve(), INPUT_FORMATS[path.suffix], prefix))
    return files


def _glob_root(pattern: str) -> str:
    """The directory part of a glob before its first wildcard."""
    parts = Path(pattern).parts
    fixed = parts[: next(i for i, part in enumerate(parts) if glob.has_magic(part))]
    return str(Path(*fixed)) if fixed else "."


def count_records(file: InputFile, fields: RecordFields) -> int:
    """The number of records in ``file`` (its lines, or its Parquet rows). Reading it all here is
    what proves the file readable before any work starts; an error names the file."""
    try:
        if file.format == "parquet":
            parquet = pyarrow.parquet.ParquetFile(file.path)
            if fields.text not in parquet.schema_arrow.names:
                raise AnnotateError(f"{file.path}: no column {fields.text!r} (columns: {', '.join(parquet.schema_arrow.names)})")
            return parquet.metadata.num_rows
        lines, last = 0, b"\n"
        with open(file.path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                lines, last = lines + chunk.count(b"\n"), chunk[-1:]
        return lines + (last != b"\n")
    except OSError as error:
        raise AnnotateError(f"cannot read input file {file.path}: {error}") from error
    except pyarrow.ArrowException as error:
        raise AnnotateError(f"{file.path} is not a readable Parquet file: {error}") from error


def read_records(file: InputFile, stream: IO[bytes], fields: RecordFields, done: Container[str] = ()) -> Iterator[Dict[str, Any]]:
    """The records of ``file`` read from the binary ``stream``: ``{id, text, error}``, with
    either ``text`` or ``error`` set; records whose id is in ``done`` are skipped."""
    if file.format == "parquet":
        lines = _parquet_rows(pyarrow.parquet.ParquetFile(stream), fields)
    else:
        lines = _lines(stream, file.format, fields)
    for number, record_id, text, error in lines:
        record_id = f"{file.id_prefix}{number}" if record_id is None else str(record_id)
        if record_id in done:
            continue
        if error is None:
            error = _text_error(text, fields)
        yield {"id": record_id, "text": None if error else text, "error": error}


def _lines(stream: IO[bytes], format: str, fields: RecordFields) -> Iterator[Tuple[int, Any, Any, Optional[str]]]:
    """``(line number, id or None, text, error)`` per line of a JSONL or text file."""
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            yield number, None, None, f"line {number}: invalid UTF-8 ({error.reason} at byte {error.start})"
            continue
        if format == "text":
            yield number, None, line, None
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, None, None, f"line {number}: invalid JSON ({error.msg} at column {error.colno})"
            continue
        if not isinstance(record, dict):
            yield number, None, None, f"line {number}: a JSON {type(record).__name__}, not an object"
        elif fields.text not in record:
            yield number, record.get(fields.id), None, f"line {number}: no {fields.text!r} field"
        else:
            yield number, record.get(fields.id), record[fields.text], None


def _parquet_rows(parquet: pyarrow.parquet.ParquetFile, fields: RecordFields) -> Iterator[Tuple[int, Any, Any, Optional[str]]]:
    """``(row number from 1, id or None, text, None)`` per row of a Parquet file."""
    columns = [name for name in (fields.id, fields.text) if name in parquet.schema_arrow.names]
    number = 0
    for batch in parquet.iter_batches(columns=columns):
        ids = batch.column(fields.id).to_pylist() if fields.id in columns else [None] * batch.num_rows
        for record_id, text in zip(ids, batch.column(fields.text).to_pylist()):
            number += 1
            yield number, record_id, text, None


def _text_error(text: Any, fields: RecordFields) -> Optional[str]:
    if not isinstance(text, str):
        return f"{fields.text!r} is {type(text).__name__}, not a string"
    if not text.strip():
        return "empty text"
    if len(text) > fields.max_chars:
        return f"text of {len(text):,} characters, over the limit of {fields.max_chars:,} (max_chars)"
    return None


# -- annotating ---------------------------------------------------------------------------------


def load_pipeline(model: str, n_threads: Optional[int] = None) -> Language:
    """``spacy.load(model)``, with torch's threads set first if ``n_threads`` is given."""
    if n_threads is not None:
        import torch

        torch.set_num_threads(n_threads)
    return spacy.load(model)


def confidences_key(nlp: Language) -> Optional[str]:
    """The ``doc.spans`` key where a ``crf_ner`` component stores entity probabilities, if any."""
    for _, pipe in nlp.pipeline:
        if isinstance(pipe, CRFEntityRecognizer) and pipe.cfg["confidences"]:
            return pipe.spans_key
    return None


def doc_entities(doc: Doc, spans_key: Optional[str]) -> List[Dict[str, Any]]:
    """``doc.ents`` as ``{start_char, end_char, label, score}`` dicts; ``score`` is the
    probability from the span group under ``spans_key`` (None without one)."""
    scores = {}
    if spans_key is not None and spans_key in doc.spans:
        group = doc.spans[spans_key]
        scores = {(s.start_char, s.end_char, s.label_): p for s, p in zip(group, group.attrs["scores"])}
    return [
        {"start_char": ent.start_char, "end_char": ent.end_char, "label": ent.label_,
         "score": scores.get((ent.start_char, ent.end_char, ent.label_))}
        for ent in doc.ents
    ]


def annotate_records(
    nlp: Language, records: Iterable[Dict[str, Any]], batch_size: int, n_process: int = 1, docbin: bool = False
) -> Iterator[Dict[str, Any]]:
    """One output row per record, in no fixed order: records with an error pass through, the
    others go through ``nlp.pipe``. When a component raises, ``nlp.pipe`` stops and the records
    it had taken are annotated one by one (the one that fails again gets the exception as its
    error); then ``nlp.pipe`` restarts on the rest."""
    spans_key = confidences_key(nlp)
    failed: List[Dict[str, Any]] = []
    sent: Deque[Dict[str, Any]] = deque()  # records nlp.pipe has taken, in order, not yet out
    reading: List[Exception] = []

    def texts() -> Iterator[str]:
        try:
            for record in records:
                if record["error"] is None:
                    sent.append(record)
                    yield record["text"]
                else:
                    failed.append(record)
        except Exception as error:  # the input's failure, not a document's: it stops the run
            reading.append(error)
            raise

    def row(record: Dict[str, Any], doc: Optional[Doc], error: Optional[str] = None) -> Dict[str, Any]:
        out = {"id": record["id"], "entities": [], "error": error or record["error"], "words": 0, "doc": None}
        if doc is not None:
            out.update(entities=doc_entities(doc, spans_key), words=len(doc))
            if docbin:
                doc.user_data["id"] = record["id"]
                out["doc"] = DocBin(docs=[doc], store_user_data=True).to_bytes()
        return out

    def alone(record: Dict[str, Any]) -> Dict[str, Any]:
        try:
            return row(record, nlp(record["text"]))
        except Exception as error:  # a bad document must not stop the corpus: it gets the error
            return row(record, None, f"{type(error).__name__}: {error}")

    stream = texts()
    finished = False
    while not finished:
        try:
            for doc in nlp.pipe(stream, batch_size=batch_size, n_process=n_process):
                yield row(sent.popleft(), doc)
                while failed:
                    yield row(failed.pop(), None)
            finished = True
        except Exception:
            if reading:
                raise
        while sent:
            yield alone(sent.popleft())
        while failed:
            yield row(failed.pop(), None)


# -- writing ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ShardWriter:
    """Writes rows into ``directory`` as one shard, atomically; the shard's name is a hash of its
    ids, so writing the same rows twice gives the same file, never a second one."""

    directory: Path
    format: OutputFormat
    docbin: bool

    @property
    def pattern(self) -> str:
        return f"part-*.{self.format.value}"

    def write(self, rows: pyarrow.Table) -> Dict[str, int]:
        ids = rows.column("id").to_pylist()
        name = "part-" + hashlib.sha1("\n".join(sorted(ids)).encode("utf8")).hexdigest()[:20]
        if self.docbin:
            docs = DocBin(store_user_data=True)
            for data in rows.column("doc").to_pylist():
                if data is not None:
                    docs.merge(DocBin(store_user_data=True).from_bytes(data))
            # The DocBin lands first: a shard counts as done once its data file exists.
            self._atomically(name + ".spacy", lambda path: docs.to_disk(path))
        table = rows.select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA)
        if self.format == OutputFormat.parquet:
            self._atomically(name + ".parquet", lambda path: pyarrow.parquet.write_table(table, path))
        else:
            self._atomically(name + ".jsonl", lambda path: _write_jsonl(table, path))
        return {"docs": rows.num_rows, "words": sum(rows.column("words").to_pylist())}

    def _atomically(self, name: str, write: Callable[[Path], None]) -> None:
        temporary = self.directory / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            write(temporary)
            os.replace(temporary, self.directory / name)
        finally:
            temporary.unlink(missing_ok=True)

    def finished(self) -> Iterator[Tuple[str, Optional[str]]]:
        """``(id, error)`` of every row in the finished shards."""
        for path in sorted(self.directory.glob(self.pattern)):
            if self.format == OutputFormat.parquet:
                table = pyarrow.parquet.read_table(path, columns=["id", "error"])
                yield from zip(table.column("id").to_pylist(), table.column("error").to_pylist())
            else:
                with open(path, encoding="utf8") as stream:
                    for line in stream:
                        row = json.loads(line)
                        yield row["id"], row["error"]

    def remove_unfinished(self) -> None:
        """Delete the temporary files a killed run left behind."""
        for path in self.directory.glob(".part-*.tmp"):
            path.unlink()


def _write_jsonl(table: pyarrow.Table, path: Path) -> None:
    with open(path, "w", encoding="utf8") as stream:
        for row in table.to_pylist():
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")


def rows_table(rows: List[Dict[str, Any]]) -> pyarrow.Table:
    return pyarrow.Table.from_pylist(rows, schema=ROW_SCHEMA)


# -- the run ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """Ray Data's settings: the cluster (None: a local Ray for this run) and the actor pool."""

    address: Optional[str] = None
    actors: int = 2
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0


def annotate(
    model: str,
    inputs: str,
    output: Path,
    *,
    engine: Engine = Engine.local,
    output_format: OutputFormat = OutputFormat.parquet,
    fields: RecordFields = RecordFields(),
    batch_size: int = DEFAULT_BATCH_SIZE,
    shard_size: int = DEFAULT_SHARD_SIZE,
    n_process: int = 1,
    docbin: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    ray_options: RayOptions = RayOptions(),
    progress: bool = True,
) -> Summary:
    """Annotate every record of ``inputs`` with the pipeline ``model`` into shards in ``output``.

    ``resume`` finishes an earlier run of the same model and input into ``output``; ``overwrite``
    deletes an earlier run's shards there first. Raises AnnotateError, before any work, for an
    unreadable input or an output directory that holds another run (without ``resume`` or
    ``overwrite``); after the run, if the output does not hold each input id exactly once.
    """
    start = time.perf_counter()
    files = input_files(inputs)
    docs_in = sum(count_records(file, fields) for file in files)
    output = Path(output)
    writer = ShardWriter(output, OutputFormat(output_format), docbin)
    run = {"model": model, "inputs": [str(f.path) for f in files], "text_field": fields.text, "id_field": fields.id, "format": writer.format.value}
    done = _prepare_output(output, writer, run, resume, overwrite)
    if len(done) < docs_in:
        if Engine(engine) == Engine.ray:
            from .annotate_ray import run_ray  # Ray is an optional extra

            written = run_ray(model, files, fields, done, writer, batch_size, shard_size, ray_options)
        else:
            written = _run_local(model, files, fields, done, writer, batch_size, shard_size, n_process, progress, docs_in)
    else:
        written = {"docs": 0, "words": 0}
    return _check_output(writer, docs_in, len(done), written, time.perf_counter() - start)


def _prepare_output(output: Path, writer: ShardWriter, run: Dict[str, Any], resume: bool, overwrite: bool) -> set:
    """The ids already done (with ``resume``); checks that ``output`` belongs to this run."""
    run_file = output / RUN_FILE
    if run_file.exists() and overwrite:
        for path in output.glob("part-*"):
            path.unlink()
        run_file.unlink()
    if run_file.exists():
        if not resume:
            raise AnnotateError(f"{output} holds the output of an earlier run: pass --resume to finish it, --overwrite to replace it, or choose another directory")
        earlier = json.loads(run_file.read_text(encoding="utf8"))
        for key, value in run.items():
            if earlier.get(key) != value:
                raise AnnotateError(f"--resume: {output} was made with {key} = {earlier.get(key)!r}, this run has {value!r}")
    elif output.exists() and any(output.iterdir()):
        raise AnnotateError(f"{output} is not empty and holds no {RUN_FILE}: choose an empty or new directory")
    output.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(run, indent=2), encoding="utf8")
    writer.remove_unfinished()
    return {record_id for record_id, _ in writer.finished()}


def _run_local(model, files, fields, done, writer, batch_size, shard_size, n_process, progress, docs_in) -> Dict[str, int]:
    nlp = load_pipeline(model)

    def records() -> Iterator[Dict[str, Any]]:
        for file in files:
            with open(file.path, "rb") as stream:
                yield from read_records(file, stream, fields, done)

    written = {"docs": 0, "words": 0}
    rows: List[Dict[str, Any]] = []
    bar = tqdm(total=docs_in - len(done), unit="doc", disable=not progress)
    for row in annotate_records(nlp, records(), batch_size, n_process, writer.docbin):
        rows.append(row)
        if len(rows) == shard_size:
            _add(written, writer.write(rows_table(rows)))
            bar.update(len(rows))
            rows = []
    if rows:
        _add(written, writer.write(rows_table(rows)))
        bar.update(len(rows))
    bar.close()
    return written


def _add(total: Dict[str, int], shard: Dict[str, int]) -> None:
    total["docs"] += shard["docs"]
    total["words"] += shard["words"]


def _check_output(writer: ShardWriter, docs_in: int, docs_before: int, written: Dict[str, int], seconds: float) -> Summary:
    """The run's summary, once the output is checked to hold each input id exactly once."""
    seen, duplicates, errors = set(), [], 0
    for record_id, error in writer.finished():
        if record_id in seen:
            duplicates.append(record_id)
        seen.add(record_id)
        errors += error is not None
    if duplicates:
        raise AnnotateError(
            f"{len(duplicates)} ids occur twice in {writer.directory} (ids must be unique in the input): {duplicates[:5]}"
        )
    if len(seen) != docs_in:
        raise AnnotateError(f"{writer.directory} holds {len(seen):,} documents, the input {docs_in:,}: rerun with --resume")
    return Summary(docs_in, len(seen), docs_before, written["docs"], errors, written["words"], seconds)


def annotate_command(
    model: str = typer.Argument(..., help="A pipeline directory or an installed pipeline package"),
    inputs: str = typer.Argument(..., help="A .jsonl, .parquet or .txt file (one doc per line), a directory or a glob of them"),
    output: Path = typer.Argument(..., help="The output directory (shards part-*.parquet or part-*.jsonl)"),
    engine: Engine = typer.Option(Engine.local, help="local: nlp.pipe here; ray: a Ray Data actor pool"),
    output_format: OutputFormat = typer.Option(OutputFormat.parquet, "--format", help="Format of the output shards"),
    text_field: str = typer.Option("text", help="JSONL field / Parquet column holding the text"),
    id_field: str = typer.Option("id", help="JSONL field / Parquet column holding the id (missing: the line number)"),
    max_chars: int = typer.Option(MAX_TEXT_CHARS, help="Longer texts become bad records"),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, help="Docs per nlp.pipe batch (and per actor call)"),
    shard_size: int = typer.Option(DEFAULT_SHARD_SIZE, help="Docs per output shard (at least, on Ray)"),
    n_process: int = typer.Option(1, help="local: spaCy worker processes"),
    docbin: bool = typer.Option(False, help="Also write each shard's docs as a spaCy DocBin (part-*.spacy)"),
    resume: bool = typer.Option(False, help="Finish an interrupted run into the same OUTPUT"),
    overwrite: bool = typer.Option(False, help="Delete the shards of an earlier run in OUTPUT first"),
    address: Optional[str] = typer.Option(None, help="ray: the cluster to join (default: a local Ray for this run)"),
    actors: int = typer.Option(2, help="ray: actors in the pool, each with its own copy of the pipeline"),
    cpus_per_actor: float = typer.Option(1.0, help="ray: CPUs per actor (also torch's threads)"),
    gpus_per_actor: float = typer.Option(0.0, help="ray: GPUs per actor"),
) -> None:
    """Annotate a corpus with a trained pipeline: entities with their probabilities, per document."""
    try:
        summary = annotate(
            model, inputs, output, engine=engine, output_format=output_format,
            fields=RecordFields(text_field, id_field, max_chars), batch_size=batch_size, shard_size=shard_size,
            n_process=n_process, docbin=docbin, resume=resume, overwrite=overwrite,
            ray_options=RayOptions(address, actors, cpus_per_actor, gpus_per_actor),
        )
    except AnnotateError as error:
        typer.echo(f"annotate: {error}", err=True)
        raise typer.Exit(1)
    typer.echo(str(summary))
