"""Calibration benchmark: the entity confidences' ECE before and after calibration, per method,
on real data, calibrated on sentences that are never scored.

    python bench/calibrate.py                     # WikiANN-en and WNUT-17 (bench/results/calibrate.*)
    python bench/calibrate.py --quick             # a small run in about a minute, to check the script
    python bench/calibrate.py --datasets wikiann
    python bench/calibrate.py --report-only       # the report again from bench/results/calibrate.json

The setting of issue 8: the default `crf_ner` (spaCy's HashEmbedCNN inside, no other component),
trained with `nlp.update` for --epochs epochs on batches of --batch sentences (shuffled, seeded)
on the first --train-sents train sentences.

- WikiANN-en: calibrated on dev sentences [--eval-sents, --eval-sents + --calib-sents); scored on
  the first --eval-sents dev sentences (the issue's 0.277 was measured there, before calibration)
  and on the first --eval-sents test sentences.
- WNUT-17: calibrated on the second half of dev, scored on the first half (its other split,
  test, is not in ../shared/data).

Methods, each fitted on the calibration sentences only:
  none                 the CRF's probabilities as trained (temperature 1)
  temperature          the component's `calibrate()`: the CRF's scores divided by T, T fitted
                       to the log loss of the predicted entities' confidences vs their
                       correctness (what `crf_ner` does)
  temperature_gold     T fitted to the likelihood of the gold tag paths instead (temperature
                       scaling as Guo et al. fit it for classifiers)
  platt                Platt scaling of the entity probabilities: sigmoid(a * logit(p) + b),
                       a and b fitted to the same log loss (not a CRF distribution any more:
                       k-best and threshold candidates could not use it)

Every method leaves `doc.ents` as they are (checked: the entities at each temperature are
compared with those at temperature 1). ECE: `spacy_crf_ner.scoring` (10 bins, exact span and
label). Writes --out.json and --out.md; with --save DIR also DIR/DATASET/model (the calibrated
pipeline) and DIR/DATASET/SET.spacy (each scored set), for `scripts/evaluate.py`'s pictures:

    python scripts/evaluate.py DIR/wikiann/model DIR/wikiann/test.spacy OUT   # reliability before/after
"""
import argparse
import copy
import datetime
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy
import spacy
import torch
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import fix_random_seed, minibatch

from common import command_line, load_average, machine_info, read_sentences, write_report
from spacy_crf_ner.calibration import LOG_TEMPERATURE_TOLERANCE, MAX_TEMPERATURE, MIN_TEMPERATURE, minimise_scalar, tempered
from spacy_crf_ner.layers import get_crf, pad_emissions
from spacy_crf_ner.scoring import N_BINS, expected_calibration_error, score_ner_calibration, scored_entities
from spacy_crf_ner.tags import from_biluo

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {"wikiann": "wikiann-en", "wnut17": "wnut17"}
TITLE = "Calibration of crf_ner's entity confidences"
# A probability of exactly 0 or 1 has an infinite logit; Platt scaling reads them this far inside.
LOGIT_EPSILON = 1e-6


def read_examples(nlp, path: Path) -> List[Example]:
    """One example per sentence of a two-column IOB2 file: a words-only predicted doc, the gold."""
    examples = []
    for number, lines in enumerate(read_sentences(path)):
        # A byte-order mark alone on a line (WNUT-17's dev file ends with one) is no token.
        rows = [line.split() for line in lines if line.strip("\ufeff")]
        if not rows:
            continue
        if any(len(row) != 2 for row in rows):
            raise ValueError(f"{path}: sentence {number + 1}: a line without exactly two columns (token, tag)")
        words, tags = zip(*rows)
        try:
            gold = Doc(nlp.vocab, words=list(words), ents=list(tags))
        except ValueError as err:
            raise ValueError(f"{path}: sentence {number + 1}: {err}") from None
        examples.append(Example(Doc(nlp.vocab, words=list(words)), gold))
    return examples


def train(nlp, train_examples: List[Example], epochs: int, batch: int, seed: int):
    fix_random_seed(seed)
    nlp.add_pipe("crf_ner")
    optimizer = nlp.initialize(lambda: train_examples)
    rng = random.Random(seed)
    order = list(train_examples)
    for _ in range(epochs):
        rng.shuffle(order)
        for examples in minibatch(order, size=batch):
            nlp.update(examples, sgd=optimizer)
    return nlp


def predict(nlp, examples: Sequence[Example]) -> List[Example]:
    """The examples with the pipeline's predictions (gold tokenisation)."""
    docs = nlp.pipe(Doc(nlp.vocab, words=[t.text for t in eg.reference]) for eg in examples)
    return [Example(doc, eg.reference) for doc, eg in zip(docs, examples)]


def entity_keys(examples: Sequence[Example]) -> List[List[Tuple[int, int, str]]]:
    return [[(e.start, e.end, e.label_) for e in eg.predicted.ents] for eg in examples]


