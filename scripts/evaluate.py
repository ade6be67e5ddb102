"""Evaluate an NER pipeline on a .spacy corpus, with pictures.

    python scripts/evaluate.py MODEL_DIR DATA.spacy OUTPUT_DIR [--gpu-id -1] [--n-examples 25]
                               [--component crf_ner] [--seed 0]

Writes to OUTPUT_DIR:

- ``scores.json``: the pipeline's scores (``nlp.evaluate``: ``ents_p/r/f``, ``ents_per_type``
  and, with ``crf_ner``'s scorer, ``ents_ece`` ...), gold/predicted entity counts per label, docs,
  words, words/s and, when the component stores entity confidences, their calibration
  (``spacy_crf_ner.scoring.calibration_report``: ECE, MCE, Brier, reliability bins), also as
  trained (``calibration_uncalibrated``, temperature 1) when the component was calibrated;
- ``per_label_prf.png``: P/R/F1 per label and overall;
- ``transitions.png``: the learned CRF transition scores (a ``crf_ner`` component only), with
  START as an extra row, END as an extra column and the moves the tag scheme forbids marked;
- ``examples.html``: a sample of sentences, gold and predicted entities side by side (displaCy),
  sentences where they differ first and highlighted;
- ``reliability.png``: the reliability diagram of the entity confidences (when there are some),
  before and after calibration side by side when the component was calibrated
  (``python -m spacy_crf_ner calibrate``).

Any spaCy pipeline with an NER-like component works, a plain spaCy ``ner`` one too (then there is
no transition heatmap). Confidences are read from ``doc.spans[key]`` (``key`` is the component's
``cfg["spans_key"]`` or its name), a span group whose ``attrs["scores"]`` holds one probability
per span; only the spans that are also in ``doc.ents`` are used (``spacy_crf_ner.scoring`` has the
definitions). Without it, calibration is skipped with a note.
"""
import html
import json
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
import spacy
import typer
from spacy.cli._util import setup_gpu
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.training import Corpus, Example
from wasabi import Printer

from spacy_crf_ner.scoring import calibration_report

app = typer.Typer(add_completion=False)

NER_FACTORIES = ("crf_ner", "ner", "beam_ner")
PRF_COLORS = {"p": "#4c72b0", "r": "#dd8452", "f": "#55a868"}
# displaCy colours for labels it has no colour for (it would draw them all in the same grey).
EXTRA_LABEL_COLORS = ["#aa9cfc", "#7aecec", "#ff9561", "#feca74", "#bfeeb7", "#c887fb", "#9cc9cc",
                      "#ffeb80", "#ff8197", "#f0d0ff", "#bfe1d9", "#e4e7d2", "#fddbc7", "#d1e5f0"]


# -- the pipeline ------------------------------------------------------------------------------


def find_ner_component(nlp: Language, name: str, msg: Optional[Printer] = None) -> Tuple[str, Any]:
    """The component called ``name``; failing that, the pipeline's NER-like component (a
    ``crf_ner`` or ``ner`` one, else any that assigns ``doc.ents``), with a warning."""
    if name in nlp.pipe_names:
        return name, nlp.get_pipe(name)
    assigning = [n for n in nlp.pipe_names if "doc.ents" in nlp.get_pipe_meta(n).assigns]
    preferred = [n for n in assigning if nlp.get_pipe_meta(n).factory in NER_FACTORIES]
    candidates = preferred or assigning
    if not candidates:
        raise ValueError(
            f"The pipeline has no component '{name}' and none that sets doc.ents: {nlp.pipe_names}"
        )
    found = candidates[-1]
    if msg is not None:
        msg.warn(f"No component '{name}' in the pipeline {nlp.pipe_names}: evaluating '{found}'")
    return found, nlp.get_pipe(found)


class _KeepingScorer(Scorer):
    """spaCy's Scorer, keeping the examples it scores: ``nlp.evaluate`` copies the examples and
    predicts into the copies, so this is how its predictions (not a second run's) are kept."""

    examples: List[Example] = []

    def score(self, examples, **kwargs):
        self.examples = list(examples)
        return super().score(self.examples, **kwargs)


