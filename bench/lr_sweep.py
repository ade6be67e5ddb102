"""Choose ``crf_lr_multiplier`` from a measurement: train ``crf_ner`` at several multipliers.

For each encoder (the CNN of ``configs/crf_ner_cnn.cfg``; the offline MiniLM transformer of
``configs/crf_ner_trf.cfg`` unless ``--skip-trf``) and each multiplier (default 1, 10, 100, 1000),
it trains through spaCy's own training loop (``spacy.training.initialize.init_nlp`` +
``spacy.training.loop.train``, exactly what ``spacy train`` runs) on WikiANN-en train sentences,
with the same steps, batches, learning rate and seed for every multiplier, and then reports:

- ``ents_p/r/f`` on WikiANN-en dev sentences (``nlp.evaluate``);
- how far the CRF moved from its initialisation: the mean and max ``|delta|`` of the transition
  scores over the allowed cells (the forbidden ones are never used), and the mean ``|delta|`` of the
  allowed start / end scores. torchcrf initialises them uniform in [-0.1, 0.1], so a mean move of
  0.01 means the CRF is still its random init: a per-token softmax with noise on top.

The multiplier scales only the CRF's learning rate (``CRFShim.lr_scale``): Adam's step on the
transitions is about ``lr * multiplier`` per update whatever the gradient's size, so at a
transformer's ``5e-5`` and a multiplier of 1, a thousand steps move a transition by 0.05 at most.

The data are read from ``--data-dir`` (default ``../shared/data``, the project's neighbour) and
converted with ``scripts/convert.py`` into ``--work-dir`` (outside the repository); nothing is
copied into the project. Every run uses the training config unchanged except for the overrides
printed in the report (steps, batch size, schedule, ``[paths]``, ``confidences = false``, which
only skips computing entity probabilities, and a one-doc dev corpus for the loop's own step-0
evaluation; the real evaluation is done after training on the dev subset).

    python bench/lr_sweep.py                      # CNN x 2 seeds + MiniLM x 1 seed, ~22 min (1 thread, shared 2 cores)
    python bench/lr_sweep.py --skip-trf --cnn-steps 200 --seeds 0   # a quick look
    # the MiniLM half at a converging budget (about 9 epochs of the 20,000 sentences, the peak rate
    # of bench/accuracy.py, decayed to 0 at the last step): hours, so one file per run and --resume
    python bench/lr_sweep.py --skip-cnn --trf-steps 800 --trf-batch-size 2000 --trf-lr 1e-4 \
        --out bench/results/lr_sweep_trf.json --resume

Each finished run is written to OUT_STEM_runs/ENCODER-xMULTIPLIER-sSEED.json as it finishes;
``--resume`` skips the runs whose file exists and reports over all of them.
"""
import argparse
import datetime
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
from common import (  # noqa: E402
    command_line, crf_params, crf_score_sizes, load_average, machine_info, read_sentences, set_dotted, set_torch_threads,
    threads_from_argv, write_report,
)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
threads_from_argv(sys.argv)

import torch  # noqa: E402
from spacy import util  # noqa: E402
from spacy.tokens import DocBin  # noqa: E402
from spacy.training import Example  # noqa: E402
from spacy.training.initialize import init_nlp  # noqa: E402
from spacy.training.loop import train  # noqa: E402

from spacy_crf_ner.convert import convert_file  # noqa: E402
from spacy_crf_ner.runtime import find_transformer  # noqa: E402


# -- data ---------------------------------------------------------------------------------------


def subset_docbin(data_dir: Path, split: str, n: int, work_dir: Path, n_sents: int = 10) -> Path:
    """The first ``n`` sentences of ``wikiann-en/{split}.iob`` (0: all) as a DocBin in work_dir."""
    source = data_dir / "wikiann-en" / f"{split}.iob"
    if not source.is_file():
        raise SystemExit(f"{source} not found: pass --data-dir (the folder holding wikiann-en/)")
    sentences = read_sentences(source)
    if n:
        sentences = sentences[:n]
    work_dir.mkdir(parents=True, exist_ok=True)
    tsv = work_dir / f"wikiann-en.{split}.{len(sentences)}.iob"
    out = work_dir / f"wikiann-en.{split}.{len(sentences)}.n{n_sents}.spacy"
    if not out.is_file() or out.stat().st_mtime < source.stat().st_mtime:
        tsv.write_text("\n\n".join("\n".join(s) for s in sentences) + "\n", encoding="utf-8")
        convert_file(tsv, out, n_sents=n_sents)
    return out


