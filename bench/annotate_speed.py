"""Batch annotation speed: ``annotate`` on one process, on ``n_process=2``, and on Ray with 2 actors.

The pipeline is a CNN ``crf_ner`` (``configs/crf_ner_cnn.cfg``) trained briefly on WikiANN-en
train (``scripts/convert.py``, then ``spacy train`` for ``--train-steps`` steps; reused from
``--work-dir`` when it is there): accuracy is not the point, realistic entity counts are. The
corpus: WikiANN-en dev + test sentences (20,000 by default, tokens joined by spaces), as JSONL
with ids.

Every run is the command itself (``python -m spacy_crf_ner annotate``) in a fresh process, so the
time includes what a user waits for: imports, loading the model (once per worker), starting Ray.
Each engine runs on a small and on the full corpus; the fixed startup cost and the steady
words/s come from the two (steady = extra words / extra seconds; startup = the small run's time
less its words at that rate). The engines take turns, round by round (A B C A B C), and the median
over rounds is reported, so load from other jobs hits every engine alike; one untimed small run
of each engine comes first (the first start reads every file from disk). Memory: the harness
reads the RSS of every process of the run's tree from /proc every 0.2 s; reported are the peak of
one worker (the process that runs the pipeline: the command itself, one of spaCy's worker
processes, one Ray actor) and the peak of the whole tree (with Ray's own processes).

Torch runs one thread per worker (OMP_NUM_THREADS=1 for the local runs, ``--cpus-per-actor 1``
on Ray): on 2 cores more threads only oversubscribe them.

    python bench/annotate_speed.py                      # ~15 min on a shared 2-core machine
    python bench/annotate_speed.py --docs 2000 --rounds 1 --out /tmp/as.json   # quick
    python bench/annotate_speed.py --report-only        # the report again from bench/results/annotate_speed.json

Runs recorded before the one reported (the JSON's ``earlier_runs``, each with its own ``meta``) are
shown after it.
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    command_line,
    load_average,
    machine_info,
    read_sentences,
    set_torch_threads,
    write_report,
)

TITLE = "Batch annotation speed"

ENGINES = {
    "nlp.pipe, 1 process": ["--engine", "local", "--n-process", "1"],
    "nlp.pipe, n_process=2": ["--engine", "local", "--n-process", "2"],
    "Ray Data, 2 actors": ["--engine", "ray", "--actors", "2", "--cpus-per-actor", "1"],
}
SMALL_DOCS = 500
SAMPLE_SECONDS = 0.2


def train_model(data_dir: Path, work_dir: Path, steps: int) -> Tuple[Path, float]:
    """A CNN crf_ner trained for ``steps`` steps on WikiANN-en train; (its path, seconds taken)."""
    model = work_dir / f"cnn-{steps}" / "model-last"
    if model.is_dir():
        return model, float("nan")
    start = time.perf_counter()
    dev = work_dir / "dev500.iob"
    dev.write_text("\n\n".join("\n".join(s) for s in read_sentences(data_dir / "wikiann-en" / "dev.iob")[:500]) + "\n", encoding="utf8")
    python = [sys.executable]
    run(python + ["scripts/convert.py", str(data_dir / "wikiann-en" / "train.iob"), str(work_dir / "train.spacy")])
    run(python + ["scripts/convert.py", str(dev), str(work_dir / "dev.spacy")])
    run(python + ["-m", "spacy", "train", "configs/crf_ner_cnn.cfg", "-o", str(model.parent),
                  "--paths.train", str(work_dir / "train.spacy"), "--paths.dev", str(work_dir / "dev.spacy"),
                  "--paths.vectors", "null", "--training.max_steps", str(steps), "--training.eval_frequency", str(steps // 2)])
    return model, time.perf_counter() - start


def run(command: List[str]) -> None:
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def write_corpus(data_dir: Path, work_dir: Path, n: int) -> Tuple[Path, int]:
    """The first ``n`` dev + test sentences as JSONL ``{id, text}``; (path, words)."""
    sentences = [s for split in ("dev", "test") for s in read_sentences(data_dir / "wikiann-en" / f"{split}.iob")][:n]
    if len(sentences) < n:
        raise SystemExit(f"only {len(sentences)} dev + test sentences in {data_dir / 'wikiann-en'}")
    texts = [" ".join(line.split("\t")[0] for line in s) for s in sentences]
    path = work_dir / f"corpus-{n}.jsonl"
    path.write_text("".join(json.dumps({"id": f"s{i}", "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf8")
    return path, sum(len(s) for s in sentences)


def process_tree(root: int) -> Dict[int, Tuple[str, int]]:
    """``{pid: (command line, RSS bytes)}`` of ``root`` and every process under it."""
    children, info = {}, {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").iterdir():
        try:
            pid = int(entry.name)
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            rss = int((entry / "statm").read_text().split()[1]) * page
            info[pid] = ((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"), rss)
        except (ValueError, OSError):
            continue
        children.setdefault(parent, []).append(pid)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in info:
            tree[pid] = info[pid]
        todo.extend(children.get(pid, []))
    return tree


def is_worker(engine: str, pid: int, command: str, root: int) -> bool:
    """Whether the process runs the pipeline: the command itself, spaCy's forked workers (the
    command's children, same command line), or Ray's actors."""
    if engine.startswith("Ray"):
        return "MapWorker" in command
    return (pid == root) == (engine == "nlp.pipe, 1 process") and "spacy_crf_ner" in command


def timed_run(model: Path, corpus: Path, engine: str, out: Path) -> Dict[str, float]:
    """One run of the command: wall seconds, peak RSS of one worker and of the whole tree (MiB)."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "spacy_crf_ner", "annotate", str(model), str(corpus), str(out), *ENGINES[engine]]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "RAY_DEDUP_LOGS": "0"}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    worker_peak = tree_peak = 0
    while process.poll() is None:
        tree = process_tree(process.pid)
        workers = [rss for pid, (cmd, rss) in tree.items() if is_worker(engine, pid, cmd, process.pid)]
        worker_peak = max([worker_peak] + workers)
        tree_peak = max(tree_peak, sum(rss for _, rss in tree.values()))
        time.sleep(SAMPLE_SECONDS)
    seconds = time.perf_counter() - start
    summary = process.stdout.read()
    if process.returncode != 0 or "docs in" not in summary:
        raise SystemExit(f"{engine}: the command failed ({process.returncode}): {summary}")
    return {"seconds": seconds, "worker_peak_mib": worker_peak / 2**20, "tree_peak_mib": tree_peak / 2**20, "summary": summary.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/annotate_speed"))
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "annotate_speed.json")
    parser.add_argument("--report-only", action="store_true", help="render the report again from --out's JSON")
    args = parser.parse_args()
    if args.report_only:
        return report(args.out, json.loads(args.out.read_text(encoding="utf8")))
    # This process runs no pipeline: its torch threads, which the report's header shows, are set to
    # what every worker runs (OMP_NUM_THREADS=1 for the local runs, one CPU per Ray actor).
    set_torch_threads(1)
    args.work_dir.mkdir(parents=True, exist_ok=True)

    model, train_seconds = train_model(args.data_dir, args.work_dir, args.train_steps)
    small, small_words = write_corpus(args.data_dir, args.work_dir, SMALL_DOCS)
    full, full_words = write_corpus(args.data_dir, args.work_dir, args.docs)
    for engine in ENGINES:  # untimed: the first start of each engine reads its files from disk
        timed_run(model, small, engine, args.work_dir / "out")
    runs: Dict[str, List[Dict]] = {engine: [] for engine in ENGINES}
    loads = [load_average()]
    for round_ in range(args.rounds):
        for engine in ENGINES:
            pair = {"small": timed_run(model, small, engine, args.work_dir / "out"),
                    "full": timed_run(model, full, engine, args.work_dir / "out")}
            runs[engine].append(pair)
            print(f"round {round_ + 1} {engine}: {pair['small']['seconds']:.1f} s / {pair['full']['seconds']:.1f} s "
                  f"(load {load_average()})", flush=True)
        loads.append(load_average())

    table = {}
    for engine, pairs in runs.items():
        steady = statistics.median((full_words - small_words) / (p["full"]["seconds"] - p["small"]["seconds"]) for p in pairs)
        table[engine] = {
            "words_per_s_steady": steady,
            "words_per_s_end_to_end": statistics.median(full_words / p["full"]["seconds"] for p in pairs),
            "startup_s": statistics.median(p["small"]["seconds"] - small_words / steady for p in pairs),
            "full_run_s": statistics.median(p["full"]["seconds"] for p in pairs),
            "worker_peak_mib": max(p["full"]["worker_peak_mib"] for p in pairs),
            "tree_peak_mib": max(p["full"]["tree_peak_mib"] for p in pairs),
        }
    meta = {
        "date": datetime.date.today().isoformat(),
        "command": command_line(sys.argv[0], sys.argv[1:]),
        "machine": machine_info(extra_packages=("ray",)),
        "load_average_per_round": loads,
    }
    report(args.out, {
        "meta": meta, "model": str(model), "train_steps": args.train_steps, "train_seconds": train_seconds,
        "docs": args.docs, "words": full_words, "small_docs": SMALL_DOCS, "small_words": small_words,
        "rounds": args.rounds, "table": table, "runs": runs,
    })