def score_pipeline(nlp: Language, examples: Sequence[Example]) -> Tuple[Dict[str, Any], List[Example]]:
    """``nlp.evaluate(examples)`` and the predicted examples it scored."""
    scorer = _KeepingScorer(nlp=nlp)
    scores = nlp.evaluate(examples, scorer=scorer)
    return scores, scorer.examples


def entity_counts(examples: Sequence[Example]) -> Dict[str, Dict[str, int]]:
    """Gold and predicted entities per label."""
    counts: Dict[str, Dict[str, int]] = {}
    for eg in examples:
        for side, doc in (("gold", eg.reference), ("predicted", eg.predicted)):
            for ent in doc.ents:
                counts.setdefault(ent.label_, {"gold": 0, "predicted": 0})[side] += 1
    return dict(sorted(counts.items()))


def spans_key_of(pipe: Any) -> str:
    cfg = getattr(pipe, "cfg", None) or {}
    return cfg.get("spans_key") or pipe.name


def uncalibrated_report(nlp: Language, pipe: Any, examples: Sequence[Example], spans_key: str, batch_size: int = 256) -> Optional[Dict[str, Any]]:
    """The calibration report of the same pipeline at temperature 1 (as trained), for a
    ``crf_ner`` whose temperature was fitted; None for any other component. Reruns the pipeline
    on new docs of the examples' texts (as the corpus reader makes them): the docs already
    predicted hold this component's entities, which it would take as preset ones."""
    temperature = (getattr(pipe, "cfg", None) or {}).get("temperature", 1.0)
    if temperature == 1.0:
        return None
    pipe.cfg["temperature"] = 1.0
    try:
        docs = list(nlp.pipe((nlp.make_doc(eg.reference.text) for eg in examples), batch_size=batch_size))
    finally:
        pipe.cfg["temperature"] = temperature
    return calibration_report([Example(doc, eg.reference) for doc, eg in zip(docs, examples)], spans_key)


# -- the CRF transition heatmap -----------------------------------------------------------------


def pipe_crf(pipe: Any):
    """The component's ``ConstrainedCRF``, or None where it has none (e.g. spaCy's ``ner``)."""
    model = getattr(pipe, "model", None)
    if model is None or not hasattr(model, "has_ref") or not model.has_ref("crf"):
        return None
    from spacy_crf_ner.layers import get_crf

    return get_crf(model.get_ref("crf"))


def heatmap_skip_reason(pipe: Any) -> Optional[str]:
    """Why there is no transition heatmap to draw for ``pipe``, or None if there is one."""
    cfg = getattr(pipe, "cfg", None) or {}
    if cfg.get("use_crf") is False:
        return (f"'{pipe.name}' has use_crf=False (a per-token softmax baseline): its transition "
                "scores are fixed at 0")
    model = getattr(pipe, "model", None)
    if model is None or not hasattr(model, "has_ref") or not model.has_ref("crf"):
        return f"'{pipe.name}' has no CRF"
    return None


def _to_numpy(value) -> numpy.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return numpy.asarray(value)


