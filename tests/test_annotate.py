"""Batch annotation (``spacy_crf_ner.annotate``): the readers, bad records, exact ids, resume after a
crash, and the Ray Data engine against single-process ``nlp.pipe``, entity for entity."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest
import spacy

from spacy_crf_ner.annotate import (
    AnnotateError, Engine, OutputFormat, RayOptions, RecordFields, annotate, confidences_key, doc_entities, input_files,
)

ROOT = Path(__file__).resolve().parent.parent
N_DOCS = 100


@pytest.fixture(scope="session")
def crf_model(tmp_path_factory, make_examples) -> str:
    """A tiny CNN ``crf_ner`` pipeline trained on the synthetic sentences, saved to disk."""
    return _train(tmp_path_factory.mktemp("crf_model"), make_examples, "crf_ner")


@pytest.fixture(scope="session")
def ner_model(tmp_path_factory, make_examples) -> str:
    """The same with spaCy's own ``ner``: a pipeline without confidences."""
    return _train(tmp_path_factory.mktemp("ner_model"), make_examples, "ner")


def _train(path: Path, make_examples, factory: str) -> str:
    nlp = spacy.blank("en")
    nlp.add_pipe(factory)
    examples = make_examples(nlp, 60)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(15):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(path)
    return str(path)


@pytest.fixture(scope="module")
def texts(make_examples):
    """``N_DOCS`` texts from the training templates, with varied names so entities vary."""
    nlp = spacy.blank("en")
    return [eg.reference.text for eg in make_examples(nlp, N_DOCS, seed=7)]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf8")
    return path


def reference(model: str, texts):
    """What single-process ``nlp.pipe`` gives for each text: ``doc_entities`` rows."""
    nlp = spacy.load(model)
    key = confidences_key(nlp)
    return [doc_entities(doc, key) for doc in nlp.pipe(texts)]


def read_output(directory: Path, fmt: str = "parquet"):
    """``{id: row}`` of every shard, asserting that no id occurs twice."""
    rows = []
    for path in sorted(directory.glob(f"part-*.{fmt}")):
        if fmt == "parquet":
            rows.extend(pyarrow.parquet.read_table(path).to_pylist())
        else:
            rows.extend(json.loads(line) for line in path.read_text(encoding="utf8").splitlines())
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == len(rows), "an id occurs twice in the output"
    return by_id


def assert_same_entities(got, want):
    assert [(e["start_char"], e["end_char"], e["label"]) for e in got] == [(e["start_char"], e["end_char"], e["label"]) for e in want]
    for g, w in zip(got, want):
        assert (g["score"] is None) == (w["score"] is None)
        if w["score"] is not None:
            assert g["score"] == pytest.approx(w["score"], abs=1e-6)


# -- the local engine ---------------------------------------------------------------------------


def test_local_output_equals_nlp_pipe_with_confidences(crf_model, texts, tmp_path):
    ids = [f"doc-{i}" for i in range(len(texts))]
    random.Random(0).shuffle(ids)
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in zip(ids, texts)])
    summary = annotate(crf_model, str(source), tmp_path / "out", shard_size=30, batch_size=16, progress=False)
    out = read_output(tmp_path / "out")
    assert sorted(out) == sorted(ids)
    want = reference(crf_model, texts)
    for record_id, entities in zip(ids, want):
        assert out[record_id]["error"] is None
        assert_same_entities(out[record_id]["entities"], entities)
    assert any(e["score"] is not None for row in out.values() for e in row["entities"])
    assert len(list((tmp_path / "out").glob("part-*.parquet"))) == 4  # 30 + 30 + 30 + 10
    assert (summary.docs_in, summary.docs_out, summary.docs_annotated, summary.errors) == (100, 100, 100, 0)
    assert summary.words == sum(len(t.split()) for t in texts)


def test_spacy_ner_pipeline_gives_entities_without_scores(ner_model, texts, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts[:20]) + "\n", encoding="utf8")
    annotate(ner_model, str(source), tmp_path / "out", output_format=OutputFormat.jsonl, progress=False)
    out = read_output(tmp_path / "out", "jsonl")
    assert sorted(out) == sorted(str(i) for i in range(1, 21))  # ids: line numbers
    for i, entities in enumerate(reference(ner_model, texts[:20]), start=1):
        assert_same_entities(out[str(i)]["entities"], entities)
        assert all(e["score"] is None for e in out[str(i)]["entities"])


