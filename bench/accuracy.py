"""Accuracy benchmark: crf_ner against a softmax head and spaCy's transition-based `ner`, each
trained with the same encoder, data, step budget and batch size through spaCy's own training
loop (`init_nlp` + `spacy.training.loop.train`), then scored with `nlp.evaluate` (spaCy's NER
scorer: entity-level micro P/R/F1 and per-label F1).

    python bench/accuracy.py                    # the defaults below (what bench/results holds)
    python bench/accuracy.py --quick            # a tiny run in a few minutes, to check the script
    python bench/accuracy.py --encoders cnn --datasets wnut17 --seeds 3 --steps-cnn 800

Systems (`--systems`, comma-separated):
  crf          crf_ner as configured (BILUO, constraints on, crf_lr_multiplier 100)
  crf_m1       crf_ner with crf_lr_multiplier = 1
  softmax      crf_ner with use_crf = false, constrained = false (a per-token softmax; its
               invalid tag sequences are counted and repaired the way spaCy reads IOB: an I-
               that continues nothing starts an entity)
  ner          spaCy's `ner` (TransitionBasedParser.v2, as `spacy init config -p ner` makes it)
               on the same tok2vec / transformer and listener, generated from our config
  crf_frozen   crf with the transformer frozen (trf only)
  ner_frozen   ner with the transformer frozen (trf only)

Encoders: `cnn` = configs/crf_ner_cnn.cfg (hash-embed CNN tok2vec, no static vectors), `trf` =
configs/crf_ner_trf.cfg with the offline MiniLM (scripts/find_transformer.py). Data, read from
--data-dir (default ../shared/data beside the project; nothing is copied into the repo):
WikiANN-en (train on the first --train-sents sentences of train, evaluate on the first
--eval-sents sentences of test) and WNUT-17 (train on all of train, evaluate on dev).
Both are converted with scripts/convert.py (10 sentences a document) into --work-dir.

Budgets: fixed steps (`training.max_steps`, `max_epochs = 0`, no patience), one batch a step
(`accumulate_gradient = 1`), a fixed batch size (words per batch for the CNN, padded words
for the transformer), the transformer's warmup scaled to 10% of the steps and its linear decay
to the step budget. The pipeline evaluated is the last one (model-last); spaCy's in-training
evaluation only sees a 5-document dev sample (at step 0 and at the end), so it costs little and
selects nothing.

Defaults (the run in bench/results/accuracy.*, sized to finish in about 50 minutes on 2 CPU
cores shared with other jobs, load average 5-7): 1 seed per encoder (`--seeds cnn:1,trf:1`;
3 seeds did not fit the time available), --steps-cnn 150 --batch-cnn 500, --steps-trf 20
--batch-trf 500, --train-sents 10000, --eval-sents 500, --lr-trf 2e-4. These are tiny budgets:
the numbers compare the heads early in training, not converged models.

Writes --out.json (every per-seed number, the budgets, machine and command), --out.md and,
as each run finishes, --out.partial.jsonl (`--resume` skips the runs already there;
`--report-only` rebuilds the report from it).
"""
import argparse
import copy
import datetime
import gc
import io
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from common import ner_peer_config, read_sentences  # noqa: E402

import spacy  # noqa: E402
import torch  # noqa: E402
from spacy.tokens import Doc, DocBin  # noqa: E402
from spacy.scorer import Scorer  # noqa: E402
from spacy.training import Example  # noqa: E402
from spacy.training.initialize import init_nlp  # noqa: E402
from spacy.training.loop import train  # noqa: E402
from spacy.util import load_config  # noqa: E402
from thinc.api import Config  # noqa: E402

from calibration import expected_calibration_error  # noqa: E402
from convert import convert_file  # noqa: E402

import spacy_crf_ner  # noqa: E402,F401  (registers the factory and architectures)
from spacy_crf_ner.tags import is_valid  # noqa: E402