def transition_table(crf: Any, tags: Sequence[str]) -> Dict[str, Any]:
    """The heatmap's data, ``(T + 1, T + 1)`` for ``T`` tags:

    - ``rows``: ``["START"] + tags`` (the previous tag), ``cols``: ``tags + ["END"]`` (the next);
    - ``scores``: row 0 the start scores, ``scores[1 + i, j] = transitions[i, j]`` (tag j
      following tag i), column T the end scores, ``nan`` at (START, END), which is no move;
    - ``forbidden``: bool, True where the tag scheme forbids the move: row 0 is
      ``~allowed_start``, ``forbidden[1:, :T]`` is ``~allowed_transitions``, column T is
      ``~allowed_end``; ``not_a_move`` marks (START, END) alone.

    The scores are the raw parameters: a forbidden move's is never used (decoding and training
    replace it by an impossible score), so it keeps its random initial value."""
    start = _to_numpy(crf.start_transitions).astype("float64")
    trans = _to_numpy(crf.transitions).astype("float64")
    end = _to_numpy(crf.end_transitions).astype("float64")
    n = len(tags)
    if trans.shape != (n, n):
        raise ValueError(f"{n} tags but a {trans.shape} transition matrix")
    scores = numpy.full((n + 1, n + 1), numpy.nan)
    scores[0, :n] = start
    scores[1:, :n] = trans
    scores[1:, n] = end
    forbidden = numpy.zeros((n + 1, n + 1), dtype=bool)
    forbidden[0, :n] = ~_to_numpy(crf.allowed_start).astype(bool)
    forbidden[1:, :n] = ~_to_numpy(crf.allowed_transitions).astype(bool)
    forbidden[1:, n] = ~_to_numpy(crf.allowed_end).astype(bool)
    not_a_move = numpy.zeros_like(forbidden)
    not_a_move[0, n] = True
    return {
        "rows": ["START"] + list(tags),
        "cols": list(tags) + ["END"],
        "scores": scores,
        "forbidden": forbidden,
        "not_a_move": not_a_move,
    }


def _label_boundaries(tags: Sequence[str]) -> List[int]:
    """Indices i where tag i starts a new label group (O | B-X I-X ... | B-Y ...)."""
    groups = [tag.partition("-")[2] for tag in tags]
    return [i for i in range(1, len(tags)) if groups[i] != groups[i - 1]]