def fit_temperature_to_gold(nlp, examples: Sequence[Example], batch: int = 256) -> float:
    """T minimising the negative log-likelihood of the gold tag paths (unknown tags
    marginalised over)."""
    ner = nlp.get_pipe("crf_ner")
    index = {tag: i for i, tag in enumerate(ner.tags)}
    crf = get_crf(ner.model.get_ref("crf"))
    batches = []
    for begin in range(0, len(examples), batch):
        chunk = examples[begin : begin + batch]
        docs = [eg.predicted for eg in chunk]
        emissions, mask = pad_emissions(ner.model.get_ref("crf"), ner.model.predict(docs))
        tags = torch.full(mask.shape, -1, dtype=torch.long)
        for i, eg in enumerate(chunk):
            gold = [-1 if t is None else index[t] for t in from_biluo(eg.get_aligned_ner(), ner.cfg["scheme"])]
            tags[i, : len(gold)] = torch.tensor(gold)
        batches.append((emissions.double(), tags, mask))
    crf64 = copy.deepcopy(crf).double()

    def nll(log_t: float) -> float:
        with torch.no_grad():
            total = 0.0
            for emissions, tags, mask in batches:
                scaled_crf, scaled = tempered(crf64, emissions, math.exp(log_t))
                total -= float(scaled_crf(scaled, tags, mask, reduction="sum"))
            return total

    return math.exp(minimise_scalar(nll, math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE), LOG_TEMPERATURE_TOLERANCE))


def logit(p: numpy.ndarray) -> torch.Tensor:
    p = numpy.clip(p, LOGIT_EPSILON, 1.0 - LOGIT_EPSILON)
    return torch.from_numpy(numpy.log(p) - numpy.log1p(-p))