CONFIGS = {"cnn": ROOT / "configs" / "crf_ner_cnn.cfg", "trf": ROOT / "configs" / "crf_ner_trf.cfg"}
PEER_DIR = ROOT / "bench" / "configs"
ALL_SYSTEMS = ["crf", "crf_m1", "softmax", "ner", "crf_frozen", "ner_frozen"]
FROZEN = {"crf_frozen", "ner_frozen"}
DATASETS = {
    # name: (train file, eval file, eval split name, training-time dev file)
    "wikiann": ("wikiann-en/train.iob", "wikiann-en/test.iob", "test", "wikiann-en/dev.iob"),
    "wnut17": ("wnut17/train.conll", "wnut17/dev.conll", "dev", "wnut17/dev.conll"),
}
SUBSET_DATASETS = {"wikiann"}  # --train-sents applies to these; WNUT-17 trains on all of train
DEFAULTS = dict(
    seeds="cnn:1,trf:1", steps_cnn=150, steps_trf=20, batch_cnn=500, batch_trf=500,
    train_sents=10000, eval_sents=500, lr_trf=2e-4,
)
QUICK = dict(
    seeds="cnn:1,trf:1", steps_cnn=20, steps_trf=4, batch_cnn=300, batch_trf=300,
    train_sents=200, eval_sents=50,
)
N_SENTS_PER_DOC = 10
DEV_DOCS = 5  # documents of the training-time dev sample


# -- data -------------------------------------------------------------------------------------

def convert_subset(src: Path, n: Optional[int], out: Path) -> Dict:
    """Convert the first ``n`` sentences of ``src`` (all if None) to a DocBin at ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    blocks = read_sentences(src)
    n = len(blocks) if n is None else min(n, len(blocks))
    tmp = out.with_suffix(".txt")
    tmp.write_text("\n\n".join("\n".join(b) for b in blocks[:n]) + "\n", encoding="utf8")
    summary = convert_file(tmp, out, n_sents=N_SENTS_PER_DOC)
    tmp.unlink()
    return {"file": str(src), "sentences": summary["sentences"], "of": len(blocks),
            "tokens": summary["tokens"], "documents": summary["documents"],
            "entities": sum(summary["entities"].values()), "labels": sorted(summary["entities"])}


def prepare_data(args, dataset: str) -> Dict[str, Any]:
    train_rel, eval_rel, eval_split, dev_rel = DATASETS[dataset]
    work = args.work_dir / dataset
    n_train = args.train_sents if dataset in SUBSET_DATASETS else None
    info = {
        "train": convert_subset(args.data_dir / train_rel, n_train, work / f"train-{n_train}.spacy"),
        "eval": convert_subset(args.data_dir / eval_rel, args.eval_sents, work / f"eval-{args.eval_sents}.spacy"),
        "eval_split": eval_split,
        "train_dev": convert_subset(args.data_dir / dev_rel, DEV_DOCS * N_SENTS_PER_DOC, work / "traindev.spacy"),
    }
    info["paths"] = {
        "train": str(work / f"train-{n_train}.spacy"),
        "eval": str(work / f"eval-{args.eval_sents}.spacy"),
        "dev": str(work / "traindev.spacy"),
    }
    return info


# -- configs ----------------------------------------------------------------------------------

def set_dotted(cfg: Dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[last] = copy.deepcopy(value)


def write_peer_configs() -> None:
    """bench/configs/ner_{cnn,trf}.cfg: the generated peers, for reading (regenerated each run)."""
    PEER_DIR.mkdir(parents=True, exist_ok=True)
    for encoder, path in CONFIGS.items():
        peer = ner_peer_config(load_config(path, interpolate=False), encoder)
        header = (f"# Generated by bench/accuracy.py from {path.relative_to(ROOT)}: crf_ner replaced by "
                  "spaCy's ner (as `spacy init config -p ner`). Do not edit; edit the source config.\n")
        (PEER_DIR / f"ner_{encoder}.cfg").write_text(header + peer.to_str(), encoding="utf8")


def system_config(args, encoder: str, system: str, seed: int, paths: Dict[str, str],
                  steps: int, batch: int) -> Tuple[Config, Dict[str, Any]]:
    cfg = load_config(CONFIGS[encoder], interpolate=False)
    if system in ("ner", "ner_frozen"):
        cfg = ner_peer_config(cfg, encoder)
    overrides: Dict[str, Any] = {
        "paths.train": paths["train"],
        "paths.dev": paths["dev"],
        "system.seed": seed,
        "training.seed": seed,
        "training.max_steps": steps,
        "training.max_epochs": 0,
        "training.patience": 0,
        "training.accumulate_gradient": 1,
        "training.eval_frequency": steps,  # evaluates the tiny dev sample at step 0 and the end
        "training.logger.progress_bar": False,
    }
    if encoder == "cnn":
        overrides["paths.vectors"] = None  # include_static_vectors is false anyway
        overrides["training.batcher.size"] = batch  # words a batch, fixed (no compounding)
    else:
        overrides["paths.transformer"] = str(args.transformer)
        overrides["training.batcher.size"] = batch  # padded words a batch
        overrides["training.optimizer.learn_rate.warmup_steps"] = max(1, steps // 10)
        overrides["training.optimizer.learn_rate.total_steps"] = steps
        overrides["training.optimizer.learn_rate.initial_rate"] = args.lr_trf
    if "crf_ner" in cfg["components"]:
        # entity probabilities cost time and the in-training evaluation needs none; they are
        # switched back on for the final evaluation (run_one), which scores ECE
        overrides["components.crf_ner.confidences"] = False
    if system == "crf_m1":
        overrides["components.crf_ner.crf_lr_multiplier"] = 1.0
    elif system == "softmax":
        overrides["components.crf_ner.use_crf"] = False
        overrides["components.crf_ner.constrained"] = False
    if system in FROZEN:
        overrides["components.transformer"] = {"source": str(args.frozen_dir)}
        overrides["training.frozen_components"] = ["transformer"]
        overrides["training.annotating_components"] = ["transformer"]
    for key, value in overrides.items():
        set_dotted(cfg, key, value)
    cfg["corpora"]["dev"]["limit"] = DEV_DOCS
    return Config(cfg), overrides


def assemble_frozen(args) -> None:
    if (args.frozen_dir / "config.cfg").is_file():
        return
    subprocess.run(
        [sys.executable, "-m", "spacy", "assemble", str(CONFIGS["trf"]), str(args.frozen_dir),
         "--nlp.pipeline", '["transformer"]', "--paths.transformer", str(args.transformer)],
        check=True, capture_output=True,
    )


# -- one run ----------------------------------------------------------------------------------

class CapturingScorer(Scorer):
    """spaCy's Scorer, keeping the examples nlp.evaluate scored (it annotates copies)."""

    def score(self, examples, **kwargs):
        self.examples = list(examples)
        return super().score(self.examples, **kwargs)


