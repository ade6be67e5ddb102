"""Accuracy at convergence: crf_ner against a softmax head and spaCy's transition-based `ner`,
each trained with the same encoder, data, batches, schedule and stopping rule through spaCy's own
training loop (`init_nlp` + `spacy.training.loop.train`, what `spacy train` runs), the best model
on the selection dev set (model-best) then scored on the evaluation split with `nlp.evaluate`
(spaCy's NER scorer: entity-level micro P/R/F1 and per-label F1).

    python bench/accuracy.py --resume                 # run what is missing (hours), then report
    python bench/accuracy.py --report-only            # table + figure from the finished runs
    # the transformer at 3x the budget (is a system still learning when 800 steps end?), reported apart
    python bench/accuracy.py --encoders trf --datasets wikiann --systems crf,ner --seeds 1 --trf-max-steps 2400 --resume
    python bench/accuracy.py --calibrate-runs         # ece_calibrated and crf_scores for runs finished without them
    python bench/accuracy.py --quick                  # a few minutes, to check the script
    python bench/accuracy.py --encoders cnn --datasets wnut17 --systems crf,ner --seeds 1 --resume

Systems (`--systems`, comma-separated):
  crf             crf_ner as configured (BILUO, constraints on, crf_lr_multiplier 100)
  crf_m1          crf_ner with crf_lr_multiplier = 1
  softmax         crf_ner with use_crf = false, constrained = false (a per-token softmax; its
                  invalid tag sequences are counted, and read spaCy's IOB way: an I- that
                  continues nothing starts an entity)
  ner             spaCy's `ner` (TransitionBasedParser.v2, as `spacy init config -p ner` makes it)
                  on the same tok2vec / transformer and listener, generated from our config
  crf_frozen, softmax_frozen, ner_frozen
                  the same with the transformer frozen (trf only): only the head trains

Encoders: `cnn` = configs/crf_ner_cnn.cfg (hash-embed CNN tok2vec, no static vectors), `trf` =
configs/crf_ner_trf.cfg with the offline MiniLM (`spacy_crf_ner.runtime.find_transformer`).

Data (read from --data-dir, converted with scripts/convert.py, 10 sentences a document, into
--work-dir; nothing is copied into the repository):
  wikiann  train: all 20,000 sentences of wikiann-en/train; selection dev: wikiann-en/dev (all
           10,000 sentences for the CNN, the first --trf-dev-sents for the transformer, whose
           evaluation of all of dev would cost more than its training steps between evaluations);
           scored on all 10,000 sentences of wikiann-en/test.
  wnut17   scored on wnut17/dev, so model selection uses held-out train: the last
           WNUT_SELECTION_SENTS sentences of wnut17/train are the selection dev, the others train.

Protocol (identical for every system of an encoder; the per-encoder budgets are BUDGETS below and
stored in every run file): one batch a step (`accumulate_gradient = 1`) of a fixed size (words for
the CNN, padded words for the transformer: no compounding, so every system sees the same batches
for a seed), the config's optimizer (the CNN: Adam 0.001; the transformer: warmup_linear to the
budget's peak lr, warmup 10% of max_steps, linear decay to max_steps; with the transformer frozen,
the same schedule to FROZEN_HEAD_LR, as only the fresh heads train), the dev set evaluated every
`eval_frequency` steps, training stopped when dev F1 has not improved for `patience` steps or at
`max_steps`; the transformer's patience is at least 3 epochs of WikiANN, so that no run stops
sooner. The pipeline scored is model-best.

Each finished run is one file, bench/results/accuracy/runs/ENCODER-DATASET-SYSTEM-sSEED.json
(committed): scores, per-label F1, invalid sequences, train time, steps, the dev-F1-vs-step curve,
torch threads and load, and a 100-bin histogram of the predicted entities' confidences (count, sum
of confidence, number correct; correct = exact span and label) from which the 10-bin ECE is exact.
Every crf_ner run (crf, crf_m1, softmax) is then calibrated as a user would
(`CRFEntityRecognizer.calibrate`: temperature fitted on the run's selection dev set, never on the
scored split), and `ece_calibrated` is the 10-bin ECE on the scored split at that temperature
(`calibration_fit`: the fit). The model-best of every crf_ner run is kept under
bench/results/tmp/models/RUN (ignored); `--calibrate-runs` calibrates the runs finished before
calibration was part of a run, and records how far training moved the CRF's learned scores
(`crf_scores`) where a run predates that record. `--resume` skips the runs whose file exists (and refuses one made
under another protocol); `--report-only` renders bench/results/accuracy.{md,json,png} from the
run files.
"""
import argparse
import datetime
import gc
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
from common import (  # noqa: E402
    command_line, cpu_model, crf_params, crf_score_sizes, load_average, machine_info, ner_peer_config, read_sentences,
    set_dotted, set_torch_threads, threads_from_argv, write_report,
)

THREADS = threads_from_argv(sys.argv)

import numpy  # noqa: E402
import spacy  # noqa: E402
from spacy.scorer import Scorer  # noqa: E402
from spacy.tokens import Doc, DocBin  # noqa: E402
from spacy.training import Example  # noqa: E402
from spacy.training.initialize import init_nlp  # noqa: E402
from spacy.training.loop import train  # noqa: E402
from spacy.util import load_config  # noqa: E402
from thinc.api import Config  # noqa: E402


import spacy_crf_ner  # noqa: E402,F401  (registers the factory and architectures)
from spacy_crf_ner.calibration import entity_confidences_at, fit_temperature, held_out_entities  # noqa: E402
from spacy_crf_ner.convert import convert_file  # noqa: E402
from spacy_crf_ner.runtime import find_transformer  # noqa: E402
from spacy_crf_ner.scoring import expected_calibration_error  # noqa: E402
from spacy_crf_ner.tags import is_valid  # noqa: E402