def test_n_process_2_equals_one_process(crf_model, texts, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts)])
    annotate(crf_model, str(source), tmp_path / "one", progress=False)
    annotate(crf_model, str(source), tmp_path / "two", n_process=2, batch_size=8, progress=False)
    assert read_output(tmp_path / "one") == read_output(tmp_path / "two")


def test_readers_parquet_text_dir_and_glob_give_the_same_ids(crf_model, texts, tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    write_jsonl(data / "a.jsonl", [{"key": f"a{i}", "body": t} for i, t in enumerate(texts[:10])])
    pyarrow.parquet.write_table(pyarrow.table({"body": texts[10:15]}), data / "sub" / "b.parquet")  # no id column
    (data / "c.txt").write_text("\n".join(texts[15:18]), encoding="utf8")  # no final newline
    (data / "notes.md").write_text("not an input", encoding="utf8")
    fields = RecordFields(text="body", id="key")
    want = {f"a{i}" for i in range(10)} | {f"sub/b.parquet:{i}" for i in range(1, 6)} | {f"c.txt:{i}" for i in range(1, 4)}
    annotate(crf_model, str(data), tmp_path / "dir", fields=fields, progress=False)
    assert set(read_output(tmp_path / "dir")) == want
    annotate(crf_model, str(data / "**" / "*.parquet"), tmp_path / "glob", fields=fields, progress=False)
    assert set(read_output(tmp_path / "glob")) == {"sub/b.parquet:1", "sub/b.parquet:2", "sub/b.parquet:3", "sub/b.parquet:4", "sub/b.parquet:5"}
    entities = reference(crf_model, texts[:18])
    out = read_output(tmp_path / "dir")
    assert_same_entities(out["sub/b.parquet:3"]["entities"], entities[12])
    assert_same_entities(out["c.txt:3"]["entities"], entities[17])


BAD_LINES = [
    (b'{"id": "no-text", "body": "x"}', "no 'text' field"),
    (b'{"id": "number", "text": 42}', "'text' is int, not a string"),
    (b'{"id": "empty", "text": "   "}', "empty text"),
    (b'{"id": "huge", "text": "' + b"a " * 600 + b'"}', "over the limit of 1,000"),
    (b'{"id": "broken", "text": "unterminated', "invalid JSON"),
    (b'["a", "list"]', "a JSON list, not an object"),
    (b'{"id": "latin1", "text": "Caf\xe9"}', "invalid UTF-8"),
]


def test_bad_records_get_an_error_and_the_run_goes_on(crf_model, texts, tmp_path):
    good = [json.dumps({"id": f"good{i}", "text": t}).encode() for i, t in enumerate(texts[:5])]
    lines = good[:2] + [line for line, _ in BAD_LINES] + good[2:]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    summary = annotate(crf_model, str(tmp_path / "in.jsonl"), tmp_path / "out",
                       fields=RecordFields(max_chars=1000), progress=False)
    out = read_output(tmp_path / "out")
    # ids: given, or the line number where the line has none (or cannot be parsed)
    bad_ids = ["no-text", "number", "empty", "huge", "7", "8", "9"]
    assert set(out) == {f"good{i}" for i in range(5)} | set(bad_ids)
    for record_id, (_, message) in zip(bad_ids, BAD_LINES):
        assert message in out[record_id]["error"], (record_id, out[record_id]["error"])
        assert out[record_id]["entities"] == []
    for i, entities in enumerate(reference(crf_model, texts[:5])):
        assert out[f"good{i}"]["error"] is None
        assert_same_entities(out[f"good{i}"]["entities"], entities)
    assert (summary.docs_in, summary.docs_out, summary.errors) == (12, 12, 7)


def test_invalid_utf8_line_in_a_text_file(crf_model, tmp_path):
    (tmp_path / "in.txt").write_bytes(b"Anna Berg flew to Oslo .\nCaf\xe9 in Lisbon .\n\nMaria said so .\n")
    annotate(crf_model, str(tmp_path / "in.txt"), tmp_path / "out", progress=False)
    out = read_output(tmp_path / "out")
    assert sorted(out) == ["1", "2", "3", "4"]
    assert "line 2: invalid UTF-8" in out["2"]["error"] and out["3"]["error"] == "empty text"
    assert out["1"]["error"] is None and out["4"]["error"] is None


@pytest.mark.parametrize("n_process", [1, 2])
def test_a_document_the_pipeline_fails_on_gets_the_error(crf_model, texts, tmp_path, monkeypatch, n_process):
    """A component that raises on one doc stops ``nlp.pipe`` (in a worker process too); the docs
    it had taken are annotated alone, only the bad one gets the error, and the run goes on."""
    from spacy_crf_ner.pipeline_component import CRFEntityRecognizer

    predict = CRFEntityRecognizer.predict

    def fail_on_poison(self, docs):
        if any("Poison" in doc.text for doc in docs):
            raise ValueError("poisoned doc")
        return predict(self, docs)

    monkeypatch.setattr(CRFEntityRecognizer, "predict", fail_on_poison)
    records = [{"id": i, "text": t} for i, t in enumerate(texts[:10])] + [{"id": "bad", "text": "Poison ivy ."}]
    source = write_jsonl(tmp_path / "in.jsonl", records[:4] + records[10:] + records[4:10])
    summary = annotate(crf_model, str(source), tmp_path / "out", batch_size=4, n_process=n_process, progress=False)
    out = read_output(tmp_path / "out")
    assert out["bad"]["error"] == "ValueError: poisoned doc"
    monkeypatch.setattr(CRFEntityRecognizer, "predict", predict)
    for i, entities in enumerate(reference(crf_model, texts[:10])):
        assert out[str(i)]["error"] is None
        assert_same_entities(out[str(i)]["entities"], entities)
    assert summary.errors == 1


def test_a_failure_of_the_input_itself_stops_the_run(crf_model):
    """Unlike a document's failure, an input that breaks mid-way is not turned into errors."""
    from spacy_crf_ner.annotate import annotate_records

    def records():
        yield {"id": "1", "text": "Anna Berg ran .", "error": None}
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(annotate_records(spacy.load(crf_model), records(), batch_size=4))


def test_unreadable_input_is_an_error_before_any_work(crf_model, texts, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "a.jsonl", [{"text": t} for t in texts[:3]])
    (data / "b.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(AnnotateError, match="b.parquet is not a readable Parquet file"):
        annotate(crf_model, str(data), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(AnnotateError, match="cannot read input file .*missing.jsonl"):
        annotate(crf_model, str(tmp_path / "missing.jsonl"), tmp_path / "out", progress=False)
    with pytest.raises(AnnotateError, match="no input files"):
        input_files(str(tmp_path / "nothing-*.jsonl"))
    locked = write_jsonl(tmp_path / "locked.jsonl", [{"text": "a"}])
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        pytest.skip("running as root: chmod 0 does not stop reading")
    with pytest.raises(AnnotateError, match="cannot read input file .*locked.jsonl"):
        annotate(crf_model, str(locked), tmp_path / "out", progress=False)


def test_duplicate_ids_are_an_error(crf_model, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "x", "text": "Anna ran ."}, {"id": "x", "text": "Tomas ran ."}])
    with pytest.raises(AnnotateError, match="1 ids occur twice"):
        annotate(crf_model, str(source), tmp_path / "out", progress=False)


def test_output_of_another_run_needs_resume(crf_model, texts, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts[:5]])
    annotate(crf_model, str(source), tmp_path / "out", progress=False)
    with pytest.raises(AnnotateError, match="pass --resume"):
        annotate(crf_model, str(source), tmp_path / "out", progress=False)
    with pytest.raises(AnnotateError, match="text_field"):
        annotate(crf_model, str(source), tmp_path / "out", fields=RecordFields(text="body"), resume=True, progress=False)
    with pytest.raises(AnnotateError, match="made with model"):
        annotate(crf_model + "/", str(source), tmp_path / "out", resume=True, progress=False)
    summary = annotate(crf_model, str(source), tmp_path / "out", resume=True, progress=False)
    assert (summary.docs_before, summary.docs_annotated, summary.docs_out) == (5, 0, 5)