def ent_keys(doc) -> set:
    return {(e.start, e.end, e.label_) for e in doc.ents}


def run_one(args, encoder, dataset, system, seed, data) -> Dict[str, Any]:
    steps = args.steps_cnn if encoder == "cnn" else args.steps_trf
    batch = args.batch_cnn if encoder == "cnn" else args.batch_trf
    config, overrides = system_config(args, encoder, system, seed, data["paths"], steps, batch)
    log = io.StringIO()
    t0 = time.perf_counter()
    nlp = init_nlp(config)
    t_init = time.perf_counter() - t0
    train(nlp, None, stdout=log, stderr=log)
    t_train = time.perf_counter() - t0
    if "crf_ner" in nlp.pipe_names:
        nlp.get_pipe("crf_ner").cfg["confidences"] = True
    eval_docs = list(DocBin().from_disk(data["paths"]["eval"]).get_docs(nlp.vocab))
    # the gold tokenisation, so every system is scored on the same tokens
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc]), doc)
                for doc in eval_docs]
    t1 = time.perf_counter()
    scorer = CapturingScorer(nlp=nlp)
    scores = nlp.evaluate(examples, scorer=scorer)
    examples = scorer.examples  # nlp.evaluate's copies, with the annotated predicted docs
    t_eval = time.perf_counter() - t1
    record: Dict[str, Any] = {
        "encoder": encoder, "dataset": dataset, "system": system, "seed": seed,
        "steps": steps, "batch": batch, "overrides": overrides,
        "ents_p": scores["ents_p"], "ents_r": scores["ents_r"], "ents_f": scores["ents_f"],
        "per_type": {label: v["f"] for label, v in (scores.get("ents_per_type") or {}).items()},
        "init_s": round(t_init, 1), "train_s": round(t_train, 1), "eval_s": round(t_eval, 1),
        "final_losses": None,
    }
    if "crf_ner" in nlp.pipe_names:
        ner = nlp.get_pipe("crf_ner")
        docs = [eg.predicted for eg in examples]
        # the encoder's output is on the docs already (doc.tensor / doc._.trf_data), so the
        # listener reads it back: this reruns the head only
        paths = ner.predict(docs).paths
        tags = ner.tags
        invalid = sum(not is_valid([tags[i] for i in path], ner.cfg["scheme"]) for path in paths)
        record["invalid_sequences"] = int(invalid)
        record["sequences"] = len(paths)
        conf, correct = [], []
        for eg in examples:
            gold = ent_keys(eg.reference)
            group = eg.predicted.spans[ner.spans_key]
            for span, p in zip(group, group.attrs["scores"]):
                conf.append(min(1.0, max(0.0, float(p))))
                correct.append((span.start, span.end, span.label_) in gold)
        cal = expected_calibration_error(conf, correct, n_bins=10)
        record["ece"] = cal["ece"]
        record["mce"] = cal["mce"]
        record["calibration"] = {k: cal[k] for k in ("n_entities", "accuracy", "mean_confidence")}
    record["train_log_tail"] = log.getvalue()[-600:]
    del nlp, examples, eval_docs
    gc.collect()
    return record


