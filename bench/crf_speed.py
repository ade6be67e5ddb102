"""Speed of our ``ConstrainedCRF`` against ``torchcrf.CRF`` on CPU, on the same parameters and inputs.

For each tag count (9 = BILUO over 2 labels, 73 = BILUO over 18 labels) and sequence length, with a
batch of random emissions and random lengths in ``[L/2, L]`` (the first sequence full length), it
times:

- ``loss``: the negative log-likelihood forward and backward (gradients to the emissions and the
  CRF parameters). Ours: ``(-crf(emissions, tags, mask)).backward()``; torchcrf: the same call;
- ``decode``: decoding under ``torch.no_grad()``. Ours twice: ``crf.viterbi()`` (tensors, what
  the pipeline uses) and ``crf.decode()`` (lists, torchcrf's contract); torchcrf: ``decode()``.

Ours runs twice: with no constraints (the exact same model as torchcrf's) and with the real BILUO
constraints (``tags.transition_constraints``). Before timing, the unconstrained model is checked
to decode the same paths and give the same log-likelihood as torchcrf, so both measure equal work.

Then the loss in harder regimes (batch 64, 40 tokens):

- ``confident``: 13 tags, emissions of scale 15-50, where tags trail the best by hundreds of nats
  (float32 sums of exp underflow there);
- ``partly known``: 25 tags, half the gold tags unknown (-1): ours sums over the paths that agree
  with the known tags, torchcrf (which cannot) scores the full gold path: the same job it does
  with full gold, so this column shows what partial annotation costs us against it.

And forward-backward (what entity confidences run on) against the log partition, no gradients,
9, 13 and 73 tags, batch 64 x 40: ``posteriors`` (the scaled kernel in probability space), the
log-space NumPy kernel it replaced, and the log-space reference.

Timings are per call in milliseconds: the median (and min) over ``--repeats`` rounds, each round
timing a few calls of every implementation in turn, so that load from other jobs hits all alike.
``ratio`` is torchcrf's median time over ours (above 1: ours is faster), ``ratio_min`` the same
from the fastest rounds. The JSON also records the machine (CPU model, torch version, threads)
and its load average before and after, since a busy machine slows everything down.

    python bench/crf_speed.py --out bench/results/crf_speed.json --repeats 15
    python bench/crf_speed.py --report-only   # the report again from bench/results/crf_speed.json
"""
import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common import (  # noqa: E402  (bench/ is on the path: the script's folder)
    command_line,
    load_average,
    machine_info,
    set_torch_threads,
    threads_from_argv,
    write_report,
)

threads_from_argv(sys.argv)  # before torch's import: the BLAS pools read their variables then

import torch  # noqa: E402
import torchcrf  # noqa: E402

from spacy_crf_ner import crf_kernels  # noqa: E402
from spacy_crf_ner.crf import ConstrainedCRF, lengths_to_mask  # noqa: E402
from spacy_crf_ner.tags import make_tags, transition_constraints  # noqa: E402

# BILUO tag counts: 1 + 4 * labels.
LABELS = {
    9: ["LOC", "PER"],
    13: ["LOC", "ORG", "PER"],
    25: ["EVENT", "LOC", "MISC", "ORG", "PER", "PRODUCT"],
    73: [
        "CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP",
        "ORDINAL", "ORG", "PERCENT", "PERSON", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART",
    ],
}


def make_models(num_tags: int, seed: int):
    """(torchcrf, ours unconstrained, ours BILUO-constrained), all on the same parameters."""
    torch.manual_seed(seed)
    ours = ConstrainedCRF(num_tags)
    with torch.no_grad():  # torchcrf's init is uniform(-0.1, 0.1); widen it so paths are not all O
        for param in ours.parameters():
            param.uniform_(-1.0, 1.0)
    state = {k: v for k, v in ours.state_dict().items() if not k.startswith("allowed_")}
    theirs = torchcrf.CRF(num_tags, batch_first=True)
    theirs.load_state_dict(state)
    tags = make_tags(LABELS[num_tags], "BILUO")
    assert len(tags) == num_tags
    start, trans, end = (torch.as_tensor(a) for a in transition_constraints(tags, "BILUO"))
    constrained = ConstrainedCRF(num_tags, start, trans, end)
    constrained.load_state_dict(state, strict=False)
    return theirs, ours, constrained


