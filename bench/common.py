"""The benchmarks' one harness: thread setup, the machine's description, the sentence reader, spaCy's
`ner` as the peer, and one writer for every report (markdown + JSON, targets as data)."""
import copy
import datetime
import json
import os
import platform
import shlex
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Dict, List, Optional

from thinc.api import Config

PACKAGES = ("spacy", "thinc", "torch", "spacy-transformers", "transformers", "numpy", "pytorch-crf")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def read_sentences(path: Path) -> List[List[str]]:
    """The sentences of a token-per-line file, each a list of its raw lines (blank lines separate)."""
    sentences: List[List[str]] = [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            sentences[-1].append(line)
        elif sentences[-1]:
            sentences.append([])
    return [s for s in sentences if s]


def ner_peer_config(cfg: Config, encoder: str) -> Config:
    """Our config with crf_ner replaced by spaCy's `ner` as `spacy init config -p ner` makes it,
    on the same listener (same tok2vec / transformer, same training settings)."""
    peer = copy.deepcopy(cfg)
    crf = peer["components"].pop("crf_ner")
    peer["components"]["ner"] = {
        "factory": "ner",
        "incorrect_spans_key": None,
        "moves": None,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
        "update_with_oracle_cut_size": 100,
        "model": {
            "@architectures": "spacy.TransitionBasedParser.v2",
            "state_type": "ner",
            "extra_state_tokens": False,
            "hidden_width": 64,
            "maxout_pieces": 2,
            "use_upper": encoder != "trf",
            "nO": None,
            "tok2vec": crf["model"]["tok2vec"],
        },
    }
    peer["nlp"]["pipeline"] = ["ner" if name == "crf_ner" else name for name in peer["nlp"]["pipeline"]]
    return Config(peer)


# -- the harness: threads, machine metadata, one report writer ----------------------------------

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def threads_from_argv(argv: List[str], default: int = 1) -> int:
    """``--threads N`` from the command line, read before torch is imported: the BLAS pools read
    their environment variables at import, so they are set here (unless already set) and torch's
    own pool again by ``set_torch_threads`` once torch is in."""
    threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else default
    for variable in THREAD_VARIABLES:
        os.environ.setdefault(variable, str(threads))
    return threads


def set_torch_threads(threads: int) -> int:
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


def machine_info() -> Dict[str, Any]:
    """What a result needs to be read against: the CPU, the cores, torch's threads, the load."""
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "thread_env": {v: os.environ.get(v) for v in THREAD_VARIABLES},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "versions": versions(),
    }


def command_line(script: str, argv: List[str]) -> str:
    root = Path(__file__).resolve().parent.parent
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(script, root)] + list(argv))


def write_report(stem: Path, title: str, meta: Dict[str, Any], body: str, data: Dict[str, Any],
                 targets: Optional[List[Dict[str, Any]]] = None) -> str:
    """Write ``stem.md`` (title, machine, command, ``body``, then the targets table) and
    ``stem.json`` (``meta``, ``data`` and the targets); returns the markdown.

    ``targets``: ``[{"name", "measured", "target", "met"}, ...]``, the claims a benchmark checks,
    kept as data so that the table and the JSON say the same thing."""
    machine = meta["machine"]
    header = [
        f"# {title}",
        "",
        f"{meta.get('date', datetime.date.today().isoformat())}, {machine['cpu']}, {machine['cores']} cores "
        f"(shared with other jobs), torch threads {machine['torch_threads']}, load average "
        f"{' / '.join(str(x) for x in machine['load_average'])} (1/5/15 min, when the report was written); "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()) + ".",
        "",
        f"Command: `{meta['command']}`",
        "",
    ]
    lines = header + [body.rstrip(), ""]
    if targets:
        lines += ["| target | measured | wanted | met |", "|---|---:|---:|:---:|"]
        lines += [f"| {t['name']} | {t['measured']} | {t['target']} | {'yes' if t['met'] else 'NO'} |" for t in targets]
        lines.append("")
    text = "\n".join(lines)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(text, encoding="utf-8")
    payload = {"meta": meta, **data}
    if targets:
        payload["targets"] = targets
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8")
    return text