# -- report -----------------------------------------------------------------------------------

def mean_std(values: List[float]) -> Tuple[float, Optional[float]]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt(values: List[float], scale: float = 100.0, digits: int = 1) -> str:
    m, s = mean_std(values)
    if m != m:
        return "–"
    text = f"{m * scale:.{digits}f}"
    return text + (f" ± {s * scale:.{digits}f}" if s is not None else "")


def summarise(runs: List[Dict], meta: Dict) -> str:
    groups: Dict[Tuple, List[Dict]] = {}
    for r in runs:
        groups.setdefault((r["encoder"], r["dataset"], r["system"]), []).append(r)
    order = lambda k: (["cnn", "trf"].index(k[0]), list(DATASETS).index(k[1]), ALL_SYSTEMS.index(k[2]))  # noqa: E731
    lines = [
        "| encoder | data (train → eval) | system | seeds | F1 | P | R | ECE | invalid seqs | steps × batch | train s | eval s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for key in sorted(groups, key=order):
        rs = groups[key]
        enc, ds, system = key
        d = meta["data"][ds]
        data = f"{ds} {d['train']['sentences']} → {d['eval_split']} {d['eval']['sentences']}"
        inv = "–"
        if "invalid_sequences" in rs[0]:
            inv = "/".join(str(r["invalid_sequences"]) for r in rs) + f" of {rs[0]['sequences']}"
        ece = fmt([r.get("ece") for r in rs], 1.0, 3) if "ece" in rs[0] else "–"
        unit = "words" if enc == "cnn" else "padded words"
        lines.append(
            f"| {enc} | {data} | {system} | {len(rs)} | {fmt([r['ents_f'] for r in rs])} | "
            f"{fmt([r['ents_p'] for r in rs])} | {fmt([r['ents_r'] for r in rs])} | {ece} | {inv} | "
            f"{rs[0]['steps']} × {rs[0]['batch']} {unit} | {mean_std([r['train_s'] for r in rs])[0]:.0f} | "
            f"{mean_std([r['eval_s'] for r in rs])[0]:.0f} |"
        )
    per_label = ["", "Per-label F1 (mean over seeds):", ""]
    for ds in DATASETS:
        keys = [k for k in sorted(groups, key=order) if k[1] == ds]
        if not keys:
            continue
        labels = sorted({lab for k in keys for r in groups[k] for lab in r["per_type"]})
        per_label += [f"**{ds}**", "", "| encoder | system | " + " | ".join(labels) + " |",
                      "|---|---|" + "---:|" * len(labels)]
        for k in keys:
            cells = [fmt([r["per_type"].get(lab, 0.0) for r in groups[k]]) for lab in labels]
            per_label.append(f"| {k[0]} | {k[2]} | " + " | ".join(cells) + " |")
        per_label.append("")
    return "\n".join(lines + per_label)


def machine_info() -> Dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import spacy_transformers  # noqa: F401
    from importlib.metadata import version
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__, "spacy": spacy.__version__,
        "spacy_transformers": version("spacy-transformers"), "transformers": version("transformers"),
        "load_average_at_start": os.getloadavg(),
    }