def report(out: Path, result: Dict) -> None:
    """``out`` (JSON: ``result``) and its markdown beside it."""
    data = {key: value for key, value in result.items() if key != "meta"}
    print(write_report(out.with_suffix(""), TITLE, result["meta"], body(result), data))


def body(result: Dict) -> str:
    """The report under write_report's header: the run, then the runs recorded before it. Reads
    only ``result`` (the JSON), so a finished run re-renders."""
    lines = [run_summary(result), "", *engine_table(result)]
    if result.get("earlier_runs"):
        lines += ["", "## Earlier runs under more load (same command)"]
        for run in result["earlier_runs"]:
            lines += ["", f"{run['label']}:", "", run_summary(run), "", *engine_table(run)]
    return "\n".join(lines) + "\n"


def run_summary(run: Dict) -> str:
    machine = run["meta"]["machine"]
    loads = " | ".join(" ".join(f"{x:.2f}" for x in load) for load in run["meta"]["load_average_per_round"])
    return (
        f"{run['docs']:,} WikiANN-en dev + test sentences ({run['words']:,} words), CNN `crf_ner` "
        f"({run['train_steps']} training steps), confidences on; {machine['cpu']}, {machine['cores']} cores; "
        f"{run['rounds']} rounds, engines interleaved, medians; load averages per round: {loads}."
    )


def engine_table(run: Dict) -> List[str]:
    lines = [
        "| engine | words/s once started | words/s end to end | startup s | full run s | peak RSS per worker MiB | peak RSS, all processes MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for engine, row in run["table"].items():
        lines.append(
            f"| {engine} | {row['words_per_s_steady']:,.0f} | {row['words_per_s_end_to_end']:,.0f} | {row['startup_s']:.1f} | "
            f"{row['full_run_s']:.1f} | {row['worker_peak_mib']:,.0f} | {row['tree_peak_mib']:,.0f} |"
        )
    return lines


if __name__ == "__main__":
    main()