CONFIGS = {"cnn": ROOT / "configs" / "crf_ner_cnn.cfg", "trf": ROOT / "configs" / "crf_ner_trf.cfg"}
PEER_DIR = ROOT / "bench" / "configs"
RESULTS = ROOT / "bench" / "results"
STEM = RESULTS / "accuracy"  # the report; its runs in STEM/runs
MODELS_DIR = RESULTS / "tmp" / "models"
ALL_SYSTEMS = ["crf", "crf_m1", "softmax", "ner", "crf_frozen", "softmax_frozen", "ner_frozen"]
FROZEN = {"crf_frozen", "softmax_frozen", "ner_frozen"}
NER_PEER = {"ner", "ner_frozen"}
DATASETS = ["wikiann", "wnut17"]
SPLIT_NAMES = {"wikiann": "test", "wnut17": "dev"}
# WNUT-17's dev split is the one scored, so model selection needs other held-out data: the last
# 500 of its 3,394 train sentences (15%), fixed, the same for every system and seed.
WNUT_SELECTION_SENTS = 500
N_SENTS_PER_DOC = 10
# Per encoder, the same for every system. CNN WikiANN: 1,000-word batches, about 160 steps an
# epoch; WNUT-17 about 55. Transformer WikiANN: 2,000 padded words, about 100 steps an epoch, so
# a patience of 300 steps keeps every run training for at least 3 epochs.
BUDGETS = {
    "cnn": {"batch": 1000, "batch_unit": "words", "max_steps": 8000, "patience": 1000, "eval_frequency": 200,
            "lr": 0.001, "schedule": "constant (Adam)"},
    "trf": {"batch": 2000, "batch_unit": "padded words", "max_steps": 800, "patience": 300, "eval_frequency": 50,
            "lr": 1e-4, "schedule": "warmup_linear: warmup 10% of max_steps, linear decay to max_steps"},
}
# A frozen transformer leaves only the heads to train, from scratch, so they get the CNN's rate
# (spaCy's default Adam rate) rather than the rate for fine-tuning a pretrained encoder: at 1e-4,
# crf_frozen's dev F1 was 9.7 after 450 of 800 steps (WikiANN-en, seed 0, 2026-11-30; stopped
# there), where fine-tuned crf_ner's was 74.9.
FROZEN_HEAD_LR = 1e-3
QUICK_BUDGETS = {
    "cnn": {"max_steps": 60, "patience": 40, "eval_frequency": 20},
    "trf": {"max_steps": 6, "patience": 4, "eval_frequency": 2, "batch": 500},
}
QUICK_SENTS = 300  # --quick: the first N sentences of every split
TRF_DEV_SENTS = 2000
HISTOGRAM_BINS = 100  # 10-bin ECE is exact from it: every 10-bin bin is 10 whole 100-bin bins
ECE_BINS = 10
SPREAD_SEEDS = 3  # the seeds the issue asks for per cell


# -- data -------------------------------------------------------------------------------------

def to_docbin(sentences: List[List[str]], out: Path, source: Path, first: int) -> Dict[str, Any]:
    """Convert ``sentences`` (raw lines) to a DocBin at ``out``; what it holds, for the record."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".txt")
    tmp.write_text("\n\n".join("\n".join(s) for s in sentences) + "\n", encoding="utf8")
    summary = convert_file(tmp, out, n_sents=N_SENTS_PER_DOC)
    tmp.unlink()
    return {"file": str(source), "first_sentence": first, "sentences": summary["sentences"],
            "tokens": summary["tokens"], "documents": summary["documents"],
            "entities": sum(summary["entities"].values()), "path": str(out)}


def prepare_data(args, dataset: str, encoder: str) -> Dict[str, Dict[str, Any]]:
    """train / select (the dev set model-best is chosen on) / eval (the split scored)."""
    d = args.data_dir
    work = args.work_dir / dataset
    cut = QUICK_SENTS if args.quick else None

    def part(name: str, src: Path, start: int = 0, stop: Optional[int] = None) -> Dict[str, Any]:
        if not src.is_file():
            raise SystemExit(f"{src} not found: pass --data-dir (the folder holding wikiann-en/ and wnut17/)")
        sentences = read_sentences(src)[start:stop][:cut]
        return to_docbin(sentences, work / f"{name}-{start}-{len(sentences)}.spacy", src, start)

    if dataset == "wikiann":
        dev_stop = args.trf_dev_sents if encoder == "trf" else None
        return {"train": part("train", d / "wikiann-en/train.iob"),
                "select": part("select", d / "wikiann-en/dev.iob", 0, dev_stop),
                "eval": part("eval", d / "wikiann-en/test.iob")}
    train_file = d / "wnut17/train.conll"
    n_train = len(read_sentences(train_file))
    return {"train": part("train", train_file, 0, n_train - WNUT_SELECTION_SENTS),
            "select": part("select", train_file, n_train - WNUT_SELECTION_SENTS),
            "eval": part("eval", d / "wnut17/dev.conll")}


# -- configs ----------------------------------------------------------------------------------

def write_peer_configs() -> None:
    """bench/configs/ner_{cnn,trf}.cfg: the generated peers, for reading (regenerated each run)."""
    PEER_DIR.mkdir(parents=True, exist_ok=True)
    for encoder, path in CONFIGS.items():
        peer = ner_peer_config(load_config(path, interpolate=False), encoder)
        header = (f"# Generated by bench/accuracy.py from {path.relative_to(ROOT)}: crf_ner replaced by "
                  "spaCy's ner (as `spacy init config -p ner`). Do not edit; edit the source config.\n")
        (PEER_DIR / f"ner_{encoder}.cfg").write_text(header + peer.to_str(), encoding="utf8")


def budget_for(budgets: Dict[str, Dict], encoder: str, system: str) -> Dict[str, Any]:
    """One system's budget: its encoder's, with the heads' rate when the transformer is frozen."""
    budget = budgets[encoder]
    return {**budget, "lr": FROZEN_HEAD_LR} if system in FROZEN else budget


