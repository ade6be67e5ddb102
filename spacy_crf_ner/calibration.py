"""Calibrating ``crf_ner``'s entity probabilities on held-out data: temperature scaling of the CRF.

The CRF's distribution over tag paths is ``p(y | x) ∝ exp(s(y, x))``, with ``s`` the sum of the
path's start, transition, emission and end scores. Temperature ``T`` makes it
``p_T(y | x) ∝ exp(s(y, x) / T)``: every score divided by ``T``. The moves the tag scheme forbids
stay forbidden (``ConstrainedCRF.constrained_scores`` puts them back at IMPOSSIBLE after the
division), and the best path, which maximises ``s``, maximises ``s / T`` too: ``doc.ents`` is the
same at every temperature; only the probabilities (entity confidences, threshold candidates,
k-best probabilities) change. ``T > 1`` flattens an overconfident model's distribution.

``T`` is fitted on held-out examples to minimise the log loss of the confidences of the
predicted entities (``doc.ents``) against their correctness (exact span and label,
:func:`spacy_crf_ner.scoring.entity_correctness`): the quantity the component reports, scored by
a proper scoring rule. ``bench/calibration.py`` compares it with fitting ``T`` to the gold tag
paths' likelihood and with Platt scaling of the entity probabilities.

    python -m spacy_crf_ner calibrate MODEL_DIR DEV.spacy --output OUT_DIR
"""
import copy
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy
import torch
import typer
from spacy.training import Example
from wasabi import Printer

from .confidence import Entity, entity_probabilities
from .crf import ConstrainedCRF
from .scoring import N_BINS, entity_correctness, expected_calibration_error

# Far outside the 0.5-5 that models need in practice; a fit that ends at a bound is reported
# (``at_bound``), so a degenerate held-out set (e.g. every entity right) is visible.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
# log T to within 0.01, i.e. T to within 1%: below what moves the ECE in its third decimal,
# in about 15 evaluations of the held-out confidences.
LOG_TEMPERATURE_TOLERANCE = 1e-2
# The component's cfg is saved as JSON, which keeps 8 decimals of a float: rounded to 6 here,
# the temperature reported, used and saved is one number (and the fit is only good to 1%).
TEMPERATURE_DECIMALS = 6
# The log loss of a confidence of exactly 0 or 1 on the wrong side is infinite; a probability is
# kept this far from 0 and 1 in the loss only (float64 resolves 1 - 1e-12).
LOSS_EPSILON = 1e-12


def tempered(crf: ConstrainedCRF, emissions: torch.Tensor, temperature: float) -> Tuple[ConstrainedCRF, torch.Tensor]:
    """The CRF and ``(B, L, T)`` emissions of the distribution at ``temperature``: a copy of the
    CRF with its start, end and transition scores divided by it, and the emissions divided by
    it (the CRF and emissions themselves at temperature 1). The constraint masks are unchanged."""
    if temperature <= 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    if temperature == 1.0:
        return crf, emissions
    scaled = copy.deepcopy(crf)
    with torch.no_grad():
        for param in scaled.parameters():
            param.div_(temperature)
    return scaled, emissions / temperature


def log_loss(confidences: numpy.ndarray, correct: numpy.ndarray) -> float:
    """Mean binary log loss (negative log-likelihood) of ``confidences (N,)`` for ``correct (N,)``."""
    p = numpy.clip(confidences, LOSS_EPSILON, 1.0 - LOSS_EPSILON)
    return float(-numpy.mean(numpy.where(correct, numpy.log(p), numpy.log1p(-p))))


def minimise_scalar(loss: Callable[[float], float], low: float, high: float, tolerance: float) -> float:
    """Golden-section search for the minimum of ``loss`` on ``[low, high]`` (exact for a
    unimodal loss; 1-D, so no optimiser library is needed)."""
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    loss_c, loss_d = loss(c), loss(d)
    while b - a > tolerance:
        if loss_c <= loss_d:
            b, d, loss_d = d, c, loss_c
            c = b - ratio * (b - a)
            loss_c = loss(c)
        else:
            a, c, loss_c = c, d, loss_d
            d = a + ratio * (b - a)
            loss_d = loss(d)
    return (a + b) / 2.0