def plot_transitions(table: Dict[str, Any], path, title: Optional[str] = None):
    """Draw :func:`transition_table` as a heatmap PNG at ``path``; returns the Figure. Forbidden
    cells are grey, hatched and crossed (×); the colour scale covers the allowed cells only."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    scores, forbidden, not_a_move = table["scores"], table["forbidden"], table["not_a_move"]
    rows, cols = table["rows"], table["cols"]
    n = len(rows)
    shown = numpy.ma.masked_array(scores, mask=forbidden | not_a_move | numpy.isnan(scores))
    limit = float(numpy.abs(shown).max()) if shown.count() else 1.0
    limit = limit or 1.0
    annotate = n <= 26
    tick_size = 9 if n <= 20 else 7 if n <= 40 else 5
    side = min(30.0, max(6.5, 0.42 * n + 3.0))

    fig = Figure(figsize=(side + 1.2, side), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    cmap = _colormap("RdBu_r").with_extremes(bad="white")
    image = ax.imshow(shown, cmap=cmap, norm=TwoSlopeNorm(0.0, -limit, limit), aspect="equal")
    for i, j in zip(*numpy.nonzero(forbidden)):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#d0d0d0", edgecolor="#909090",
                               hatch="///", linewidth=0.0))
        ax.text(j, i, "×", ha="center", va="center", color="#555555", fontsize=tick_size + 1)
    for i, j in zip(*numpy.nonzero(not_a_move)):
        ax.text(j, i, "n/a", ha="center", va="center", color="#999999", fontsize=max(5, tick_size - 2))
    if annotate:
        for i, j in zip(*numpy.nonzero(~shown.mask)):
            value = scores[i, j]
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=max(5, tick_size - 2),
                    color="white" if abs(value) > 0.6 * limit else "black")
    # START row / END column set off by thick lines, label groups by thin ones.
    ax.axhline(0.5, color="black", linewidth=1.5)
    ax.axvline(len(cols) - 1.5, color="black", linewidth=1.5)
    for b in _label_boundaries(cols[:-1]):
        ax.axvline(b - 0.5, color="black", linewidth=0.4, alpha=0.6)
    for b in _label_boundaries(rows[1:]):
        ax.axhline(b + 0.5, color="black", linewidth=0.4, alpha=0.6)
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=tick_size)
    ax.set_yticks(range(n), rows, fontsize=tick_size)
    ax.tick_params(top=True, labeltop=True, bottom=True, labelbottom=True)
    ax.set_xlabel("next tag (column)")
    ax.set_ylabel("previous tag (row)")
    ax.set_title(title or "Learned CRF transition scores: row → column\n"
                 "START row: start scores · END column: end scores")
    bar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label("score (log-potential)")
    fig.legend(
        handles=[Patch(facecolor="#d0d0d0", edgecolor="#909090", hatch="///",
                       label=f"× forbidden by the tag scheme ({int(forbidden.sum())} moves, never scored)")],
        loc="outside lower center", fontsize=9, frameon=False,
    )
    fig.savefig(path, format="png")
    return fig


def _colormap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


# -- per-label scores ---------------------------------------------------------------------------


def plot_per_label(scores: Dict[str, Any], counts: Dict[str, Dict[str, int]], path, title: Optional[str] = None):
    """Grouped P/R/F1 bars, overall first, then each label; returns the Figure."""
    from matplotlib.figure import Figure

    per_type = scores.get("ents_per_type") or {}
    groups = [("overall", {k: scores.get(f"ents_{k}") for k in "prf"})]
    groups += [(label, per_type[label]) for label in sorted(per_type)]
    names = []
    for label, _ in groups:
        if label == "overall":
            n_gold = sum(c["gold"] for c in counts.values())
        else:
            n_gold = counts.get(label, {}).get("gold", 0)
        names.append(f"{label}\n(n={n_gold})")
    values = numpy.array([[g[1].get(k) or 0.0 for k in "prf"] for g in groups], dtype="float64")
    x = numpy.arange(len(groups), dtype="float64")
    x[1:] += 0.5  # a gap after "overall"
    width = 0.27
    fig = Figure(figsize=(max(6.5, 1.15 * len(groups) + 2.5), 5.0), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    for k, (key, name) in enumerate((("p", "precision"), ("r", "recall"), ("f", "F1"))):
        bars = ax.bar(x + (k - 1) * width, values[:, k], width, label=name, color=PRF_COLORS[key])
        if len(groups) <= 12:
            ax.bar_label(bars, labels=[f"{v * 100:.1f}" for v in values[:, k]], fontsize=7,
                         padding=2, rotation=90)
    if len(groups) > 1:
        ax.axvline((x[0] + x[1]) / 2, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(x, names, fontsize=9, rotation=0 if len(groups) <= 10 else 45,
                  ha="center" if len(groups) <= 10 else "right")
    ax.set_ylim(0, 1.15)
    ax.set_yticks(numpy.linspace(0, 1, 6))
    ax.set_ylabel("score")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper right", ncols=3, fontsize=9)
    ax.set_title(title or "NER precision / recall / F1 per label (exact span + label)")
    fig.savefig(path, format="png")
    return fig


# -- examples page ------------------------------------------------------------------------------


def _sentence_units(eg: Example) -> List[Tuple[int, int]]:
    """Character ranges of the reference's sentences, or the whole doc without sentences."""
    ref = eg.reference
    if len(ref) and ref.has_annotation("SENT_START"):
        return [(s.start_char, s.end_char) for s in ref.sents]
    return [(0, len(ref.text))]


def _ents_in(doc, start: int, end: int) -> List[Tuple[int, int, str]]:
    return [
        (e.start_char - start, min(e.end_char, end) - start, e.label_)
        for e in doc.ents
        if start <= e.start_char < end
    ]


def example_units(examples: Sequence[Example]) -> List[Dict[str, Any]]:
    """Every sentence of the corpus with its gold and predicted entities (character offsets
    relative to the sentence)."""
    units = []
    for doc_index, eg in enumerate(examples):
        text = eg.reference.text
        for sent_index, (start, end) in enumerate(_sentence_units(eg)):
            gold = _ents_in(eg.reference, start, end)
            pred = _ents_in(eg.predicted, start, end)
            units.append({
                "doc": doc_index, "sent": sent_index, "text": text[start:end],
                "gold": gold, "pred": pred, "differs": set(gold) != set(pred),
            })
    return units