def system_config(args, encoder: str, system: str, seed: int, data: Dict, budget: Dict) -> Tuple[Config, Dict]:
    cfg = load_config(CONFIGS[encoder], interpolate=False)
    if system in NER_PEER:
        cfg = ner_peer_config(cfg, encoder)
    overrides: Dict[str, Any] = {
        "paths.train": data["train"]["path"],
        "paths.dev": data["select"]["path"],
        "system.seed": seed,
        "training.seed": seed,
        "training.max_steps": budget["max_steps"],
        "training.max_epochs": 0,
        "training.patience": budget["patience"],
        "training.eval_frequency": budget["eval_frequency"],
        "training.accumulate_gradient": 1,
        "training.batcher.size": budget["batch"],  # fixed: the same batches for every system
        "training.logger": {"@loggers": "crf_ner_bench.CurveLogger.v1"},
    }
    if encoder == "cnn":
        overrides["paths.vectors"] = None  # include_static_vectors is false anyway
        overrides["training.optimizer.learn_rate"] = budget["lr"]
    else:
        overrides["paths.transformer"] = str(args.transformer)
        overrides["training.optimizer.learn_rate.warmup_steps"] = max(1, budget["max_steps"] // 10)
        overrides["training.optimizer.learn_rate.total_steps"] = budget["max_steps"]
        overrides["training.optimizer.learn_rate.initial_rate"] = budget["lr"]
    if "crf_ner" in cfg["components"]:
        # dev selection needs no entity probabilities; the final evaluation switches them on
        overrides["components.crf_ner.confidences"] = False
    if system == "crf_m1":
        overrides["components.crf_ner.crf_lr_multiplier"] = 1.0
    elif system.startswith("softmax"):
        overrides["components.crf_ner.use_crf"] = False
        overrides["components.crf_ner.constrained"] = False
    if system in FROZEN:
        overrides["components.transformer"] = {"source": str(args.frozen_dir)}
        overrides["training.frozen_components"] = ["transformer"]
        overrides["training.annotating_components"] = ["transformer"]
    for key, value in overrides.items():
        set_dotted(cfg, key, value)
    return Config(cfg), overrides


def assemble_frozen(args) -> None:
    """The untrained MiniLM pipeline the frozen systems source their transformer from."""
    if (args.frozen_dir / "config.cfg").is_file():
        return
    subprocess.run(
        [sys.executable, "-m", "spacy", "assemble", str(CONFIGS["trf"]), str(args.frozen_dir),
         "--nlp.pipeline", '["transformer"]', "--paths.transformer", str(args.transformer)],
        check=True, capture_output=True,
    )


# -- the dev curve, through spaCy's logger registry -------------------------------------------

CURVE: List[Dict[str, Any]] = []  # the running run's dev evaluations, filled by CurveLogger


@spacy.registry.loggers("crf_ner_bench.CurveLogger.v1")
def curve_logger():
    """Records every dev evaluation (step, epoch, dev F1, words, seconds) into CURVE and prints
    one line per evaluation."""
    def setup(nlp, stdout=sys.stdout, stderr=sys.stderr):
        def log_step(info: Optional[Dict[str, Any]]) -> None:
            if info is None:
                return
            CURVE.append({"step": info["step"], "epoch": info["epoch"], "dev_f": info["score"],
                          "words": info["words"], "seconds": info["seconds"]})
            print(f"      step {info['step']:>5}  epoch {info['epoch']:>3}  dev F1 {info['score']:.4f}  "
                  f"{info['seconds']:>5}s", flush=True)

        return log_step, lambda: None

    return setup


# -- one run ----------------------------------------------------------------------------------

class CapturingScorer(Scorer):
    """spaCy's Scorer, keeping the examples nlp.evaluate scored (it annotates copies)."""

    def score(self, examples, **kwargs):
        self.examples = list(examples)
        return super().score(self.examples, **kwargs)


def run_id(encoder: str, dataset: str, system: str, seed: int) -> str:
    return f"{encoder}-{dataset}-{system}-s{seed}"


def confidence_histogram(confidences: List[float], correct: List[bool]) -> Dict[str, List]:
    """Per bin ``[b/100, (b+1)/100)`` (the last also holds 1.0): count, sum of confidence, correct."""
    count, total, hits = [0] * HISTOGRAM_BINS, [0.0] * HISTOGRAM_BINS, [0] * HISTOGRAM_BINS
    for p, ok in zip(confidences, correct):
        b = min(int(p * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)
        count[b] += 1
        total[b] += p
        hits[b] += int(ok)
    return {"n_bins": HISTOGRAM_BINS, "count": count, "confidence_sum": total, "correct": hits}


def gold_tokenised(nlp, path: str) -> List[Example]:
    """The corpus at ``path`` as examples whose predicted docs carry the gold tokenisation (and
    nothing else), so that every system is scored on the same tokens."""
    return [Example(Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc]), doc)
            for doc in DocBin().from_disk(path).get_docs(nlp.vocab)]


# Simulated outcomes for the ECE a perfectly calibrated model would show on the same confidences:
# enough draws that the mean moves in the fourth decimal only.
NOISE_FLOOR_DRAWS = 200
# What calibrate_run adds to a run file: a run made with fewer (an older version) is recalibrated.
CALIBRATION_KEYS = {"ece_calibrated", "ece_crossfit", "ece_noise_floor", "ece_p_calibrated", "calibration_fit"}


CRF_SCORES = "crf_scores"


def trained_crf_scores(ner) -> Optional[Dict[str, float]]:
    """How far training moved a crf_ner's learned CRF scores from their initial 0
    (:func:`common.crf_score_sizes`). None for the softmax head (``use_crf`` false: its scores stay 0)."""
    return crf_score_sizes(crf_params(ner.crf)) if ner.cfg["use_crf"] else None


def calibrated_model_eces(confidences: numpy.ndarray, seed: int = 0) -> numpy.ndarray:
    """``(NOISE_FLOOR_DRAWS,)`` the 10-bin ECE of ``confidences`` against outcomes drawn as
    Bernoulli(confidence), i.e. of a perfectly calibrated model with these confidences: what a
    finite number of entities shows as ECE by chance alone (large for WNUT-17's few hundred)."""
    rng = numpy.random.default_rng(seed)
    return numpy.asarray([
        expected_calibration_error(confidences, rng.random(len(confidences)) < confidences, n_bins=ECE_BINS)["ece"]
        for _ in range(NOISE_FLOOR_DRAWS)
    ])