class EntityBatch:
    """One batch of held-out docs for fitting: ``emissions (B, L, T)`` float64, ``mask (B, L)``,
    the predicted entities per doc (those with a defined correctness) and their correctness."""

    def __init__(self, emissions: torch.Tensor, mask: torch.Tensor, entities: List[List[Entity]], correct: List[bool]):
        self.emissions = emissions.double()
        self.mask = mask
        self.entities = entities
        self.correct = correct


def held_out_entities(pipe, examples: Sequence[Example], nlp=None, batch_size: int = 256) -> List[EntityBatch]:
    """The held-out data of :meth:`CRFEntityRecognizer.calibrate`: ``pipe``'s predicted entities
    on copies of the examples' predicted docs, with their correctness against the reference,
    in batches of docs with at least one such entity (sorted by length, to pad little).

    If ``pipe`` listens to an earlier component, ``nlp`` must be given: its components before
    ``pipe`` are run on the copies first (the listener would read empty vectors otherwise)."""
    examples = list(examples)
    docs = [eg.predicted.copy() for eg in examples]
    listeners = [node.name for node in pipe.model.walk() if hasattr(node, "upstream_name")]
    if nlp is not None:
        for name, component in nlp.pipeline:
            if name == pipe.name:
                break
            docs = list(component.pipe(docs, batch_size=batch_size)) if hasattr(component, "pipe") else [component(doc) for doc in docs]
    elif listeners:
        raise ValueError(
            f"'{pipe.name}' reads its token vectors from an earlier component ({listeners[0]}): "
            "pass nlp= to calibrate() so that component runs on the examples first"
        )
    # The docs as the component gets them (preset entities, blocked tokens), for the emissions
    # below: annotating ``docs`` sets their entities, which the component would read as preset.
    unannotated = [doc.copy() for doc in docs]
    rightness = []
    for begin in range(0, len(docs), batch_size):
        batch_docs = docs[begin : begin + batch_size]
        pipe.set_annotations(batch_docs, pipe.predict(batch_docs))
        rightness.extend(entity_correctness(Example(doc, eg.reference)) for doc, eg in zip(batch_docs, examples[begin : begin + batch_size]))
    order = sorted((i for i, right in enumerate(rightness) if right), key=lambda i: len(docs[i]))
    batches = []
    for begin in range(0, len(order), batch_size):
        chosen = order[begin : begin + batch_size]
        keys = [sorted(rightness[i], key=lambda key: key[:2]) for i in chosen]
        with torch.no_grad():
            # the component's own emissions, under the constraints its predictions were made with
            emissions, mask, _ = pipe._emissions([unannotated[i] for i in chosen])
        entities = [[(label, start, end) for start, end, label in doc_keys] for doc_keys in keys]
        correct = [rightness[i][key] for i, doc_keys in zip(chosen, keys) for key in doc_keys]
        batches.append(EntityBatch(emissions, mask, entities, correct))
    return batches


def entity_confidences_at(crf: ConstrainedCRF, batches: Sequence[EntityBatch], tags: Sequence[str], scheme: str, temperature: float) -> numpy.ndarray:
    """``(N,)`` the probability of every entity of ``batches`` at ``temperature``, in order
    (float64)."""
    crf = copy.deepcopy(crf).double()
    out = []
    with torch.no_grad():
        for batch in batches:
            scaled_crf, scaled = tempered(crf, batch.emissions, temperature)
            probs = entity_probabilities(scaled_crf, scaled, batch.mask, batch.entities, tags, scheme)
            out.extend(numpy.concatenate(probs) if probs else [])
    return numpy.asarray(out, dtype="float64")


def summary(confidences: numpy.ndarray, correct: numpy.ndarray) -> Dict[str, float]:
    """ECE (:data:`~spacy_crf_ner.scoring.N_BINS` bins), Brier score, log loss and mean confidence."""
    report = expected_calibration_error(confidences, correct, N_BINS)
    return {"ece": report["ece"], "brier": report["brier"], "log_loss": log_loss(confidences, correct),
            "mean_confidence": report["mean_confidence"]}