def fit_platt(confidences: numpy.ndarray, correct: numpy.ndarray) -> Tuple[float, float]:
    """a, b minimising the log loss of sigmoid(a * logit(p) + b) (logistic regression on the logit)."""
    x, y = logit(confidences), torch.from_numpy(correct.astype("float64"))
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(params[0] * x + params[1], y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(params[0].detach()), float(params[1].detach())


def platt(confidences: numpy.ndarray, a: float, b: float) -> numpy.ndarray:
    return torch.sigmoid(a * logit(confidences) + b).numpy()


def calibration_row(method: str, fitted: Dict[str, float], conf: numpy.ndarray, correct: numpy.ndarray, prf: Dict[str, Any]) -> Dict[str, Any]:
    report = expected_calibration_error(conf, correct, N_BINS)
    return {"method": method, "fitted": fitted, "ece": report["ece"], "mce": report["mce"], "brier": report["brier"],
            "mean_confidence": report["mean_confidence"], "accuracy": report["accuracy"],
            "n_entities": report["n_entities"], "ents_p": prf["ents_p"], "ents_r": prf["ents_r"], "ents_f": prf["ents_f"],
            "bins": report["bins"]}


def run_dataset(name: str, args) -> Dict[str, Any]:
    nlp = spacy.blank("en")
    folder = args.data_dir / DATASETS[name]
    if name == "wikiann":
        train_ex = read_examples(nlp, folder / "train.iob")[: args.train_sents]
        dev = read_examples(nlp, folder / "dev.iob")
        calib = dev[args.eval_sents : args.eval_sents + args.calib_sents]
        scored = {"dev[:%d]" % args.eval_sents: dev[: args.eval_sents],
                  "test[:%d]" % args.eval_sents: read_examples(nlp, folder / "test.iob")[: args.eval_sents]}
        calib_name = f"dev[{args.eval_sents}:{args.eval_sents + len(calib)}]"
    else:
        train_ex = read_examples(nlp, folder / "train.conll")[: args.train_sents]
        dev = read_examples(nlp, folder / "dev.conll")
        half = len(dev) // 2
        limit = args.eval_sents if args.quick else half
        calib, scored = dev[half : half + limit], {f"dev[:{limit}]": dev[:limit]}
        calib_name = f"dev[{half}:{half + len(calib)}]"
    t0 = time.perf_counter()
    train(nlp, train_ex, args.epochs, args.batch, args.seed)
    t_train = time.perf_counter() - t0
    ner = nlp.get_pipe("crf_ner")

    t0 = time.perf_counter()
    calibrated = ner.calibrate(calib)
    t_calibrate = time.perf_counter() - t0
    t_gold = fit_temperature_to_gold(nlp, calib)
    ner.cfg["temperature"] = 1.0
    raw_calib = scored_entities(predict(nlp, calib), ner.spans_key)
    a, b = fit_platt(raw_calib.confidences, raw_calib.correct)

    result: Dict[str, Any] = {"dataset": name, "n_train": len(train_ex), "calibrated_on": calib_name, "n_calib": len(calib),
                              "train_s": round(t_train, 1), "calibrate_s": round(t_calibrate, 1),
                              "calibrate": calibrated, "sets": {}}
    for set_name, examples in scored.items():
        rows = []
        ner.cfg["temperature"] = 1.0
        base = predict(nlp, examples)
        base_ents = entity_keys(base)
        prf = score_ner_calibration(base, spans_key=ner.spans_key)
        raw = scored_entities(base, ner.spans_key)
        rows.append(calibration_row("none", {}, raw.confidences, raw.correct, prf))
        for method, temperature in (("temperature", calibrated["temperature"]), ("temperature_gold", t_gold)):
            ner.cfg["temperature"] = temperature
            predicted = predict(nlp, examples)
            if entity_keys(predicted) != base_ents:
                raise AssertionError(f"{method}: temperature {temperature} changed doc.ents")
            scored_t = scored_entities(predicted, ner.spans_key)
            rows.append(calibration_row(method, {"T": temperature}, scored_t.confidences, scored_t.correct,
                                        score_ner_calibration(predicted, spans_key=ner.spans_key)))
        rows.append(calibration_row("platt", {"a": a, "b": b}, platt(raw.confidences, a, b), raw.correct, prf))
        result["sets"][set_name] = {"n": len(examples), "rows": rows}
        for row in rows:
            print(f"{name:8} {set_name:12} {row['method']:17} ECE {row['ece']:.4f}  MCE {row['mce']:.4f}  "
                  f"Brier {row['brier']:.4f}  conf {row['mean_confidence']:.3f}  P {row['ents_p']:.3f}  "
                  f"F {row['ents_f']:.3f}  {row['fitted']}", flush=True)
    ner.cfg["temperature"] = 1.0
    if args.save is not None:
        ner.cfg["temperature"] = calibrated["temperature"]
        (args.save / name).mkdir(parents=True, exist_ok=True)
        nlp.to_disk(args.save / name / "model")
        for set_name, examples in scored.items():
            DocBin(docs=[eg.reference for eg in examples]).to_disk(args.save / name / f"{set_name.split('[')[0]}.spacy")
        ner.cfg["temperature"] = 1.0
    return result


def body(results: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    """The report under write_report's header. Reads only ``results`` and ``meta``, so a finished
    run re-renders."""
    lines = [
        f"From {meta['date']} to {meta['finished']}, load average at the start {meta['load_start']}, at the end "
        f"{meta['machine']['load_average']}.", "",
        f"Default `crf_ner` (HashEmbedCNN), `nlp.update` for {meta['args']['epochs']} epochs, batches of "
        f"{meta['args']['batch']} sentences, seed {meta['args']['seed']}. ECE: {N_BINS} equal-width bins, a "
        "predicted entity is right when its span and label match gold exactly (`spacy_crf_ner.scoring`). "
        "Every method was fitted on the calibration sentences only, which are never scored; no method "
        "changes `doc.ents` (P and F are the same in every row).", "",
        "| data (train → calibrate) | scored on | method | fitted | ECE | MCE | Brier | mean conf. | precision | F1 | entities |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for set_name, scored in result["sets"].items():
            for row in scored["rows"]:
                fitted = ", ".join(f"{k} = {v:.3f}" for k, v in row["fitted"].items()) or "–"
                lines.append(
                    f"| {result['dataset']} {result['n_train']} → {result['calibrated_on']} | {set_name} | {row['method']} | "
                    f"{fitted} | {row['ece']:.3f} | {row['mce']:.3f} | {row['brier']:.3f} | {row['mean_confidence']:.3f} | "
                    f"{row['ents_p']:.3f} | {row['ents_f']:.3f} | {row['n_entities']} |"
                )
    lines.append("")
    for result in results:
        c = result["calibrate"]
        lines.append(
            f"- {result['dataset']}: `calibrate()` on {result['calibrated_on']} ({c['n_entities']} predicted entities, "
            f"accuracy {c['accuracy']:.3f}): T = {c['temperature']:.3f}, in-sample ECE {c['ece_before']:.3f} → "
            f"{c['ece_after']:.3f}, in {result['calibrate_s']} s; training {result['train_s']} s."
        )
    return "\n".join(lines) + "\n"


def report(out: Path, results: List[Dict[str, Any]], meta: Dict[str, Any]) -> None:
    """``out``.json (meta and results) and ``out``.md."""
    print(write_report(out, TITLE, meta, body(results, meta), {"results": results}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--datasets", default="wikiann,wnut17")
    parser.add_argument("--train-sents", type=int, default=2000)
    parser.add_argument("--eval-sents", type=int, default=1000)
    parser.add_argument("--calib-sents", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="300 train sentences, 2 epochs, 200 calibration / scored sentences")
    parser.add_argument("--save", type=Path, default=None, help="Also save each calibrated pipeline and scored set here")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "calibrate")
    parser.add_argument("--report-only", action="store_true", help="render the report again from --out's JSON")
    args = parser.parse_args()
    if args.quick:
        args.train_sents, args.eval_sents, args.calib_sents, args.epochs = 300, 200, 200, 2
        if args.out == ROOT / "bench" / "results" / "calibrate":
            args.out = ROOT / "bench" / "results" / "calibrate_quick"
    if args.report_only:
        recorded = json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8"))
        return report(args.out, recorded["results"], recorded["meta"])
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_start = load_average()
    results = [run_dataset(name, args) for name in args.datasets.split(",")]
    meta = {"date": started, "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command_line(sys.argv[0], sys.argv[1:]), "machine": machine_info(), "load_start": load_start,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    report(args.out, results, meta)


if __name__ == "__main__":
    main()