def corpus_words(path: Path) -> int:
    return sum(len(doc) for doc in DocBin().from_disk(path).get_docs(util.get_lang_class("en")().vocab))


# -- one training run ---------------------------------------------------------------------------


def run_config(encoder: str, multiplier: float, seed: int, args, train_path: Path, dev_path: Path):
    """The training config of one run, and the overrides applied (for the report)."""
    if encoder == "cnn":
        config = util.load_config(ROOT / "configs" / "crf_ner_cnn.cfg")
        overrides = {
            "paths.vectors": None,  # the CNN config does not use static vectors (include_static_vectors = false)
            "training.batcher.size": args.cnn_batch_words,
            "training.max_steps": args.cnn_steps,
            "training.optimizer.learn_rate": args.cnn_lr,
        }
    else:
        config = util.load_config(ROOT / "configs" / "crf_ner_trf.cfg")
        overrides = {
            "paths.transformer": str(find_transformer()),
            "training.batcher.size": args.trf_batch_size,
            "training.accumulate_gradient": 1,
            "training.max_steps": args.trf_steps,
            "training.optimizer.learn_rate.initial_rate": args.trf_lr,
            "training.optimizer.learn_rate.warmup_steps": max(1, args.trf_steps // 10),
            "training.optimizer.learn_rate.total_steps": args.trf_steps,
        }
    overrides.update(
        {
            "paths.train": str(train_path),
            "paths.dev": str(dev_path),
            "system.seed": seed,
            "training.seed": seed,
            "training.eval_frequency": 10**9,  # the loop evaluates at step 0 only ...
            "corpora.dev.limit": 1,  # ... on one doc; the real evaluation follows training
            "training.patience": 0,
            "training.max_epochs": 0,
            "components.crf_ner.crf_lr_multiplier": float(multiplier),
            "components.crf_ner.confidences": False,
        }
    )
    for dotted, value in overrides.items():
        set_dotted(config, dotted, value)
    return config, overrides


def crf_movement(before: Dict[str, torch.Tensor], after: Dict[str, torch.Tensor]) -> Dict[str, float]:
    moved = crf_score_sizes(after, before)
    return {
        "transitions_mean_abs_delta": moved["transitions_abs_mean"],
        "transitions_max_abs_delta": moved["transitions_abs_max"],
        "start_end_mean_abs_delta": moved["start_end_abs_mean"],
        "transitions_final_abs_mean": crf_score_sizes(after)["transitions_abs_mean"],
        "allowed_cells": int(after["allowed_transitions"].sum()),
    }


def train_one(encoder: str, multiplier: float, seed: int, args, train_path: Path, dev_path: Path, dev_examples):
    config, overrides = run_config(encoder, multiplier, seed, args, train_path, dev_path)
    t0 = time.perf_counter()
    nlp = init_nlp(config, use_gpu=-1)
    before = crf_params(nlp.get_pipe("crf_ner").crf)
    log = io.StringIO()
    t1 = time.perf_counter()
    nlp, _ = train(nlp, None, use_gpu=-1, stdout=log, stderr=log)
    t2 = time.perf_counter()
    after = crf_params(nlp.get_pipe("crf_ner").crf)
    scores = nlp.evaluate(dev_examples, batch_size=64)
    t3 = time.perf_counter()
    # The same trained pipeline with the CRF's own scores put back to their initial values: what
    # the learned transitions add on top of the emissions (and the constraints).
    crf = nlp.get_pipe("crf_ner").crf
    with torch.no_grad():
        crf.transitions.copy_(before["transitions"])
        crf.start_transitions.copy_(before["start"])
        crf.end_transitions.copy_(before["end"])
    reset_f = nlp.evaluate(dev_examples, batch_size=64)["ents_f"]
    result = {
        "encoder": encoder,
        "multiplier": multiplier,
        "seed": seed,
        "ents_p": scores["ents_p"],
        "ents_r": scores["ents_r"],
        "ents_f": scores["ents_f"],
        "ents_f_crf_reset": reset_f,
        **crf_movement(before, after),
        "init_seconds": round(t1 - t0, 1),
        "train_seconds": round(t2 - t1, 1),
        "eval_seconds": round(t3 - t2, 1),
    }
    return result, {k: v for k, v in overrides.items() if not k.startswith("paths.")}


# -- report -------------------------------------------------------------------------------------


def summarise(results: List[Dict]) -> List[Dict]:
    """One row per (encoder, multiplier): the mean over seeds, and each seed's F1."""
    rows = []
    keys = sorted({(r["encoder"], r["multiplier"]) for r in results}, key=lambda k: (k[0] != "cnn", k[1]))
    for encoder, mult in keys:
        runs = [r for r in results if r["encoder"] == encoder and r["multiplier"] == mult]
        mean = lambda key: statistics.fmean(r[key] for r in runs)  # noqa: E731
        rows.append(
            {
                "encoder": encoder,
                "multiplier": mult,
                "seeds": [r["seed"] for r in runs],
                "ents_f": mean("ents_f"),
                "ents_f_per_seed": [r["ents_f"] for r in runs],
                "ents_p": mean("ents_p"),
                "ents_r": mean("ents_r"),
                "ents_f_crf_reset": mean("ents_f_crf_reset"),
                "transitions_mean_abs_delta": mean("transitions_mean_abs_delta"),
                "transitions_max_abs_delta": mean("transitions_max_abs_delta"),
                "start_end_mean_abs_delta": mean("start_end_mean_abs_delta"),
                "train_seconds": mean("train_seconds"),
            }
        )
    return rows


def table(rows: List[Dict], settings: Dict[str, Dict]) -> str:
    lines = [
        "| encoder | lr (CRF lr) | multiplier | seeds | ents_f (per seed) | ents_p | ents_r | ents_f, CRF scores reset to init | mean abs Δ transitions | max abs Δ transitions | mean abs Δ start/end | train s/run |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lr = settings[r["encoder"]]["lr"]
        per_seed = ", ".join(f"{f * 100:.1f}" for f in r["ents_f_per_seed"])
        lines.append(
            f"| {r['encoder']} | {lr:g} ({lr * r['multiplier']:g}) | {r['multiplier']:g} | "
            f"{','.join(map(str, r['seeds']))} | **{r['ents_f'] * 100:.1f}** ({per_seed}) | "
            f"{r['ents_p'] * 100:.1f} | {r['ents_r'] * 100:.1f} | {r['ents_f_crf_reset'] * 100:.1f} | {r['transitions_mean_abs_delta']:.4f} | "
            f"{r['transitions_max_abs_delta']:.3f} | {r['start_end_mean_abs_delta']:.4f} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/spacy_crf_ner_bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lr_sweep.json")
    parser.add_argument("--multipliers", type=float, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds for the CNN")
    parser.add_argument("--trf-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train-sents", type=int, default=20000, help="first N train sentences (0: all)")
    parser.add_argument("--dev-sents", type=int, default=2000, help="first N dev sentences")
    parser.add_argument("--cnn-steps", type=int, default=400)
    parser.add_argument("--cnn-batch-words", type=int, default=400, help="batch_by_words size (fixed)")
    parser.add_argument("--cnn-lr", type=float, default=0.001, help="Adam's rate (the config's)")
    parser.add_argument("--trf-steps", type=int, default=40)
    parser.add_argument("--trf-batch-size", type=int, default=1000, help="batch_by_padded size")
    parser.add_argument("--trf-lr", type=float, default=5e-5, help="peak of warmup_linear (the config's)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch/BLAS threads (default 1: on a shared 2-core machine, 2 threads ran MiniLM 3x slower)",
    )
    parser.add_argument("--skip-trf", action="store_true")
    parser.add_argument("--skip-cnn", action="store_true")
    parser.add_argument("--resume", action="store_true", help="skip the runs whose file exists in OUT_STEM_runs/")
    args = parser.parse_args(argv)

    set_torch_threads(args.threads)
    command = command_line(sys.argv[0], sys.argv[1:] if argv is None else argv)
    runs_dir = args.out.parent / f"{args.out.stem}_runs"
    started = time.perf_counter()
    train_path = subset_docbin(args.data_dir, "train", args.train_sents, args.work_dir)
    dev_path = subset_docbin(args.data_dir, "dev", args.dev_sents, args.work_dir)
    nlp_en = util.get_lang_class("en")()
    dev_docs = list(DocBin().from_disk(dev_path).get_docs(nlp_en.vocab))
    dev_examples = [Example(nlp_en.make_doc(doc.text), doc) for doc in dev_docs]
    print(f"train: {train_path} ({corpus_words(train_path)} words); dev: {dev_path} ({sum(map(len, dev_docs))} words)")

    plan = []
    if not args.skip_cnn:
        plan += [("cnn", m, s) for s in args.seeds for m in args.multipliers]
    if not args.skip_trf:
        plan += [("trf", m, s) for s in args.trf_seeds for m in args.multipliers]
    runs_dir.mkdir(parents=True, exist_ok=True)
    results, settings = [], {}
    for encoder, mult, seed in plan:
        lr = args.cnn_lr if encoder == "cnn" else args.trf_lr
        steps = args.cnn_steps if encoder == "cnn" else args.trf_steps
        path = runs_dir / f"{encoder}-x{mult:g}-s{seed}.json"
        if path.is_file():
            if not args.resume:
                parser.error(f"{path} exists: pass --resume to keep the finished runs")
            saved = json.loads(path.read_text())
            if saved["settings"]["lr"] != lr or saved["settings"]["steps"] != steps:
                raise SystemExit(f"{path} was made with lr {saved['settings']['lr']}, {saved['settings']['steps']} "
                                 f"steps, not this command's {lr}, {steps}: use another --out")
            result, settings[encoder] = saved["result"], saved["settings"]
        else:
            result, overrides = train_one(encoder, mult, seed, args, train_path, dev_path, dev_examples)
            settings[encoder] = {"lr": lr, "steps": steps,
                                 "overrides": {k: v for k, v in overrides.items() if "multiplier" not in k and "seed" not in k}}
            result["load_end"] = load_average()
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"result": result, "settings": settings[encoder], "command": command}, indent=1) + "\n")
            tmp.replace(path)  # a run file is whole or absent
        results.append(result)
        print(
            f"{encoder} x{mult:g} seed {seed}: F1 {result['ents_f'] * 100:.1f} (CRF reset {result['ents_f_crf_reset'] * 100:.1f})  "
            f"mean|Δtrans| {result['transitions_mean_abs_delta']:.4f}  max {result['transitions_max_abs_delta']:.3f}  "
            f"({result['train_seconds']:.0f} s train, {result['eval_seconds']:.0f} s eval)",
            flush=True,
        )
    rows = summarise(results)
    wall = time.perf_counter() - started
    md_table = table(rows, settings)
    print()
    print(md_table)

    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(),
        "data": {
            "train": f"first {args.train_sents or 'all'} sentences of wikiann-en/train.iob ({corpus_words(train_path)} words, 10 sentences per doc)",
            "dev": f"first {args.dev_sents} sentences of wikiann-en/dev.iob ({sum(map(len, dev_docs))} words)",
        },
        "settings": settings,
        "wall_seconds": round(wall, 1),
    }
    budget = "; ".join(
        f"{enc}: {s['steps']} steps, lr {s['lr']:g}, " + ", ".join(f"`{k}={v}`" for k, v in s["overrides"].items())
        for enc, s in settings.items()
    )
    body = f"""Wall {wall / 60:.1f} min for this invocation (runs resumed from `{runs_dir.name}/` cost none).

Data: {meta['data']['train']}; dev: {meta['data']['dev']}. Trained with spaCy's loop
(`init_nlp` + `spacy.training.loop.train`), same steps, batches and seed for every multiplier.
Budgets and overrides: {budget}.

F1 is entity F1 on the dev subset after the last step (mean over seeds; per seed in parentheses).
`CRF scores reset to init`: the same trained pipeline evaluated again with the CRF's transition, start
and end scores put back to their initial values (the constraints stay): what the learned transitions add.
`Δ` is final minus initial CRF score over the allowed cells (torchcrf initialises them uniform
in [-0.1, 0.1]). `lr (CRF lr)`: the optimizer's peak rate and the CRF's (rate x multiplier).

{md_table}
"""
    write_report(args.out.with_suffix(""), "CRF learning-rate multiplier sweep", meta, body,
                 {"summary": rows, "runs": results})
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