def calibrate_run(nlp, data: Dict) -> Dict[str, Any]:
    """Calibrate a crf_ner run's model-best as a user would (``CRFEntityRecognizer.calibrate``)
    on the run's selection dev set, the data model-best was chosen on, never the split scored;
    then the 10-bin ECE of the scored split's predicted entities at the fitted temperature
    (``ece_calibrated``) and their mean confidence there (``mean_confidence_calibrated``, to read
    against the run's precision: below it, the temperature fitted on the selection set leaves the
    scored split underconfident). ``calibration_fit`` keeps the fit's own numbers (the selection
    set's precision as ``accuracy``, its ECE and mean confidence before and after) and the scored split's
    ECE recomputed at the old temperature (float64; the run's ``ece`` is from the stored float32
    scores, so the two may differ by an entity changing bin).

    ``ece_noise_floor``: the mean ECE a perfectly calibrated model with the calibrated confidences
    would show on this many entities, by chance alone; ``ece_p_calibrated``: the share of such
    models whose ECE is at least ``ece_calibrated`` (small: the calibrated model is worse than
    chance explains).

    ``ece_crossfit``: the scored split's ECE when the temperature is fitted on data of its own
    distribution, though never on the entities scored: its docs in two halves (even and odd
    positions), each scored at the temperature fitted on the other. Where it is far below
    ``ece_calibrated``, the selection set's distribution differs from the scored split's."""
    ner = nlp.get_pipe("crf_ner")
    ner.cfg["overwrite_ents"] = False
    tags, scheme = ner.tags, ner.cfg["scheme"]
    fit = ner.calibrate(gold_tokenised(nlp, data["select"]["path"]), nlp=nlp)
    scored = gold_tokenised(nlp, data["eval"]["path"])
    halves = [held_out_entities(ner, scored[half::2], nlp=nlp) for half in (0, 1)]

    correct = [ok for batches in halves for batch in batches for ok in batch.correct]

    def confidences_at(temperatures: List[float]) -> numpy.ndarray:
        """``(N,)`` the scored split's entity probabilities, half ``i`` at ``temperatures[i]``."""
        return numpy.concatenate([entity_confidences_at(ner.crf, batches, tags, scheme, t)
                                  for batches, t in zip(halves, temperatures)])

    def ece_of(confidences: numpy.ndarray) -> float:
        return expected_calibration_error(confidences, correct, n_bins=ECE_BINS)["ece"]

    def ece_at(temperatures: List[float]) -> float:
        return ece_of(confidences_at(temperatures))

    crossfit = [fit_temperature(ner.crf, batches, tags, scheme)["temperature"] for batches in halves]
    calibrated_confidences = confidences_at([fit["temperature"]] * 2)
    calibrated = ece_of(calibrated_confidences)
    chance = calibrated_model_eces(calibrated_confidences)
    return {
        "ece_calibrated": calibrated,
        "mean_confidence_calibrated": float(calibrated_confidences.mean()),
        "ece_noise_floor": float(chance.mean()),
        "ece_p_calibrated": float((chance >= calibrated).mean()),
        "ece_crossfit": ece_at(crossfit[::-1]),
        "calibration_fit": {
            **{k: fit[k] for k in ("temperature", "previous_temperature", "at_bound", "n_entities", "accuracy",
                                   "ece_before", "ece_after", "mean_confidence_before", "mean_confidence_after")},
            "fitted_on": {k: v for k, v in data["select"].items() if k in ("file", "first_sentence", "sentences")}
                         or data["select"]["path"],
            "ece_at_previous_temperature": ece_at([fit["previous_temperature"]] * 2),
            "crossfit_temperatures": crossfit,
        },
    }


def claim_run_dir(out_dir: Path) -> Path:
    """``out_dir`` emptied of an interrupted run's leftovers and marked as this process's
    (``owner.pid``). Refuses a folder whose owner still runs: the same run started twice would
    otherwise delete the first one's model-best before it is scored."""
    owner = out_dir / "owner.pid"
    if owner.is_file():
        pid = int(owner.read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pass
        else:
            raise RuntimeError(f"{out_dir} belongs to process {pid}, which still runs: is this run started twice?")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    owner.write_text(str(os.getpid()))
    return out_dir


def run_one(args, encoder: str, dataset: str, system: str, seed: int, data: Dict, budget: Dict) -> Dict[str, Any]:
    config, overrides = system_config(args, encoder, system, seed, data, budget)
    rid = run_id(encoder, dataset, system, seed)
    keep = system not in NER_PEER  # crf_ner runs: model-best kept for calibration
    out_dir = claim_run_dir((args.models_dir if keep else args.work_dir / "models") / rid)
    load_start = load_average()
    CURVE.clear()
    t0 = time.perf_counter()
    nlp = init_nlp(config)
    train(nlp, out_dir, stdout=sys.stdout, stderr=sys.stderr)
    t_train = time.perf_counter() - t0
    curve = list(CURVE)
    shutil.rmtree(out_dir / "model-last", ignore_errors=True)
    del nlp
    gc.collect()
    nlp = spacy.load(out_dir / "model-best")
    if "crf_ner" in nlp.pipe_names:
        nlp.get_pipe("crf_ner").cfg["confidences"] = True
    examples = gold_tokenised(nlp, data["eval"]["path"])
    t1 = time.perf_counter()
    scorer = CapturingScorer(nlp=nlp)
    scores = nlp.evaluate(examples, scorer=scorer)
    examples = scorer.examples  # nlp.evaluate's copies, with the annotated predicted docs
    t_eval = time.perf_counter() - t1
    best = max(curve, key=lambda c: (c["dev_f"], -c["step"]))
    record: Dict[str, Any] = {
        "encoder": encoder, "dataset": dataset, "system": system, "seed": seed,
        "split": SPLIT_NAMES[dataset],
        "ents_f": scores["ents_f"], "ents_p": scores["ents_p"], "ents_r": scores["ents_r"],
        "per_type": {label: v["f"] for label, v in (scores.get("ents_per_type") or {}).items()},
        "steps": curve[-1]["step"], "epochs": curve[-1]["epoch"], "best_step": best["step"],
        "best_dev_f": best["dev_f"], "stopped_by": "max_steps" if curve[-1]["step"] >= budget["max_steps"] else "patience",
        "curve": curve, "train_s": round(t_train, 1), "eval_s": round(t_eval, 1),
        "torch_threads": args.torch_threads, "load_start": load_start,
        "load_end": load_average(),
        # relative to the repository, so run files stay valid in any checkout; a --work-dir outside
        # it (--quick) keeps its absolute path (ROOT / an absolute path is that path)
        "model_best": str((out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir) / "model-best")
        if keep else None,
        "overrides": {k: v for k, v in overrides.items() if not k.startswith("paths.")},
    }
    if "crf_ner" in nlp.pipe_names:
        ner = nlp.get_pipe("crf_ner")
        docs = [eg.predicted for eg in examples]
        # the encoder's output is on the docs already (doc.tensor / doc._.trf_data), so the
        # listener reads it back: this reruns the head only, without the probabilities, and
        # without reading its own entities on the docs as preset ones
        ner.cfg["confidences"], ner.cfg["overwrite_ents"] = False, True
        paths = ner.predict(docs).paths
        tags = ner.tags
        record["invalid_sequences"] = int(sum(not is_valid([tags[i] for i in p], ner.cfg["scheme"]) for p in paths))
        record["sequences"] = len(paths)
        conf, correct = [], []
        for eg in examples:
            gold = {(e.start, e.end, e.label_) for e in eg.reference.ents}
            group = eg.predicted.spans[ner.spans_key]
            for span, p in zip(group, group.attrs["scores"]):
                if not 0.0 <= p <= 1.0 + 1e-6:
                    raise ValueError(f"{rid}: entity probability {p} of {span.text!r} is not in [0, 1]")
                conf.append(min(float(p), 1.0))  # float32 rounding only, checked above
                correct.append((span.start, span.end, span.label_) in gold)
        cal = expected_calibration_error(conf, correct, n_bins=ECE_BINS)
        record["ece"] = cal["ece"]
        record["mce"] = cal["mce"]
        record["calibration"] = {k: cal[k] for k in ("n_entities", "accuracy", "mean_confidence")}
        record["confidence_histogram"] = confidence_histogram(conf, correct)
        record.update(calibrate_run(nlp, data))
        record[CRF_SCORES] = trained_crf_scores(ner)
    del nlp, examples
    gc.collect()
    if not keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    return record


# -- report -----------------------------------------------------------------------------------

def mean_sd(values: List[Optional[float]]) -> Tuple[float, Optional[float], int]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), None, 0
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None), len(values)