def test_docbin_per_shard(crf_model, texts, tmp_path):
    from spacy.tokens import DocBin

    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts[:25])] + [{"id": "e", "text": ""}])
    annotate(crf_model, str(source), tmp_path / "out", shard_size=10, docbin=True, progress=False)
    nlp = spacy.load(crf_model)
    docs = {}
    for shard in sorted((tmp_path / "out").glob("part-*.parquet")):
        shard_ids = set(pyarrow.parquet.read_table(shard, columns=["id"]).column("id").to_pylist())
        for doc in DocBin().from_disk(shard.with_suffix(".spacy")).get_docs(nlp.vocab):
            assert doc.user_data["id"] in shard_ids
            docs[doc.user_data["id"]] = doc
    assert sorted(docs, key=int) == [str(i) for i in range(25)]  # the bad record has no doc
    want = reference(crf_model, texts[:25])
    for i in range(25):
        assert [(e.start_char, e.end_char, e.label_) for e in docs[str(i)].ents] == [
            (e["start_char"], e["end_char"], e["label"]) for e in want[i]
        ]


@pytest.mark.slow
def test_resume_after_the_process_is_killed(crf_model, texts, tmp_path):
    """Kill -9 a run of the command after its first shards; a half-written temporary file is left
    like a crash mid-write would leave it; resuming completes the output, each id once."""
    many = [f"{t} ({i})" for i, t in enumerate(texts * 10)]  # 1,000 docs
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(many)])
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "spacy_crf_ner", "annotate", crf_model, str(source), str(out), "--shard-size", "50", "--batch-size", "10"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    while len(list(out.glob("part-*.parquet"))) < 3 and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    shards_before = len(list(out.glob("part-*.parquet")))
    assert 3 <= shards_before < 20, "the run was not interrupted mid-way"
    (out / ".part-deadbeef.parquet.0123.tmp").write_bytes(b"PAR1 half a shard")
    with pytest.raises(AnnotateError, match="pass --resume"):
        annotate(crf_model, str(source), out, progress=False)
    summary = annotate(crf_model, str(source), out, shard_size=50, resume=True, progress=False)
    assert (summary.docs_in, summary.docs_out, summary.docs_before) == (1000, 1000, shards_before * 50)
    assert summary.docs_annotated == 1000 - shards_before * 50
    assert not list(out.glob(".part-*"))
    rows = read_output(out)
    assert sorted(rows) == sorted(f"d{i}" for i in range(1000))
    want = reference(crf_model, many)
    for i in range(1000):
        assert_same_entities(rows[f"d{i}"]["entities"], want[i])