def write_report(args, meta: Dict, runs: List[Dict]) -> str:
    table = summarise(runs, meta)
    meta = {**meta, "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "runs": runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str), encoding="utf8")
    b = meta["budgets"]
    notes = [
        f"# Accuracy: crf_ner vs softmax vs spaCy `ner`",
        "",
        f"{meta['machine']['cpu']}, {meta['machine']['cores']} cores (shared with other jobs), torch "
        f"{meta['machine']['torch']} ({meta['machine']['torch_threads']} threads), spaCy {meta['machine']['spacy']}, "
        f"spacy-transformers {meta['machine']['spacy_transformers']}; started {meta['started']}, finished "
        f"{meta['finished']}, wall {meta.get('wall_s', 0) / 60:.1f} min.",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Budgets (identical for every system of an encoder): cnn {b['cnn']['steps']} steps × "
        f"{b['cnn']['batch']} words, Adam 0.001, seeds {b['cnn']['seeds']}; trf (MiniLM-L6, "
        f"`{Path(str(args.transformer)).name}` offline) {b['trf']['steps']} steps × {b['trf']['batch']} padded words, "
        f"peak lr {b['trf']['lr']} (warmup {max(1, b['trf']['steps'] // 10)}, linear decay), seeds {b['trf']['seeds']}. "
        "accumulate_gradient 1, dropout 0.1, the last model is evaluated. "
        f"WikiANN-en: first {args.train_sents} sentences of train, first {args.eval_sents} of test; "
        "WNUT-17: all of train, dev (at most --eval-sents). 10 sentences a document. "
        "F1/P/R: spaCy's NER scorer (exact span and label), ×100, mean ± sample std over seeds "
        "(no ± where 1 seed). ECE: 10-bin expected calibration error of `doc.spans['crf_ner']` "
        "entity probabilities against exact-match correctness on the eval split. Invalid seqs: "
        "decoded tag sequences (documents) that break BILUO, per seed, repaired spaCy's IOB way "
        "(an I- that continues nothing starts an entity) before scoring. "
        "train s = init + training wall time (CPU shared, so only roughly comparable).",
        "",
        table,
    ]
    text = "\n".join(notes) + "\n"
    out.with_suffix(".md").write_text(text, encoding="utf8")
    return table


# -- main -------------------------------------------------------------------------------------

def parse_seeds(text: str) -> Dict[str, int]:
    if ":" not in text:
        return {"cnn": int(text), "trf": int(text)}
    seeds = {}
    for part in text.split(","):
        enc, n = part.split(":")
        seeds[enc.strip()] = int(n)
    return seeds


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None, help="default: ../shared/data beside the project")
    p.add_argument("--encoders", default="cnn,trf")
    p.add_argument("--datasets", default="wikiann,wnut17")
    p.add_argument("--systems", default=",".join(ALL_SYSTEMS))
    p.add_argument("--seeds", default=None, help=f"N, or per encoder like cnn:3,trf:1 (default {DEFAULTS['seeds']})")
    p.add_argument("--train-sents", type=int, default=None, help="WikiANN train sentences (first N)")
    p.add_argument("--eval-sents", type=int, default=None, help="eval sentences (first N of the eval split)")
    p.add_argument("--steps-cnn", type=int, default=None)
    p.add_argument("--steps-trf", type=int, default=None)
    p.add_argument("--batch-cnn", type=int, default=None, help="words a batch")
    p.add_argument("--batch-trf", type=int, default=None, help="padded words a batch")
    p.add_argument("--lr-trf", type=float, default=None, help="peak learning rate for the transformer runs")
    p.add_argument("--transformer", default=None, help="HF name or dir (default: the offline MiniLM)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "accuracy"), help="output stem (.json, .md)")
    p.add_argument("--work-dir", type=Path, default=None, help="converted corpora (default: a temp dir)")
    p.add_argument("--quick", action="store_true", help="a tiny run, to check the script")
    p.add_argument("--resume", action="store_true", help="skip the runs already in OUT.partial.jsonl")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from OUT.partial.jsonl")
    args = p.parse_args(argv)
    for key, value in {**DEFAULTS, **(QUICK if args.quick else {})}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.data_dir = (args.data_dir or ROOT.parent / "shared" / "data").resolve()
    args.work_dir = (args.work_dir or Path(tempfile.gettempdir()) / "crf_ner_accuracy").resolve()
    if args.quick and args.out == p.get_default("out"):  # a check, not a result: keep it out of bench/results
        args.out = str(args.work_dir / "accuracy_quick")
    if args.transformer is None:
        from find_transformer import find_transformer
        args.transformer = find_transformer()
    args.frozen_dir = args.work_dir / "frozen_transformer"
    encoders = [e for e in args.encoders.split(",") if e]
    datasets = [d for d in args.datasets.split(",") if d]
    systems = [s for s in args.systems.split(",") if s]
    for name, given, allowed in (("encoder", encoders, CONFIGS), ("dataset", datasets, DATASETS),
                                 ("system", systems, ALL_SYSTEMS)):
        bad = [x for x in given if x not in allowed]
        if bad:
            p.error(f"unknown {name}(s) {bad}; choose from {list(allowed)}")
    seeds = parse_seeds(args.seeds)
    partial = Path(args.out + ".partial.jsonl")
    command = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]))] + (argv if argv is not None else sys.argv[1:]))

    started = datetime.datetime.now(datetime.timezone.utc)
    done: List[Dict] = []
    if (args.resume or args.report_only) and partial.is_file():
        done = [json.loads(line) for line in partial.read_text().splitlines() if line.strip()]
    elif partial.exists():
        partial.unlink()
    write_peer_configs()
    meta: Dict[str, Any] = {
        "command": command, "started": started.isoformat(timespec="seconds"), "machine": machine_info(),
        "budgets": {
            "cnn": {"steps": args.steps_cnn, "batch": args.batch_cnn, "batch_unit": "words", "seeds": seeds.get("cnn", 0), "lr": 0.001},
            "trf": {"steps": args.steps_trf, "batch": args.batch_trf, "batch_unit": "padded words", "seeds": seeds.get("trf", 0),
                    "lr": args.lr_trf, "warmup": max(1, args.steps_trf // 10)},
            "train_sents_wikiann": args.train_sents, "eval_sents": args.eval_sents,
            "sentences_per_doc": N_SENTS_PER_DOC, "accumulate_gradient": 1,
        },
        "data": {ds: prepare_data(args, ds) for ds in datasets},
        "transformer": str(args.transformer), "data_dir": str(args.data_dir),
        "peer_configs": [str(PEER_DIR / f"ner_{e}.cfg") for e in CONFIGS],
        "softmax_repair": "spaCy's IOB reading (tags.repair): an I- that continues nothing starts an entity",
    }
    if args.report_only:
        first = min((r["started_at"] for r in done if r.get("started_at")), default=meta["started"])
        last = [r for r in done if r.get("started_at")]
        meta["started"] = first
        if last:  # the last run's start plus its own time
            end = datetime.datetime.fromisoformat(last[-1]["started_at"]) + datetime.timedelta(
                seconds=last[-1]["train_s"] + last[-1]["eval_s"])
            meta["wall_s"] = round((end - datetime.datetime.fromisoformat(first)).total_seconds(), 1)
        meta["command"] += "  (report rebuilt from the runs in " + str(partial.name) + ")"
        print(write_report(args, meta, done))
        return 0
    if "trf" in encoders and FROZEN & set(systems):
        assemble_frozen(args)
    # seed-major: every system's first seed before any second seed, so that a cut-short run
    # still covers every system
    plan = [(seed, enc, ds, system)
            for seed in range(max(seeds.get(e, 0) for e in encoders))
            for enc in encoders if seed < seeds.get(enc, 0)
            for ds in datasets
            for system in systems if enc == "trf" or system not in FROZEN]
    have = {(r["seed"], r["encoder"], r["dataset"], r["system"]) for r in done}
    t_start = time.perf_counter()
    for i, (seed, enc, ds, system) in enumerate(plan, 1):
        if (seed, enc, ds, system) in have:
            continue
        print(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {i}/{len(plan)} {enc} {ds} {system} seed {seed} ...", flush=True)
        run_started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        record = run_one(args, enc, ds, system, seed, meta["data"][ds])
        record["started_at"] = run_started
        print(f"    F1 {record['ents_f']:.4f}  P {record['ents_p']:.4f}  R {record['ents_r']:.4f}"
              + (f"  ECE {record['ece'] if record['ece'] is None else round(record['ece'], 4)}  invalid {record['invalid_sequences']}/{record['sequences']}" if "ece" in record else "")
              + f"  train {record['train_s']}s eval {record['eval_s']}s", flush=True)
        done.append(record)
        with partial.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
    # over a --resume, the wall time runs from the first run's start
    first = min((r["started_at"] for r in done if r.get("started_at")), default=meta["started"])
    meta["started"] = min(first, meta["started"])
    meta["wall_s"] = round((datetime.datetime.now(datetime.timezone.utc)
                            - datetime.datetime.fromisoformat(meta["started"])).total_seconds(), 1)
    print(write_report(args, meta, done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