def fmt(values: List[Optional[float]], scale: float = 100.0, digits: int = 1) -> str:
    m, s, n = mean_sd(values)
    if not n:
        return "–"
    return f"{m * scale:.{digits}f}" + (f" ± {s * scale:.{digits}f}" if s is not None else "")


def seeds_fmt(values: List[float], n: int) -> str:
    """ECE mean ± sd, saying how many of the cell's ``n`` seeds have it (a calibration pass may lag)."""
    if not values:
        return "–"
    return fmt(values, 1.0, 3) + ("" if len(values) == n else f" ({len(values)} seeds)")


def p_values(runs: List[Dict]) -> List[str]:
    """Per seed, the share of perfectly calibrated models with an ECE at least the calibrated one."""
    return [f"{r['ece_p_calibrated']:.2f}" for r in runs if "ece_p_calibrated" in r]


def steps_to_fraction(curve: List[Dict], fraction: float = 0.9) -> Optional[int]:
    """The first evaluated step whose dev F1 reaches ``fraction`` of the run's best dev F1."""
    best = max(c["dev_f"] for c in curve)
    if best <= 0:
        return None
    return next(c["step"] for c in curve if c["dev_f"] >= fraction * best)


def load_runs(runs_dir: Path) -> List[Dict]:
    return [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*.json"))]


def cell_order(key: Tuple[str, str, str]) -> Tuple[int, int, int]:
    return (["cnn", "trf"].index(key[0]), DATASETS.index(key[1]), ALL_SYSTEMS.index(key[2]))


def summarise(runs: List[Dict]) -> Tuple[str, List[Dict]]:
    groups: Dict[Tuple, List[Dict]] = {}
    for r in runs:
        groups.setdefault((r["encoder"], r["dataset"], r["system"]), []).append(r)
    rows, lines = [], [
        "| encoder | data → scored split | system | seeds | F1 | P | R | ECE before | ECE after | ECE after (scored split, cross-fitted) | ECE of a calibrated model (noise floor) | invalid seqs | steps to 90% | steps (best) | train min |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in sorted(groups, key=cell_order):
        rs = sorted(groups[key], key=lambda r: r["seed"])
        enc, ds, system = key
        n = len(rs)
        seeds = f"{n}" + ("" if n >= SPREAD_SEEDS else f" of {SPREAD_SEEDS}")
        inv = (fmt([r["invalid_sequences"] for r in rs], 1.0, 0) + f" of {rs[0]['sequences']}"
               if "invalid_sequences" in rs[0] else "–")
        ece = fmt([r.get("ece") for r in rs], 1.0, 3) if "ece" in rs[0] else "–"
        ece_after, ece_crossfit, ece_floor = (seeds_fmt([r[key] for r in rs if key in r], n)
                                              for key in ("ece_calibrated", "ece_crossfit", "ece_noise_floor"))
        ps = p_values(rs)
        if ps:
            ece_floor += "; p " + ", ".join(ps)
        to90 = fmt([steps_to_fraction(r["curve"]) for r in rs], 1.0, 0)
        steps = fmt([r["steps"] for r in rs], 1.0, 0) + " (" + fmt([r["best_step"] for r in rs], 1.0, 0) + ")"
        lines.append(
            f"| {enc} | {ds} → {rs[0]['split']} | {system} | {seeds} | {fmt([r['ents_f'] for r in rs])} | "
            f"{fmt([r['ents_p'] for r in rs])} | {fmt([r['ents_r'] for r in rs])} | {ece} | {ece_after} | {ece_crossfit} | {ece_floor} | {inv} | "
            f"{to90} | {steps} | {fmt([r['train_s'] for r in rs], 1 / 60, 0)} |")
        rows.append({"encoder": enc, "dataset": ds, "system": system, "seeds": [r["seed"] for r in rs],
                     **{k: mean_sd([r.get(k) for r in rs])[:2] for k in ("ents_f", "ents_p", "ents_r", "ece", "ece_calibrated", "ece_crossfit", "ece_noise_floor", "train_s")}})
    per_label = ["", "Per-label F1 (mean ± sd over seeds):", ""]
    for ds in DATASETS:
        keys = [k for k in sorted(groups, key=cell_order) if k[1] == ds]
        if not keys:
            continue
        labels = sorted({lab for k in keys for r in groups[k] for lab in r["per_type"]})
        per_label += [f"**{ds}**", "", "| encoder | system | seeds | " + " | ".join(labels) + " |",
                      "|---|---|---:|" + "---:|" * len(labels)]
        for k in keys:
            cells = [fmt([r["per_type"].get(lab, 0.0) for r in groups[k]]) for lab in labels]
            per_label.append(f"| {k[0]} | {k[2]} | {len(groups[k])} | " + " | ".join(cells) + " |")
        per_label.append("")
    crf_sizes = ["How far training moved the learned CRF scores from their initial 0 (mean ± sd over the seeds "
                 "whose model-best is kept; the runs at commit e9337a9 started from uniform(−0.1, 0.1), whose mean "
                 "|score| is 0.05): mean and max |transition score| over the moves the scheme allows, mean |start "
                 "and end score|.", "",
                 "| encoder | data | system | seeds | mean \\|transition\\| | max \\|transition\\| | mean \\|start, end\\| |",
                 "|---|---|---|---:|---:|---:|---:|"]
    for key in sorted(groups, key=cell_order):
        sizes = [r[CRF_SCORES] for r in groups[key] if r.get(CRF_SCORES)]
        if sizes:
            crf_sizes.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(sizes)} | " + " | ".join(
                fmt([size[k] for size in sizes], 1.0, 3)
                for k in ("transitions_abs_mean", "transitions_abs_max", "start_end_abs_mean")) + " |")
    return "\n".join(lines + per_label + crf_sizes + ["", calibration_table(groups)]), rows