def sample_units(units: List[Dict[str, Any]], n: int, seed: int = 0) -> List[Dict[str, Any]]:
    """Up to ``n`` sentences: at least half (where there are enough) with differences, the rest
    where gold and prediction agree on some entities, then any; in corpus order."""
    rng = random.Random(seed)
    differ = [u for u in units if u["differs"]]
    agree = [u for u in units if not u["differs"] and u["gold"]]
    empty = [u for u in units if not u["differs"] and not u["gold"]]
    n_differ = min(len(differ), max((n + 1) // 2, n - len(agree) - len(empty)))
    chosen = rng.sample(differ, n_differ)
    n_agree = min(len(agree), n - n_differ)
    chosen += rng.sample(agree, n_agree)
    chosen += rng.sample(empty, min(len(empty), n - n_differ - n_agree))
    return sorted(chosen, key=lambda u: (u["doc"], u["sent"]))


def _label_colors(labels: Sequence[str]) -> Dict[str, str]:
    """A distinct colour per label: displaCy's own where it has one (and no other label here
    took it), else the next unused one from a palette."""
    from spacy.displacy.render import DEFAULT_LABEL_COLORS

    colors: Dict[str, str] = {}
    for label in labels:
        color = DEFAULT_LABEL_COLORS.get(label)
        if color is not None and color not in colors.values():
            colors[label] = color
    palette = [c for c in EXTRA_LABEL_COLORS if c not in colors.values()] or EXTRA_LABEL_COLORS
    for i, label in enumerate(label for label in labels if label not in colors):
        colors[label] = palette[i % len(palette)]
    return colors


def _render_ents(text: str, ents: Sequence[Tuple[int, int, str]], colors: Dict[str, str]) -> str:
    from spacy import displacy

    data = {"text": text, "ents": [{"start": s, "end": e, "label": l} for s, e, l in sorted(ents)], "title": None}
    return displacy.render(data, style="ent", manual=True, page=False, jupyter=False,
                           options={"colors": colors})


def _describe(text: str, ents: Sequence[Tuple[int, int, str]]) -> str:
    return ", ".join(f"{html.escape(text[s:e])!s} <b>{html.escape(l)}</b>" for s, e, l in sorted(ents)) or "–"


PAGE_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
table.ex { border-collapse: collapse; width: 100%; margin: 0.4em 0 1.4em 0; table-layout: fixed; }
table.ex th { text-align: left; font-size: 0.85em; color: #555; padding: 0.2em 0.6em; width: 50%; }
table.ex td { vertical-align: top; padding: 0.2em 0.6em; border: 1px solid #ddd; }
div.example { padding: 0.3em 0.8em; border-left: 6px solid #8fbc8f; margin-bottom: 0.6em; }
div.example.differs { border-left-color: #d9534f; background: #fff5f5; }
div.meta { font-size: 0.85em; color: #555; }
div.meta .tag { font-weight: bold; }
div.differs .tag { color: #c9302c; }
div.same .tag { color: #3c763d; }
.diff { font-size: 0.85em; margin-top: 0.2em; }
"""


def render_examples_page(
    examples: Sequence[Example], path, n_examples: int = 25, seed: int = 0,
    title: str = "NER examples: gold vs predicted",
    summary: str = "",
) -> Dict[str, int]:
    """Write an HTML page of sampled sentences, gold and predicted entities side by side (each
    rendered by displaCy), sentences where they differ highlighted. Returns counts."""
    units = example_units(examples)
    shown = sample_units(units, n_examples, seed)
    labels = {l for u in units for _, _, l in u["gold"] + u["pred"]}
    colors = _label_colors(sorted(labels))
    n_differ_all = sum(u["differs"] for u in units)
    n_differ_shown = sum(u["differs"] for u in shown)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{PAGE_STYLE}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(summary)}</p>" if summary else "",
        f"<p>{len(shown)} of {len(units)} sentences shown ({n_differ_shown} where gold and predicted "
        f"entities differ, highlighted in red; {n_differ_all} such sentences in the whole corpus). "
        f"Sampled with seed {seed}, at least half among the sentences with differences where "
        "there are enough; in corpus order.</p>",
    ]
    for u in shown:
        gold, pred = set(u["gold"]), set(u["pred"])
        kind = "differs" if u["differs"] else "same"
        parts.append(f'<div class="example {kind}">')
        parts.append(
            f'<div class="meta">doc {u["doc"]}, sentence {u["sent"]} · '
            f'<span class="tag">{"DIFFERS" if u["differs"] else "agrees"}</span> · '
            f"{len(gold)} gold, {len(pred)} predicted</div>"
        )
        if u["differs"]:
            parts.append(
                f'<div class="diff">missed (gold only): {_describe(u["text"], gold - pred)}<br>'
                f'spurious (predicted only): {_describe(u["text"], pred - gold)}</div>'
            )
        parts.append('<table class="ex"><tr><th>GOLD</th><th>PREDICTED</th></tr><tr>')
        parts.append(f"<td>{_render_ents(u['text'], u['gold'], colors)}</td>")
        parts.append(f"<td>{_render_ents(u['text'], u['pred'], colors)}</td>")
        parts.append("</tr></table></div>")
    parts += ["</body>", "</html>"]
    Path(path).write_text("\n".join(parts), encoding="utf8")
    return {"sentences": len(units), "shown": len(shown), "differ_shown": n_differ_shown,
            "differ_total": n_differ_all}


# -- reliability diagram ------------------------------------------------------------------------


def _draw_reliability(top, bottom, result: Dict[str, Any], title: str) -> None:
    """One reliability diagram: accuracy per bin against confidence, with the diagonal of
    perfect calibration and the gap to it (``top``), the bin counts below (``bottom``)."""
    bins = result["bins"]
    width = 1.0 / result["n_bins"]
    lowers = numpy.array([b["lower"] for b in bins])
    centers = lowers + width / 2
    counts = numpy.array([b["count"] for b in bins])
    filled = counts > 0
    accuracy = numpy.array([b["accuracy"] if b["count"] else 0.0 for b in bins])
    confidence = numpy.array([b["confidence"] if b["count"] else 0.0 for b in bins])

    top.bar(lowers[filled], accuracy[filled], width=width, align="edge", color="#4c72b0",
            edgecolor="white", linewidth=1.0, label="accuracy")
    # The gap between each bin's accuracy and its mean confidence.
    gap_bottom = numpy.minimum(accuracy, confidence)[filled]
    gap_height = numpy.abs(accuracy - confidence)[filled]
    top.bar(lowers[filled], gap_height, bottom=gap_bottom, width=width, align="edge", color="#dd8452",
            alpha=0.35, edgecolor="#c44e52", hatch="//", linewidth=0.8, label="gap")
    top.plot(confidence[filled], accuracy[filled], "o", color="black", markersize=4,
             label="bin (mean confidence, accuracy)")
    top.plot([0, 1], [0, 1], "--", color="grey", linewidth=1.2, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy (exact span + label)")
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    if result["n_entities"]:
        summary = (f"ECE = {result['ece']:.4f}\nMCE = {result['mce']:.4f}\nN = {result['n_entities']}\n"
                   f"accuracy = {result['accuracy']:.3f}\nmean conf. = {result['mean_confidence']:.3f}")
    else:
        summary = "no predictions"
    top.text(0.97, 0.03, summary, transform=top.transAxes, ha="right", va="bottom", fontsize=9,
             bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "#999999"})
    top.set_title(title, fontsize=10)

    bottom.bar(lowers, counts, width=width, align="edge", color="#55a868", edgecolor="white")
    for x, count in zip(centers, counts):
        if count:
            bottom.text(x, count, str(int(count)), ha="center", va="bottom", fontsize=7)
    bottom.set_ylim(0, max(1, counts.max()) * 1.2)
    bottom.set_xlim(0, 1)
    bottom.set_xticks(numpy.linspace(0, 1, min(result["n_bins"], 10) + 1))
    bottom.tick_params(axis="x", labelsize=8)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("count")
    bottom.grid(True, axis="y", alpha=0.3)


def plot_reliability(panels: Sequence[Tuple[str, Dict[str, Any]]], path, title: Optional[str] = None):
    """Reliability diagrams side by side, one per ``(caption, report)``
    (:func:`spacy_crf_ner.scoring.calibration_report` reports), as a PNG at ``path``; returns
    the Figure."""
    from matplotlib.figure import Figure  # rendered with Agg; no pyplot, no global state

    fig = Figure(figsize=(6.0 * len(panels), 7.0), dpi=120, layout="constrained")
    axes = fig.subplots(2, len(panels), sharex=True, squeeze=False, gridspec_kw={"height_ratios": [3, 1]})
    for column, (caption, report) in enumerate(panels):
        _draw_reliability(axes[0, column], axes[1, column], report, caption)
    fig.suptitle(title or "Reliability diagram")
    fig.savefig(path, format="png")
    return fig


# -- the whole evaluation ---------------------------------------------------------------------


def _pct(value) -> str:
    return f"{value * 100:.2f}" if isinstance(value, (int, float)) else "-"


def evaluate(
    model: Path,
    data_path: Path,
    output_dir: Path,
    gpu_id: int = -1,
    n_examples: int = 25,
    component: str = "crf_ner",
    seed: int = 0,
    silent: bool = False,
) -> Dict[str, Any]:
    """Evaluate ``model`` on ``data_path`` and write scores.json and the pictures to
    ``output_dir``. Returns what scores.json holds."""
    msg = Printer(no_print=silent, pretty=not silent)
    setup_gpu(gpu_id, silent=silent)
    model, data_path, output_dir = Path(model), Path(data_path), Path(output_dir)
    if not data_path.exists():
        raise FileNotFoundError(f"No such corpus: {data_path}")
    nlp = spacy.load(model)
    name, pipe = find_ner_component(nlp, component, msg)
    examples = list(Corpus(data_path, gold_preproc=False)(nlp))
    if not examples:
        raise ValueError(f"The corpus {data_path} holds no documents")
    output_dir.mkdir(parents=True, exist_ok=True)

    raw, predicted = score_pipeline(nlp, examples)
    counts = entity_counts(predicted)
    notes: List[str] = []
    result: Dict[str, Any] = {
        "model": str(model),
        "data": str(data_path),
        "component": name,
        "factory": nlp.get_pipe_meta(name).factory,
        "n_docs": len(predicted),
        "n_words": sum(len(eg.predicted) for eg in predicted),
        "words_per_second": raw.get("speed"),
        "ents_p": raw.get("ents_p"),
        "ents_r": raw.get("ents_r"),
        "ents_f": raw.get("ents_f"),
        "ents_per_type": raw.get("ents_per_type") or {},
        "ents_ece": raw.get("ents_ece"),
        "entity_counts": counts,
        "calibration": None,
        "calibration_uncalibrated": None,
        "notes": notes,
    }

    # Scores table, as `spacy evaluate` prints it, plus the entity counts.
    msg.divider(f"Evaluation of '{name}' on {data_path.name}")
    msg.table(
        [("Docs", result["n_docs"]), ("Words", result["n_words"]),
         ("Words/s", f"{result['words_per_second']:.0f}" if result["words_per_second"] else "-"),
         ("NER P", _pct(result["ents_p"])), ("NER R", _pct(result["ents_r"])), ("NER F", _pct(result["ents_f"]))],
        title="Results",
    )
    rows = [("ALL", _pct(result["ents_p"]), _pct(result["ents_r"]), _pct(result["ents_f"]),
             sum(c["gold"] for c in counts.values()), sum(c["predicted"] for c in counts.values()))]
    for label in sorted(result["ents_per_type"]):
        prf = result["ents_per_type"][label]
        c = counts.get(label, {"gold": 0, "predicted": 0})
        rows.append((label, _pct(prf["p"]), _pct(prf["r"]), _pct(prf["f"]), c["gold"], c["predicted"]))
    msg.table(rows, header=("", "P", "R", "F", "Gold", "Pred"), aligns=("l", "r", "r", "r", "r", "r"),
              title="NER (per type)")

    plot_per_label(result, counts, output_dir / "per_label_prf.png",
                   title=f"{name} on {data_path.name}: P / R / F1 per label (exact span + label)")
    msg.good(f"Wrote {output_dir / 'per_label_prf.png'}")

    crf, heat_note = None, heatmap_skip_reason(pipe)
    if heat_note is None:
        try:
            crf = pipe_crf(pipe)
        except ValueError as err:
            heat_note = str(err)
    if crf is not None:
        tags = list(getattr(pipe, "tags", None) or pipe.model.get_ref("crf").attrs["tags"])
        plot_transitions(transition_table(crf, tags), output_dir / "transitions.png")
        msg.good(f"Wrote {output_dir / 'transitions.png'}")
    else:
        notes.append(f"transition heatmap skipped: {heat_note or repr(name) + ' (' + result['factory'] + ') has no CRF'}")
        msg.info(notes[-1])

    shown = render_examples_page(predicted, output_dir / "examples.html", n_examples, seed,
                                 title=f"{name} on {data_path.name}: gold vs predicted entities",
                                 summary=f"Overall (spaCy scorer, exact span + label): P {_pct(result['ents_p'])}, "
                                         f"R {_pct(result['ents_r'])}, F {_pct(result['ents_f'])} "
                                         f"on {result['n_docs']} docs, {result['n_words']} words.")
    msg.good(f"Wrote {output_dir / 'examples.html'} ({shown['shown']} sentences, "
             f"{shown['differ_shown']} with differences)")

    key = spans_key_of(pipe)
    calib = calibration_report(predicted, key)
    if calib is None:
        notes.append(f"calibration skipped: no doc.spans[{key!r}] in the predictions")
        msg.info(notes[-1])
    elif calib["n_entities"] == 0:
        notes.append("calibration skipped: no scored predicted entities")
        msg.info(notes[-1])
    else:
        result["calibration"] = calib
        temperature = (getattr(pipe, "cfg", None) or {}).get("temperature", 1.0)
        before = uncalibrated_report(nlp, pipe, examples, key)
        result["temperature"] = temperature
        result["calibration_uncalibrated"] = before
        title = f"{name} on {data_path.name}: entity confidence calibration"
        panels = [("before calibration: temperature 1 (as trained)", before), (f"after calibration: temperature {temperature:.3f}", calib)]
        plot_reliability(panels if before is not None else [("as trained (not calibrated)", calib)],
                         output_dir / "reliability.png", title=title)
        rows = [("Entities", calib["n_entities"]), ("Accuracy", f"{calib['accuracy']:.4f}")]
        for label, field in (("Mean confidence", "mean_confidence"), ("ECE", "ece"), ("MCE", "mce"), ("Brier", "brier")):
            rows.append((label, (f"{before[field]:.4f} -> " if before is not None else "") + f"{calib[field]:.4f}"))
        caption = f"temperature 1 -> {temperature:.3f}, " if before is not None else ""
        msg.table(rows, title=f"Calibration (doc.spans[{key!r}], {caption}{calib['n_bins']} bins)")
        msg.good(f"Wrote {output_dir / 'reliability.png'}")

    with (output_dir / "scores.json").open("w", encoding="utf8") as f:
        json.dump(result, f, indent=2)
    msg.good(f"Wrote {output_dir / 'scores.json'}")
    return result


@app.command()
def main(
    model: Path = typer.Argument(..., exists=True, file_okay=False, help="Pipeline directory"),
    data_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Test corpus (.spacy)"),
    output_dir: Path = typer.Argument(..., file_okay=False, help="Where scores.json and the pictures go"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    n_examples: int = typer.Option(25, "--n-examples", "-n", help="Sentences in examples.html"),
    component: str = typer.Option("crf_ner", "--component", "-c", help="The NER component's name"),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling the example sentences"),
) -> None:
    """Score an NER pipeline on a corpus (spaCy's scorer) and draw per-label scores, CRF
    transitions, examples and confidence calibration."""
    try:
        evaluate(model, data_path, output_dir, gpu_id, n_examples, component, seed)
    except (ValueError, FileNotFoundError) as err:
        Printer().fail(str(err), exits=1)


if __name__ == "__main__":
    app()
