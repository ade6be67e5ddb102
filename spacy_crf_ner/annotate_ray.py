"""The Ray Data engine of ``annotate``: read tasks, an actor pool running the pipeline, a shard sink.

Kept apart from ``annotate`` so that Ray stays an optional extra (``spacy-crf-ner[ray]``). Each
step is Ray Data's own: a ``FileBasedDatasource`` (Ray's file listing, parallel read tasks and
filesystems, with ``annotate``'s line-by-line reader so that a bad line is one bad record, not a
failed file as with ``read_json`` / ``read_text``), ``map_batches`` with an actor class and
``concurrency`` (Ray restarts a killed actor and retries its batch), and a ``Datasink`` whose
write tasks each write one shard atomically.
"""
import io
import math
from typing import Any, Dict, Iterable, Iterator, List, Set

import pyarrow
import ray
import spacy
from ray.data import Datasink
from ray.data.block import Block
from ray.data.datasource import FileBasedDatasource

from .annotate import (
    RAY_IO_CPUS, READ_BLOCK_ROWS, RECORD_SCHEMA, AnnotateError, InputFile, RayOptions, RecordFields, ShardWriter,
    annotate_records, load_pipeline, read_records, rows_table,
)


def run_ray(
    model: str, files: List[InputFile], fields: RecordFields, done: Set[str], writer: ShardWriter,
    batch_size: int, shard_size: int, options: RayOptions,
) -> Dict[str, int]:
    """Annotate the records of ``files`` not in ``done`` into ``writer``'s shards on Ray Data; the
    docs and words written. Joins ``options.address``, or the Ray this process already runs, or
    starts a local Ray for the run with CPUs for the actors plus ``RAY_IO_CPUS``."""
    started_here = not ray.is_initialized()
    if started_here and options.address is None:
        ray.init(
            num_cpus=math.ceil(options.actors * options.cpus_per_actor) + RAY_IO_CPUS,
            num_gpus=math.ceil(options.actors * options.gpus_per_actor),
            include_dashboard=False,
        )
    elif started_here:
        ray.init(address=options.address)
    try:
        check_resources(ray.cluster_resources(), options)
        dataset = ray.data.read_datasource(RecordSource(files, fields, done))
        dataset = dataset.map_batches(
            RayAnnotator,
            fn_constructor_kwargs={
                "model": model, "batch_size": batch_size, "docbin": writer.docbin,
                "n_threads": max(1, int(options.cpus_per_actor)), "gpu": options.gpus_per_actor > 0,
            },
            concurrency=options.actors,
            num_cpus=options.cpus_per_actor,
            num_gpus=options.gpus_per_actor,
            batch_size=batch_size,
            batch_format="pyarrow",
        )
        sink = ShardSink(writer, shard_size)
        dataset.write_datasink(sink)
        return sink.written
    finally:
        if started_here:
            ray.shutdown()


def check_resources(resources: Dict[str, float], options: RayOptions) -> None:
    """Refuse an actor pool that leaves fewer than ``RAY_IO_CPUS`` CPUs for the read and write
    tasks, or asks for GPUs the cluster lacks: Ray Data would wait forever instead of failing."""
    cpus = options.actors * options.cpus_per_actor + RAY_IO_CPUS
    if resources.get("CPU", 0) < cpus:
        raise AnnotateError(
            f"{options.actors} actors of {options.cpus_per_actor} CPUs, plus {RAY_IO_CPUS} for reading and writing, "
            f"need {cpus} CPUs; the Ray cluster has {resources.get('CPU', 0)}: use fewer actors or CPUs per actor"
        )
    gpus = options.actors * options.gpus_per_actor
    if resources.get("GPU", 0) < gpus:
        raise AnnotateError(f"{options.actors} actors of {options.gpus_per_actor} GPUs need {gpus} GPUs; the Ray cluster has {resources.get('GPU', 0)}")


class RecordSource(FileBasedDatasource):
    """The input files as blocks of ``RECORD_SCHEMA`` records (``annotate.read_records``)."""

    def __init__(self, files: List[InputFile], fields: RecordFields, done: Set[str]):
        super().__init__([str(file.path) for file in files])
        self._files = {str(file.path): file for file in files}
        self._fields = fields
        self._done = done

    def _read_stream(self, f: "pyarrow.NativeFile", path: str) -> Iterator[Block]:
        file = self._files[path]
        # Parquet needs random access, which Ray's input streams lack: read the file into memory.
        stream = pyarrow.BufferReader(f.read_buffer()) if file.format == "parquet" else io.BufferedReader(f)
        block: List[Dict[str, Any]] = []
        for record in read_records(file, stream, self._fields, self._done):
            block.append(record)
            if len(block) == READ_BLOCK_ROWS:
                yield pyarrow.Table.from_pylist(block, schema=RECORD_SCHEMA)
                block = []
        if block:
            yield pyarrow.Table.from_pylist(block, schema=RECORD_SCHEMA)


class RayAnnotator:
    """An actor of the pool: loads the pipeline once, from its path or package name."""

    def __init__(self, model: str, batch_size: int, docbin: bool, n_threads: int, gpu: bool):
        if gpu:
            # Ray shows the actor only its own GPU(s), through CUDA_VISIBLE_DEVICES: it is GPU 0
            spacy.require_gpu(0)
        # Ray sets OMP_NUM_THREADS from the actor's CPUs (1 for fractions); torch's own setting
        # is what counts once torch is imported.
        self.nlp = load_pipeline(model, n_threads=n_threads)
        self.batch_size = batch_size
        self.docbin = docbin

    def __call__(self, records: pyarrow.Table) -> pyarrow.Table:
        return rows_table(list(annotate_records(self.nlp, records.to_pylist(), self.batch_size, docbin=self.docbin)))


class ShardSink(Datasink):
    """Each write task writes its rows (at least ``shard_size``, except the last) as one shard."""

    def __init__(self, writer: ShardWriter, shard_size: int):
        self.writer = writer
        self.shard_size = shard_size
        self.written = {"docs": 0, "words": 0}

    @property
    def min_rows_per_write(self) -> int:
        return self.shard_size

    def write(self, blocks: Iterable[Block], ctx: Any) -> Dict[str, int]:
        tables = [table for table in blocks if table.num_rows]
        if not tables:
            return {"docs": 0, "words": 0}
        return self.writer.write(pyarrow.concat_tables(tables))

    def on_write_complete(self, write_result: Any) -> None:
        for shard in write_result.write_returns:
            self.written["docs"] += shard["docs"]
            self.written["words"] += shard["words"]