def calibration_table(groups: Dict[Tuple, List[Dict]]) -> str:
    """The calibrated cells (mean ± sd over the seeds a calibration pass has reached): the sentences
    the temperature ``T`` was fitted on, the entities predicted on the scored split, and the ECEs of
    the summary table."""
    lines = ["Calibration of the crf_ner runs (`calibrate()` on the selection dev set, scored on the scored "
             "split; entities: predicted on the scored split):", "",
             "| encoder | calibrated on → scored | system | seeds | entities | T | ECE as trained | **ECE calibrated** "
             "| cross-fitted | calibrated model, by chance (p per seed) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (enc, ds, system), runs in sorted(groups.items(), key=lambda kv: cell_order(kv[0])):
        rs = sorted((r for r in runs if "calibration_fit" in r), key=lambda r: r["seed"])
        if not rs:
            continue
        fitted = rs[0]["calibration_fit"]["fitted_on"]
        first = fitted["first_sentence"]
        source = f"{ds} {Path(fitted['file']).stem}[{first}:{first + fitted['sentences']}] → {rs[0]['split']}"
        entities = statistics.mean(r["calibration"]["n_entities"] for r in rs)
        lines.append(
            f"| {enc} | {source} | {system} | {len(rs)} | {entities:,.0f} | "
            f"{fmt([r['calibration_fit']['temperature'] for r in rs], 1.0, 2)} | "
            + " | ".join(fmt([r[k] for r in rs], 1.0, 3) for k in ("ece", "ece_calibrated", "ece_crossfit", "ece_noise_floor"))
            + f" ({', '.join(p_values(rs))}) |")
    return "\n".join(lines)


def package_commit() -> Optional[str]:
    """The commit of the code a run trains with, ``-dirty`` if the package, the configs or this
    script differ from it (the reports this script re-renders do not count)."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "spacy_crf_ner", "configs", "bench/accuracy.py", "bench/common.py")
        return git("rev-parse", "--short", "HEAD") + ("-dirty" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def headline(runs: List[Dict]) -> str:
    """Entity F1 per (encoder, dataset) and system: mean ± sd (seeds), the README's table. A cell
    whose runs trained on different commits of the package is marked †."""
    systems = [s for s in ALL_SYSTEMS if any(r["system"] == s for r in runs)]
    panels = sorted({(r["encoder"], r["dataset"]) for r in runs}, key=lambda k: (["cnn", "trf"].index(k[0]), DATASETS.index(k[1])))
    lines = ["| encoder | data → scored split | " + " | ".join(systems) + " |", "|---|---|" + "---:|" * len(systems)]
    for enc, ds in panels:
        cells = []
        for system in systems:
            rs = [r for r in runs if (r["encoder"], r["dataset"], r["system"]) == (enc, ds, system)]
            mixed = len({r.get("package_commit") for r in rs}) > 1
            cells.append(f"{fmt([r['ents_f'] for r in rs])} ({len(rs)}{', †' if mixed else ''})" if rs else "")
        lines.append(f"| {enc} | {ds} → {SPLIT_NAMES[ds]} | " + " | ".join(cells) + " |")
    if any("†" in line for line in lines):
        lines.append("\n† the cell's seeds trained on different commits of the package (`package_commit` in the run files).")
    return "\n".join(lines)


def plot_curves(runs: List[Dict], path: Path) -> None:
    """Dev F1 against step, one line per system (mean over its seeds, at the steps all share), one
    panel per encoder and dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["encoder"], r["dataset"]) for r in runs}, key=lambda k: (["cnn", "trf"].index(k[0]), DATASETS.index(k[1])))
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 4.5 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (enc, ds) in zip(axes.flat, panels):
        for system in ALL_SYSTEMS:
            rs = [r for r in runs if (r["encoder"], r["dataset"], r["system"]) == (enc, ds, system)]
            if not rs:
                continue
            # a run that stopped early contributes its last value after it stopped (its model-best
            # is not worse than that); the line ends where the longest run ends
            longest = max(rs, key=lambda r: len(r["curve"]))["curve"]
            steps = [c["step"] for c in longest]
            ys = []
            for i in range(len(steps)):
                vals = [r["curve"][min(i, len(r["curve"]) - 1)]["dev_f"] for r in rs]
                ys.append(100 * statistics.mean(vals))
            ax.plot(steps, ys, label=f"{system} ({len(rs)} seed{'s' if len(rs) > 1 else ''})")
        ax.set_title(f"{enc}, {ds}: dev F1 (selection set)")
        ax.set_xlabel("step")
        ax.set_ylabel("entity F1")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(runs_dir: Path, stem: Path, command: str) -> str:
    """``stem``.md / .json / .png from the run files in ``runs_dir``."""
    runs = load_runs(runs_dir)
    if not runs:
        raise SystemExit(f"no finished runs in {runs_dir}")
    table, rows = summarise(runs)
    plot_curves(runs, stem.with_suffix(".png"))
    protocols = {f"{r['encoder']}-{r['dataset']}" + (" (frozen)" if r["system"] in FROZEN else ""): r["protocol"]
                 for r in runs}
    data_lines = []
    for key, proto in sorted(protocols.items()):
        b, d = proto["budget"], proto["data"]
        data_lines.append(
            f"- **{key}**: train {d['train']['sentences']} sentences, selection dev {d['select']['sentences']} "
            f"({Path(d['select']['file']).name} from sentence {d['select']['first_sentence']}), scored on "
            f"{d['eval']['sentences']} ({Path(d['eval']['file']).name}); batches of {b['batch']} {b['batch_unit']}, "
            f"lr {b['lr']:g} ({b['schedule']}), dev evaluated every {b['eval_frequency']} steps, patience "
            f"{b['patience']} steps, at most {b['max_steps']} steps.")
    threads = sorted({r["torch_threads"] for r in runs})
    loads = [r["load_start"][0] for r in runs] + [r["load_end"][0] for r in runs]
    first = min(r["started_at"] for r in runs)
    last = max(r["finished_at"] for r in runs)
    body = "\n".join([
        f"{len(runs)} finished runs, {first} to {last}; torch threads {threads}; 1-minute load average "
        f"at the runs' starts and ends {min(loads):.1f}–{max(loads):.1f} (the machine is shared, so train "
        "times compare only roughly).",
        "",
        "Protocol (the same for every system of an encoder and dataset; see `bench/accuracy.py`): train "
        "until dev F1 stops improving (spaCy's `training.patience`) or `max_steps`, keep the best model "
        "on the selection dev set (model-best), score it on the scored split. "
        "F1/P/R: spaCy's NER scorer (exact span and label) ×100, mean ± sample sd over the seeds "
        f"(no ± with 1 seed; `seeds` says how many of the {SPREAD_SEEDS} planned a cell holds). ECE before: "
        "10-bin expected calibration error of the crf_ner entity probabilities (`doc.spans['crf_ner']`) "
        "against exact-match correctness on the scored split; ECE after: the same after calibration "
        "(temperature fitted with `calibrate()` on the run's selection dev set; – until a calibration pass "
        "has filled it in); cross-fitted: the temperature fitted on one half of the scored split's documents "
        "and applied to the other, both ways, so no entity is scored at a temperature fitted on it; noise floor: "
        "the mean ECE of outcomes drawn at the calibrated confidences, what a perfectly calibrated model would show "
        "on this many entities, and per seed p, the share of those draws with an ECE at least the calibrated one "
        "(below 0.05: more miscalibration than chance explains). Invalid seqs: decoded tag sequences (documents) "
        "that break BILUO, read spaCy's IOB way before scoring. Steps to 90%: the first evaluated step "
        "whose dev F1 reaches 90% of that run's best dev F1. Steps (best): the step training stopped at "
        "and, in brackets, the step of model-best. Train min: training wall time, dev evaluations included. "
        "The figure: dev F1 on the selection set against step, mean over a system's seeds (a run that "
        "stopped early holds its last value until the longest run's end).",
        "",
        *data_lines,
        "",
        "Entity F1 on the scored split, mean ± sd (seeds):",
        "",
        headline(runs),
        "",
        f"![dev F1 against step]({stem.with_suffix('.png').name})",
        "",
        table,
    ])
    meta = {"command": command, "date": datetime.date.today().isoformat(), "machine": machine_info()}
    return write_report(stem, "Accuracy at convergence: crf_ner vs softmax vs spaCy `ner`",
                        meta, body, {"summary": rows, "runs": [r["id"] for r in runs]})