def test_command_line_reports_a_clear_error(crf_model, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "spacy_crf_ner", "annotate", crf_model, str(tmp_path / "nope.jsonl"), str(tmp_path / "out")],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert "annotate: cannot read input file" in result.stderr and "nope.jsonl" in result.stderr


@pytest.mark.slow
def test_project_workflow_annotates_the_raw_text_file(crf_model, tmp_path):
    """``spacy project run batch_annotate`` (twice: the second run replaces the first)."""
    import shutil

    shutil.copy(ROOT / "project.yml", tmp_path)
    shutil.copytree(ROOT / "assets", tmp_path / "assets")
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "spacy", "project", "run", "batch_annotate", str(tmp_path), "--vars.annotate_model", crf_model],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    texts = (ROOT / "assets" / "sample" / "raw.txt").read_text(encoding="utf8").splitlines()
    out = read_output(tmp_path / "annotations", "jsonl")
    assert sorted(out, key=int) == [str(i) for i in range(1, len(texts) + 1)]
    for i, entities in enumerate(reference(crf_model, texts), start=1):
        assert_same_entities(out[str(i)]["entities"], entities)


# -- the Ray engine -----------------------------------------------------------------------------

RAY_ACTORS = 2


@pytest.fixture(scope="module")
def local_ray():
    """One Ray for the tests below that call ``annotate`` in this process, sized as the command
    sizes its own Ray for 2 actors of 1 CPU: the actors' CPUs plus ``RAY_IO_CPUS``."""
    ray = pytest.importorskip("ray")
    from spacy_crf_ner.annotate import RAY_IO_CPUS

    ray.init(num_cpus=RAY_ACTORS + RAY_IO_CPUS, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


RAY = dict(engine=Engine.ray, ray_options=RayOptions(actors=RAY_ACTORS, cpus_per_actor=1.0), progress=False)


@pytest.mark.slow
def test_ray_command_on_its_own_local_ray_equals_nlp_pipe(crf_model, texts, tmp_path):
    """The command as users run it: ``--engine ray`` with 2 actors of 1 CPU on the Ray that it
    starts itself (with CPUs for the reads and writes beside the actors), a JSONL and a Parquet
    file in shuffled id order; the output is ``nlp.pipe``'s, entity for entity, ids exact."""
    pytest.importorskip("ray")
    ids = [f"doc-{i}" for i in range(len(texts))]
    random.Random(1).shuffle(ids)
    records = [{"id": i, "text": t} for i, t in zip(ids, texts)]
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "a.jsonl", records[:50] + [{"id": "bad", "text": 7}])
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(records[50:]), data / "b.parquet")
    result = subprocess.run(
        [sys.executable, "-m", "spacy_crf_ner", "annotate", crf_model, str(data), str(tmp_path / "out"), "--engine", "ray",
         "--actors", str(RAY_ACTORS), "--cpus-per-actor", "1", "--batch-size", "8", "--shard-size", "20"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    words = sum(len(t.split()) for t in texts)
    assert f"docs in 101, docs out 101 (0 from an earlier run, 101 now), errors 1, {words:,} words" in result.stdout
    out = read_output(tmp_path / "out")
    assert sorted(out) == sorted(ids + ["bad"])
    assert out["bad"]["error"] == "'text' is int, not a string"
    for record_id, entities in zip(ids, reference(crf_model, texts)):
        assert out[record_id]["error"] is None
        assert_same_entities(out[record_id]["entities"], entities)


@pytest.mark.slow
def test_ray_resume_annotates_only_what_is_missing(local_ray, crf_model, texts, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts)])
    out = tmp_path / "out"
    annotate(crf_model, str(source), out, shard_size=25, progress=False)  # local: 4 shards of 25
    complete = read_output(out)
    lost = sorted(out.glob("part-*.parquet"))[:2]
    lost_ids = {i for shard in lost for i in pyarrow.parquet.read_table(shard).column("id").to_pylist()}
    for shard in lost:
        shard.unlink()
    summary = annotate(crf_model, str(source), out, shard_size=25, resume=True, docbin=False, **RAY)
    assert (summary.docs_before, summary.docs_annotated) == (50, 50)
    again = read_output(out)
    assert again.keys() == complete.keys()
    for record_id in lost_ids:
        assert_same_entities(again[record_id]["entities"], complete[record_id]["entities"])