def fit_temperature(
    crf: ConstrainedCRF, batches: Sequence[EntityBatch], tags: Sequence[str], scheme: str, previous: float = 1.0
) -> Dict[str, Any]:
    """The temperature that minimises the log loss of the entities' confidences against their
    correctness, and the calibration before (at ``previous``) and after. Returns a
    JSON-serialisable dict: ``method``, ``temperature``, ``previous_temperature``, ``at_bound``,
    ``n_entities``, ``accuracy`` and ``ece``, ``brier``, ``log_loss``, ``mean_confidence`` each
    with ``_before`` and ``_after``."""
    correct = numpy.asarray([c for batch in batches for c in batch.correct], dtype=bool)
    if not len(correct):
        raise ValueError(
            "Cannot calibrate: no predicted entity with gold annotation in the held-out examples "
            "(the model predicts no entities there, or the gold docs have no NER annotation)"
        )
    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)

    def loss(log_temperature: float) -> float:
        return log_loss(entity_confidences_at(crf, batches, tags, scheme, math.exp(log_temperature)), correct)

    log_t = minimise_scalar(loss, low, high, LOG_TEMPERATURE_TOLERANCE)
    temperature = round(math.exp(log_t), TEMPERATURE_DECIMALS)
    before = summary(entity_confidences_at(crf, batches, tags, scheme, previous), correct)
    after = summary(entity_confidences_at(crf, batches, tags, scheme, temperature), correct)
    result: Dict[str, Any] = {
        "method": "temperature",
        "temperature": temperature,
        "previous_temperature": previous,
        "at_bound": min(log_t - low, high - log_t) < 2 * LOG_TEMPERATURE_TOLERANCE,
        "n_entities": int(len(correct)),
        "accuracy": float(correct.mean()),
    }
    for name in before:
        result[f"{name}_before"] = before[name]
        result[f"{name}_after"] = after[name]
    return result


def calibrate(
    model: Path = typer.Argument(..., exists=True, file_okay=False, help="Pipeline directory"),
    data_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Held-out corpus (.spacy), e.g. the dev split"),
    output: Path = typer.Option(..., "--output", "-o", file_okay=False, help="Where the calibrated pipeline goes"),
    component: str = typer.Option("crf_ner", "--component", "-c", help="The crf_ner component's name"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
) -> None:
    """Fit the temperature of a saved pipeline's crf_ner component on held-out data and save the
    calibrated pipeline to OUTPUT (entities unchanged; confidences calibrated)."""
    import spacy
    from spacy.cli._util import setup_gpu
    from spacy.training import Corpus

    msg = Printer()
    setup_gpu(gpu_id)
    nlp = spacy.load(model)
    if component not in nlp.pipe_names:
        msg.fail(f"No component '{component}' in {model} (components: {nlp.pipe_names})", exits=1)
    examples = list(Corpus(data_path)(nlp))
    if not examples:
        msg.fail(f"The corpus {data_path} holds no documents", exits=1)
    try:
        result = nlp.get_pipe(component).calibrate(examples, nlp=nlp)
    except ValueError as err:
        msg.fail(f"{data_path}: {err}", exits=1)
    nlp.meta["calibration"] = {"data": str(data_path), **result}
    nlp.to_disk(output)
    msg.table(
        [("Entities", result["n_entities"]), ("Accuracy", f"{result['accuracy']:.4f}"),
         ("Temperature", f"{result['previous_temperature']:.3f} -> {result['temperature']:.3f}")]
        + [(name, f"{result[name + '_before']:.4f} -> {result[name + '_after']:.4f}")
           for name in ("ece", "brier", "log_loss", "mean_confidence")],
        title=f"Calibration of '{component}' on {data_path.name} ({N_BINS}-bin ECE)",
    )
    if result["at_bound"]:
        msg.warn(f"The temperature ended at a bound of [{MIN_TEMPERATURE}, {MAX_TEMPERATURE}]: check the held-out data")
    msg.good(f"Saved the calibrated pipeline to {output}")