def write_run(path: Path, record: Dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf8")
    tmp.replace(path)  # a run file is whole or absent


def runs_lacking(runs_dir: Path, keys: set) -> Iterator[Tuple[Path, Dict[str, Any], Path]]:
    """``(run file, record, model-best)`` of each finished crf_ner run in ``runs_dir`` that lacks
    one of ``keys`` and whose model-best is still kept."""
    for path in sorted(runs_dir.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf8"))
        if keys <= record.keys() or not record.get("model_best"):
            continue
        model = ROOT / record["model_best"]
        if not model.is_dir():
            print(f"{path.name}: {model} is gone; skipped", flush=True)
            continue
        yield path, record, model


def calibrate_finished_runs(args, command: str) -> None:
    """The calibration of :func:`calibrate_run` for finished runs made before it was part of a
    run: each run's kept model-best, on its own data (rebuilt as the run built it)."""
    data: Dict[Tuple[str, str], Dict] = {}
    for path, record, model in runs_lacking(args.runs_dir, CALIBRATION_KEYS):
        key = (record["encoder"], record["dataset"])
        if key not in data:
            data[key] = prepare_data(args, key[1], key[0])
        nlp = spacy.load(model)
        record.update(calibrate_run(nlp, data[key]))
        record.setdefault(CRF_SCORES, trained_crf_scores(nlp.get_pipe("crf_ner")))
        fit = record["calibration_fit"]
        print(f"{record['id']}: T {fit['temperature']:.3f}  ECE {record['ece']:.4f} -> {record['ece_calibrated']:.4f}"
              f" (cross-fitted {record['ece_crossfit']:.4f}, noise floor {record['ece_noise_floor']:.4f},"
              f" p {record['ece_p_calibrated']:.2f};"
              f" recomputed before: {fit['ece_at_previous_temperature']:.4f})", flush=True)
        write_run(path, record)
        del nlp
        gc.collect()
    for path, record, model in runs_lacking(args.runs_dir, {CRF_SCORES}):
        record[CRF_SCORES] = trained_crf_scores(spacy.load(model).get_pipe("crf_ner"))
        print(f"{record['id']}: CRF scores {record[CRF_SCORES]}", flush=True)
        write_run(path, record)
    print(report(args.runs_dir, args.stem, command))


# -- main -------------------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data",
                   help="the folder holding wikiann-en/ and wnut17/ (default: ../shared/data beside the project)")
    p.add_argument("--encoders", default="cnn,trf")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--systems", default=",".join(ALL_SYSTEMS))
    p.add_argument("--seeds", type=int, default=SPREAD_SEEDS, help="seeds 0..N-1 per cell")
    p.add_argument("--order", choices=["seed", "cell"], default="seed",
                   help="seed: seed 0 of every (encoder, dataset, system) before seed 1 (default); cell: all seeds of a cell in a row")
    p.add_argument("--trf-max-steps", type=int, default=None,
                   help="another transformer budget (patience and evaluation as BUDGETS, the schedule stretched to it), "
                        "a benchmark of its own: runs and report under bench/results/accuracy_trfNsteps")
    p.add_argument("--trf-dev-sents", type=int, default=TRF_DEV_SENTS, help="WikiANN selection dev for the transformer (first N)")
    p.add_argument("--transformer", default=None, help="HF name or dir (default: the offline MiniLM)")
    p.add_argument("--threads", type=int, default=1, help="torch / BLAS threads (default 1: the machine is shared)")
    p.add_argument("--work-dir", type=Path, default=RESULTS / "tmp" / "accuracy_work",
                   help="converted corpora, the frozen transformer, the ner runs' models (ignored folder)")
    p.add_argument("--quick", action="store_true", help="tiny data and budgets, nothing written to the results")
    p.add_argument("--resume", action="store_true", help="skip the runs whose file exists")
    p.add_argument("--report-only", action="store_true", help="render the report from the run files")
    p.add_argument("--calibrate-runs", action="store_true",
                   help="calibrate the finished crf_ner runs whose model-best is kept and whose file lacks the calibration "
                        "(and record their crf_scores where missing), then report")
    args = p.parse_args(argv)
    args.torch_threads = set_torch_threads(args.threads)
    command = command_line(sys.argv[0], sys.argv[1:] if argv is None else argv)
    # Another budget is another benchmark: its runs never share a cell (or --resume) with these.
    args.stem = STEM.with_name(f"{STEM.name}_trf{args.trf_max_steps}steps") if args.trf_max_steps else STEM
    args.runs_dir = args.stem / "runs"
    if args.report_only:
        print(report(args.runs_dir, args.stem, command))
        return 0
    args.data_dir = args.data_dir.resolve()
    if args.transformer is None:
        args.transformer = find_transformer()
    args.models_dir = MODELS_DIR / args.stem.name if args.trf_max_steps else MODELS_DIR
    if args.quick:  # a check, not a result: keep it out of bench/results
        args.work_dir = args.work_dir.parent / "accuracy_quick"
        args.runs_dir, args.models_dir = args.work_dir / "runs", args.work_dir / "models"
    args.work_dir = args.work_dir.resolve()
    args.frozen_dir = args.work_dir / "frozen_transformer"
    encoders, datasets, systems = (
        [x for x in getattr(args, name).split(",") if x] for name in ("encoders", "datasets", "systems"))
    for name, given, allowed in (("encoder", encoders, CONFIGS), ("dataset", datasets, DATASETS),
                                 ("system", systems, ALL_SYSTEMS)):
        bad = [x for x in given if x not in allowed]
        if bad:
            p.error(f"unknown {name}(s) {bad}; choose from {list(allowed)}")
    if args.trf_max_steps and encoders != ["trf"]:
        p.error("--trf-max-steps changes the transformer's budget only: pass --encoders trf")
    budgets = {enc: {**BUDGETS[enc], **(QUICK_BUDGETS[enc] if args.quick else {})} for enc in CONFIGS}
    if args.trf_max_steps:
        budgets["trf"]["max_steps"] = args.trf_max_steps
    # the commit of the code this process imported: a checkout during a long run must not relabel it
    code_commit = package_commit()
    if args.calibrate_runs:
        calibrate_finished_runs(args, command)
        return 0
    write_peer_configs()
    cells = [(enc, ds, system) for enc in encoders for ds in datasets for system in systems
             if enc == "trf" or system not in FROZEN]
    if args.order == "seed":
        # every cell's first seed before any second seed, so that a cut-short run covers them all
        plan = [(enc, ds, system, seed) for seed in range(args.seeds) for enc, ds, system in cells]
    else:
        plan = [(enc, ds, system, seed) for enc, ds, system in cells for seed in range(args.seeds)]
    if "trf" in encoders and FROZEN & set(systems):
        assemble_frozen(args)
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    stem = args.work_dir / "accuracy" if args.quick else args.stem
    data: Dict[Tuple[str, str], Dict] = {}
    for i, (enc, ds, system, seed) in enumerate(plan, 1):
        rid = run_id(enc, ds, system, seed)
        path = args.runs_dir / f"{rid}.json"
        if (enc, ds) not in data:
            data[(enc, ds)] = prepare_data(args, ds, enc)
        protocol = {"budget": budget_for(budgets, enc, system), "data": data[(enc, ds)], "sentences_per_doc": N_SENTS_PER_DOC,
                    "transformer": Path(str(args.transformer)).name if enc == "trf" else None}
        if path.is_file():
            if not args.resume:
                p.error(f"{path} exists: pass --resume to keep the finished runs (never delete them to rerun)")
            if json.loads(path.read_text())["protocol"]["budget"] != protocol["budget"]:
                raise SystemExit(f"{path} was made under another budget than this command's: "
                                 "move it aside or run with that budget")
            continue
        print(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {i}/{len(plan)} {rid} ...", flush=True)
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        record = run_one(args, enc, ds, system, seed, data[(enc, ds)], protocol["budget"])
        record.update(id=rid, protocol=protocol, started_at=started, package_commit=code_commit,
                      finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      command=command, cpu=cpu_model())
        print(f"    {rid}: F1 {record['ents_f']:.4f}  P {record['ents_p']:.4f}  R {record['ents_r']:.4f}  "
              f"steps {record['steps']} (best {record['best_step']})"
              + (f"  ECE {record['ece']}  invalid {record['invalid_sequences']}/{record['sequences']}" if "ece" in record else "")
              + f"  train {record['train_s']}s eval {record['eval_s']}s", flush=True)
        write_run(path, record)
        report(args.runs_dir, stem, command)  # the table grows run by run
    print(report(args.runs_dir, stem, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
