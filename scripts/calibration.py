"""Calibration of confidence scores: expected / maximum calibration error and a reliability
diagram. Pure numpy (matplotlib only for the picture), no spaCy, so a benchmark can reuse it:

    from calibration import expected_calibration_error, reliability_diagram
    result = expected_calibration_error(confidences, correct, n_bins=10)
    reliability_diagram(result, "reliability.png")

Binning: ``n_bins`` equal-width bins over [0, 1]; bin ``b`` holds the confidences ``c`` with
``floor(c * n_bins) == b``, i.e. ``[b/n, (b+1)/n)``, except that the last bin also holds 1.0.

    ECE = sum_b (n_b / N) * |accuracy_b - mean confidence_b|
    MCE = max_b |accuracy_b - mean confidence_b|   (over non-empty bins)

(Guo et al., 2017, "On Calibration of Modern Neural Networks").
"""
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 10
) -> Dict[str, Any]:
    """Calibration of ``confidences`` (probabilities in [0, 1]) against ``correct`` (bools, or
    0/1), one pair per prediction.

    Returns a JSON-serialisable dict: ``ece``, ``mce``, ``n_entities`` (the number of
    predictions), ``accuracy`` and ``mean_confidence`` over all of them, ``n_bins`` and ``bins``,
    a list of ``{"lower", "upper", "count", "confidence", "accuracy", "gap"}`` per bin
    (``confidence``, ``accuracy`` and ``gap`` are ``None`` for an empty bin). With no
    predictions, ``ece``, ``mce``, ``accuracy`` and ``mean_confidence`` are ``None``.
    """
    conf = numpy.asarray(confidences, dtype="float64").reshape(-1)
    hits = numpy.asarray(correct).reshape(-1)
    if conf.shape != hits.shape:
        raise ValueError(f"{conf.size} confidences but {hits.size} correctness flags")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if not numpy.all(numpy.isfinite(conf)) or numpy.any((conf < 0.0) | (conf > 1.0)):
        raise ValueError("confidences must be probabilities in [0, 1]")
    if hits.dtype != bool:
        if not numpy.all(numpy.isin(hits, (0, 1))):
            raise ValueError("correct must hold booleans or 0/1")
        hits = hits.astype(bool)
    n = conf.size
    index = numpy.minimum(numpy.floor(conf * n_bins).astype("int64"), n_bins - 1)
    bins = []
    ece, mce = 0.0, 0.0
    for b in range(n_bins):
        in_bin = index == b
        count = int(in_bin.sum())
        entry: Dict[str, Any] = {
            "lower": b / n_bins,
            "upper": (b + 1) / n_bins,
            "count": count,
            "confidence": None,
            "accuracy": None,
            "gap": None,
        }
        if count:
            mean_conf = float(conf[in_bin].mean())
            accuracy = float(hits[in_bin].mean())
            gap = abs(accuracy - mean_conf)
            entry.update(confidence=mean_conf, accuracy=accuracy, gap=gap)
            ece += count / n * gap
            mce = max(mce, gap)
        bins.append(entry)
    return {
        "ece": float(ece) if n else None,
        "mce": float(mce) if n else None,
        "n_entities": int(n),
        "accuracy": float(hits.mean()) if n else None,
        "mean_confidence": float(conf.mean()) if n else None,
        "n_bins": int(n_bins),
        "bins": bins,
    }


def reliability_diagram(
    result: Dict[str, Any], path: Union[str, Path], title: Optional[str] = None
):
    """Draw ``result`` (from :func:`expected_calibration_error`) as a PNG at ``path``: accuracy
    per bin against confidence, with the diagonal of perfect calibration and the gap to it,
    and the bin counts as a histogram below. Returns the matplotlib Figure."""
    from matplotlib.figure import Figure  # rendered with Agg; no pyplot, no global state

    bins = result["bins"]
    width = 1.0 / result["n_bins"]
    lowers = numpy.array([b["lower"] for b in bins])
    centers = lowers + width / 2
    counts = numpy.array([b["count"] for b in bins])
    filled = counts > 0
    accuracy = numpy.array([b["accuracy"] if b["count"] else 0.0 for b in bins])
    confidence = numpy.array([b["confidence"] if b["count"] else 0.0 for b in bins])

    fig = Figure(figsize=(6.0, 7.0), dpi=120, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})

    top.bar(
        lowers[filled], accuracy[filled], width=width, align="edge", color="#4c72b0",
        edgecolor="white", linewidth=1.0, label="accuracy",
    )
    # The gap between each bin's accuracy and its mean confidence.
    gap_bottom = numpy.minimum(accuracy, confidence)[filled]
    gap_height = numpy.abs(accuracy - confidence)[filled]
    top.bar(
        lowers[filled], gap_height, bottom=gap_bottom, width=width, align="edge",
        color="#dd8452", alpha=0.35, edgecolor="#c44e52", hatch="//", linewidth=0.8, label="gap",
    )
    top.plot(
        confidence[filled], accuracy[filled], "o", color="black", markersize=4,
        label="bin (mean confidence, accuracy)",
    )
    top.plot([0, 1], [0, 1], "--", color="grey", linewidth=1.2, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy (exact span + label)")
    top.set_aspect("auto")
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    if result["n_entities"]:
        summary = (
            f"ECE = {result['ece']:.4f}\nMCE = {result['mce']:.4f}\n"
            f"N = {result['n_entities']}\naccuracy = {result['accuracy']:.3f}\n"
            f"mean conf. = {result['mean_confidence']:.3f}"
        )
    else:
        summary = "no predictions"
    top.text(
        0.97, 0.03, summary, transform=top.transAxes, ha="right", va="bottom", fontsize=9,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "#999999"},
    )
    top.set_title(title or "Reliability diagram")

    bottom.bar(lowers, counts, width=width, align="edge", color="#55a868", edgecolor="white")
    for x, count in zip(centers, counts):
        if count:
            bottom.text(x, count, str(int(count)), ha="center", va="bottom", fontsize=7)
    bottom.set_ylim(0, max(1, counts.max()) * 1.2)
    bottom.set_xlim(0, 1)
    bottom.set_xticks(numpy.linspace(0, 1, result["n_bins"] + 1) if result["n_bins"] <= 20 else numpy.linspace(0, 1, 11))
    bottom.tick_params(axis="x", labelsize=8)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("count")
    bottom.grid(True, axis="y", alpha=0.3)
    fig.savefig(path, format="png")
    return fig