def test_ray_refuses_a_pool_that_leaves_no_cpu_for_reads():
    pytest.importorskip("ray")
    from spacy_crf_ner.annotate_ray import check_resources

    with pytest.raises(AnnotateError, match="need 4.0 CPUs; the Ray cluster has 2"):
        check_resources({"CPU": 2.0}, RayOptions(actors=2, cpus_per_actor=1.0))
    check_resources({"CPU": 4.0}, RayOptions(actors=2, cpus_per_actor=1.0))
    with pytest.raises(AnnotateError, match="GPUs"):
        check_resources({"CPU": 8.0}, RayOptions(actors=2, gpus_per_actor=1.0))


def descendants(root: int):
    """``(pid, command line)`` of every process under ``root`` (Ray's actors are the raylet's
    children, and the raylet is this process's)."""
    children, commands = {}, {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (ValueError, OSError):
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append((pid, commands[pid]))
        todo.extend(children.get(pid, []))
    return found


@pytest.mark.slow
@pytest.mark.ray_faults
def test_ray_actor_killed_mid_run_loses_and_duplicates_nothing(local_ray, crf_model, texts, tmp_path):
    """kill -9 one actor of the pool once shards have been written; Ray restarts it and retries
    its batch; the output still holds each id once, with the entities of ``nlp.pipe``."""
    many = [f"{t} ({i})" for i, t in enumerate(texts * 12)]  # 1,200 docs
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(many)])
    out = tmp_path / "out"
    killed = []
    finished = threading.Event()

    def kill_one_actor():
        # watches for as long as the run lasts (a loaded machine makes Ray slow to start)
        while not finished.is_set() and not killed:
            workers = [pid for pid, command in descendants(os.getpid()) if "MapWorker" in command]
            if workers and len(list(out.glob("part-*.parquet"))) >= 2:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(len(list(out.glob("part-*.parquet"))))
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_actor)
    killer.start()
    try:
        summary = annotate(crf_model, str(source), out, batch_size=10, shard_size=50, **RAY)
    finally:
        finished.set()
        killer.join()
    assert killed and killed[0] < 1200 // 50, "no actor was killed mid-run"
    rows = read_output(out)
    assert sorted(rows) == sorted(f"d{i}" for i in range(1200))
    assert summary.docs_annotated == 1200
    want = reference(crf_model, many)
    for i in range(0, 1200, 7):
        assert_same_entities(rows[f"d{i}"]["entities"], want[i])