def make_inputs(batch: int, length: int, num_tags: int, seed: int, scale: float = 2.0):
    gen = torch.Generator().manual_seed(seed)
    emissions = torch.randn(batch, length, num_tags, generator=gen) * scale
    lengths = torch.randint(max(1, length // 2), length + 1, (batch,), generator=gen)
    lengths[0] = length
    mask = lengths_to_mask(lengths, length)
    return emissions, mask


def gold_tags(crf: ConstrainedCRF, emissions: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
    """Valid gold paths for ``crf`` (its best path, with a random tenth of tokens re-tagged when
    unconstrained), padded with 0 (torchcrf indexes the tags of padding tokens too)."""
    with torch.no_grad():
        _, tags = crf.viterbi(emissions + 3.0 * torch.randn_like(emissions), mask)
    tags = tags.clamp(min=0)
    if bool(crf.allowed_transitions.all()):
        gen = torch.Generator().manual_seed(seed)
        noise = torch.rand(tags.shape, generator=gen) < 0.1
        tags = torch.where(noise, torch.randint(0, crf.num_tags, tags.shape, generator=gen), tags)
    return tags.masked_fill(~mask, 0)


def check_parity(theirs, ours, emissions, mask, tags) -> Dict[str, float]:
    with torch.no_grad():
        expected_paths = theirs.decode(emissions, mask)
        paths = ours.decode(emissions, mask)
        _, tag_tensor = ours.viterbi(emissions, mask)
        expected_llh = theirs(emissions, tags, mask, reduction="none")
        llh = ours(emissions, tags, mask, reduction="none")
    assert paths == expected_paths, "decoded paths differ from torchcrf's"
    lengths = mask.sum(1).tolist()
    assert [row[:n] for row, n in zip(tag_tensor.tolist(), lengths)] == expected_paths
    assert torch.allclose(llh, expected_llh, rtol=1e-4, atol=1e-3), (llh, expected_llh)
    # and the gradients of the loss
    grads = []
    for crf in (theirs, ours):
        em = emissions.clone().requires_grad_(True)
        crf.zero_grad(set_to_none=True)
        (-crf(em, tags, mask)).backward()
        grads.append([em.grad] + [p.grad for p in crf.parameters()])
    grad_diff = 0.0
    for a, b in zip(*grads):  # float32 sums over the batch and sequence: loose tolerance
        scale = max(1.0, float(a.abs().max()))
        grad_diff = max(grad_diff, float((a - b).abs().max()) / scale)
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-3 * scale), float((a - b).abs().max())
    return {
        "max_llh_abs_diff": float((llh - expected_llh).abs().max()),
        "max_llh_rel_diff": float(((llh - expected_llh).abs() / expected_llh.abs().clamp(min=1)).max()),
        "max_grad_rel_diff": grad_diff,
    }


def timed(fns: Dict[str, Callable[[], object]], repeats: int, min_round_s: float) -> Dict[str, Dict[str, float]]:
    """Median / min ms per call of each function, measured round-robin."""
    calls = {}
    for name, fn in fns.items():  # warm up, and pick how many calls make a round
        fn()
        start = time.perf_counter()
        fn()
        once = time.perf_counter() - start
        calls[name] = max(1, int(min_round_s / max(once, 1e-6)))
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = calls[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) / n * 1e3)
    return {
        name: {"median_ms": statistics.median(s), "min_ms": min(s), "calls_per_round": calls[name]}
        for name, s in samples.items()
    }


def loss_fn(crf, emissions, tags, mask):
    def run():
        em = emissions.detach().requires_grad_(True)
        crf.zero_grad(set_to_none=True)
        (-crf(em, tags, mask)).backward()

    return run


def no_grad(fn):
    def run():
        with torch.no_grad():
            return fn()

    return run


def bench_case(batch: int, length: int, num_tags: int, args) -> Dict[str, object]:
    seed = args.seed + 1000 * length + num_tags
    theirs, ours, constrained = make_models(num_tags, seed)
    emissions, mask = make_inputs(batch, length, num_tags, seed)
    tags = gold_tags(ours, emissions, mask, seed)
    tags_c = gold_tags(constrained, emissions, mask, seed)
    parity = check_parity(theirs, ours, emissions, mask, tags)

    fns = {
        "loss/torchcrf": loss_fn(theirs, emissions, tags, mask),
        "loss/ours": loss_fn(ours, emissions, tags, mask),
        "loss/ours_biluo": loss_fn(constrained, emissions, tags_c, mask),
        "decode/torchcrf": no_grad(lambda: theirs.decode(emissions, mask)),
        "viterbi/ours": no_grad(lambda: ours.viterbi(emissions, mask)),
        "viterbi/ours_biluo": no_grad(lambda: constrained.viterbi(emissions, mask)),
        "decode/ours": no_grad(lambda: ours.decode(emissions, mask)),
        "decode/ours_biluo": no_grad(lambda: constrained.decode(emissions, mask)),
    }
    times = timed(fns, args.repeats, args.min_round_s)
    rows = {}
    for name, t in times.items():
        ref = times["loss/torchcrf" if name.startswith("loss") else "decode/torchcrf"]
        rows[name] = dict(t, ratio=ref["median_ms"] / t["median_ms"], ratio_min=ref["min_ms"] / t["min_ms"])
    return {
        "batch": batch,
        "length": length,
        "num_tags": num_tags,
        "mean_length": float(mask.sum(1).float().mean()),
        "parity": parity,
        "times": rows,
    }


def bench_regime(name: str, num_tags: int, scale: float, unknown_share: float, args) -> Dict[str, object]:
    """The loss at batch 64 x 40 with emissions of ``scale`` and a share of unknown gold tags."""
    batch, length = 64, 40
    seed = args.seed + int(scale) + num_tags
    theirs, ours, constrained = make_models(num_tags, seed)
    emissions, mask = make_inputs(batch, length, num_tags, seed, scale)
    tags, tags_c = gold_tags(ours, emissions, mask, seed), gold_tags(constrained, emissions, mask, seed)
    unknown = torch.rand(tags.shape, generator=torch.Generator().manual_seed(seed)) < unknown_share
    fns = {
        "loss/torchcrf": loss_fn(theirs, emissions, tags, mask),
        "loss/ours": loss_fn(ours, emissions, tags.masked_fill(unknown, -1), mask),
        "loss/ours_biluo": loss_fn(constrained, emissions, tags_c.masked_fill(unknown, -1), mask),
    }
    times = timed(fns, args.repeats, args.min_round_s)
    ref = times["loss/torchcrf"]
    rows = {key: dict(t, ratio=ref["median_ms"] / t["median_ms"], ratio_min=ref["min_ms"] / t["min_ms"]) for key, t in times.items()}
    return {"regime": name, "num_tags": num_tags, "batch": batch, "length": length, "scale": scale,
            "unknown_share": unknown_share, "times": rows}


def bench_posteriors(num_tags: int, args) -> Dict[str, object]:
    """Forward-backward (ours, and the log-space reference) against the log partition, no grad."""
    batch, length = 64, 40
    seed = args.seed + num_tags
    _, _, constrained = make_models(num_tags, seed)
    emissions, mask = make_inputs(batch, length, num_tags, seed)
    scores = [score.detach() for score in constrained.constrained_scores()]
    arrays = (emissions.double().numpy(), mask.sum(1).numpy(), *(score.double().numpy() for score in scores))
    fns = {
        "log_partition": no_grad(lambda: constrained.log_partition(emissions, mask)),
        "posteriors": no_grad(lambda: constrained.posteriors(emissions, mask)),
        # What posteriors ran before the scaled kernel (and still runs on the sequences it redoes).
        "forward_backward_log_numpy": lambda: crf_kernels.forward_backward_log_numpy(*arrays),
        "forward_backward_reference": no_grad(lambda: crf_kernels.forward_backward_reference(emissions, mask, *scores)),
    }
    return {"num_tags": num_tags, "batch": batch, "length": length, "times": timed(fns, args.repeats, args.min_round_s)}


TITLE = "CRF speed: `ConstrainedCRF` vs `torchcrf.CRF` (CPU)"
COLUMNS = [
    ("loss/torchcrf", "loss torchcrf"),
    ("loss/ours", "loss ours"),
    ("loss/ours_biluo", "loss ours+BILUO"),
    ("decode/torchcrf", "decode torchcrf"),
    ("viterbi/ours", "viterbi ours"),
    ("viterbi/ours_biluo", "viterbi ours+BILUO"),
    ("decode/ours", "decode ours"),
    ("decode/ours_biluo", "decode ours+BILUO"),
]


def body(results: Dict[str, object], meta: Dict[str, object]) -> str:
    """The report under write_report's header. Reads only ``results`` and ``meta``, so a finished
    run re-renders."""
    lines = [
        f"1-min load average {meta['load_average_before'][0]:.1f} before and "
        f"{meta['machine']['load_average'][0]:.1f} after. Batch {results['batch']}, random lengths in "
        f"[L/2, L]; median ms per call over {results['repeats']} rounds, and in parentheses "
        "torchcrf's time over ours (x faster). Loss = NLL forward + backward; decoding under no_grad "
        "(`viterbi` returns tensors, `decode` lists as torchcrf does). `+BILUO`: with the BILUO "
        "transition constraints.",
        "",
        "| tags | L | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---:|---:|" + "---:|" * len(COLUMNS),
    ]
    for case in results["cases"]:
        cells = []
        for key, _ in COLUMNS:
            t = case["times"][key]
            cell = f"{t['median_ms']:.2f}"
            if not key.endswith("torchcrf"):
                cell += f" ({t['ratio']:.1f}x)"
            cells.append(cell)
        lines.append(f"| {case['num_tags']} | {case['length']} | " + " | ".join(cells) + " |")
    ours = [(key, title) for key, title in COLUMNS if not key.endswith("torchcrf")]
    lines += [
        "",
        "The same speed-ups (torchcrf's time over ours) from each one's fastest round, which load "
        "from other jobs disturbs least:",
        "",
        "| tags | L | " + " | ".join(title for _, title in ours) + " |",
        "|---:|---:|" + "---:|" * len(ours),
    ]
    for case in results["cases"]:
        cells = [f"{case['times'][key]['ratio_min']:.1f}x" for key, _ in ours]
        lines.append(f"| {case['num_tags']} | {case['length']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The loss in harder regimes, batch 64 x 40 (median ms, torchcrf's time over ours; in "
        "brackets the same from the fastest rounds). `partly known`: half our gold tags are -1, "
        "torchcrf scores the full gold path.",
        "",
        "| regime | tags | emission scale | loss torchcrf | loss ours | loss ours+BILUO |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case in results["regimes"]:
        t = case["times"]
        cells = [f"{t['loss/torchcrf']['median_ms']:.2f}"] + [
            f"{t[key]['median_ms']:.2f} ({t[key]['ratio']:.1f}x) [{t[key]['ratio_min']:.1f}x]" for key in ("loss/ours", "loss/ours_biluo")
        ]
        lines.append(f"| {case['regime']} | {case['num_tags']} | {case['scale']:g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Forward-backward for entity confidences, no gradients, BILUO, batch 64 x 40 (median ms):",
        "",
        "| tags | log_partition | posteriors (scaled, probability space) | log-space NumPy kernel (before) | forward-backward, log-space reference |",
        "|---:|---:|---:|---:|---:|",
    ]
    for case in results["posteriors"]:
        t = case["times"]
        lines.append(f"| {case['num_tags']} | {t['log_partition']['median_ms']:.2f} | {t['posteriors']['median_ms']:.2f} | "
                     f"{t['forward_backward_log_numpy']['median_ms']:.2f} | {t['forward_backward_reference']['median_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def report(out: Path, results: Dict[str, object], meta: Dict[str, object]) -> None:
    """``out`` (JSON: meta and results) and its markdown beside it."""
    print(write_report(out.with_suffix(""), TITLE, meta, body(results, meta), results))
    print(f"wrote {out} and {out.with_suffix('.md')}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "crf_speed.json")
    parser.add_argument("--repeats", type=int, default=15, help="timing rounds per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (0: the libraries' defaults)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--num-tags", type=int, nargs="+", default=[9, 73], choices=sorted(LABELS))
    parser.add_argument("--confident-scales", type=float, nargs="+", default=[15.0, 20.0, 30.0, 50.0])
    parser.add_argument("--min-round-s", type=float, default=0.05, help="least time one round runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-only", action="store_true", help="render the report again from --out's JSON")
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads(args.out.read_text(encoding="utf-8"))
        return report(args.out, results, results.pop("meta"))

    if args.threads > 0:
        set_torch_threads(args.threads)
    date, load_before = datetime.datetime.now().isoformat(timespec="seconds"), load_average()
    results = {
        "batch": args.batch,
        "repeats": args.repeats,
        "cases": [],
        "regimes": [],
        "posteriors": [],
    }
    for num_tags in args.num_tags:
        for length in args.lengths:
            case = bench_case(args.batch, length, num_tags, args)
            results["cases"].append(case)
            t = case["times"]
            print(
                f"T={num_tags:3d} L={length:4d}  loss {t['loss/ours']['median_ms']:8.2f} ms "
                f"(x{t['loss/ours']['ratio']:.2f})  viterbi {t['viterbi/ours']['median_ms']:7.2f} ms "
                f"(x{t['viterbi/ours']['ratio']:.1f})  decode {t['decode/ours']['median_ms']:7.2f} ms "
                f"(x{t['decode/ours']['ratio']:.1f})",
                file=sys.stderr,
                flush=True,
            )
    regimes = [("confident", 13, scale, 0.0) for scale in args.confident_scales] + [
        ("partly known", 25, 2.0, 0.5),
        ("full gold", 25, 2.0, 0.0),
    ]
    for name, num_tags, scale, unknown_share in regimes:
        case = bench_regime(name, num_tags, scale, unknown_share, args)
        results["regimes"].append(case)
        t = case["times"]
        print(f"{name} T={num_tags} scale={scale:g}: torchcrf {t['loss/torchcrf']['median_ms']:.2f} ms, ours+BILUO "
              f"{t['loss/ours_biluo']['median_ms']:.2f} ms (x{t['loss/ours_biluo']['ratio']:.2f})", file=sys.stderr, flush=True)
    for num_tags in (9, 13, 73):
        results["posteriors"].append(bench_posteriors(num_tags, args))
    meta = {
        "date": date,
        "command": command_line(sys.argv[0], sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "load_average_before": load_before,
    }
    report(args.out, results, meta)


if __name__ == "__main__":
    main()
