"""The benchmarks' one harness: thread setup, the machine's description, the sentence reader, spaCy's
`ner` as the peer, one writer for every report (markdown + JSON, targets as data), and fresh
worker processes timed in turns."""
import contextlib
import copy
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

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


def versions(extra_packages: Sequence[str] = ()) -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for name in (*PACKAGES, *extra_packages):
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


def set_dotted(cfg: Dict, key: str, value: Any) -> None:
    """``cfg["a"]["b"]["c"] = value`` for ``key = "a.b.c"`` (a copy of ``value``, so that configs
    never share a mutable value)."""
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[last] = copy.deepcopy(value)


def threads_from_argv(argv: List[str], default: int = 1) -> int:
    """``--threads N`` from the command line, read before torch is imported: the BLAS pools read
    their environment variables at import, so they are set here (unless already set) and torch's
    own pool again by ``set_torch_threads`` once torch is in. ``0`` leaves the libraries' own
    defaults, as a user gets them. On a shared 2-core machine two threads per process
    oversubscribe the cores, hence the default of 1."""
    threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else default
    if threads:
        for variable in THREAD_VARIABLES:
            os.environ.setdefault(variable, str(threads))
    return threads


def set_torch_threads(threads: int) -> int:
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


def load_average() -> List[float]:
    """The 1, 5 and 15 minute load averages, at the two decimals the kernel keeps (getloadavg adds noise digits)."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(extra_packages: Sequence[str] = ()) -> Dict[str, Any]:
    """What a result needs to be read against: the CPU, the cores, torch's threads, the load.
    ``extra_packages``: packages a benchmark runs besides ``PACKAGES``, whose versions it records too."""
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "thread_env": {v: os.environ.get(v) for v in THREAD_VARIABLES},
        "load_average": load_average(),
        "platform": platform.platform(),
        "versions": versions(extra_packages),
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


# -- fresh worker processes, timed in turns (pipeline_speed.py and any benchmark like it) -------


def maxrss_mib() -> float:
    """Peak RSS of this process in MiB: ``VmHWM`` from /proc/self/status, the high-water mark of
    this process's own address space. ``ru_maxrss`` (also recorded) is the same number only when
    the parent was smaller: Linux carries the forking parent's peak across ``exec`` into the
    child's ``ru_maxrss``, so every worker of a 2.4 GB parent reported 2.4 GB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return ru_maxrss_mib()


def reset_peak() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0), so that the
    peak measured afterwards is what follows, not the transient peak of loading a model."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def ru_maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def reply(obj) -> None:
    """A worker's answer to its parent: one JSON line on stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Worker:
    """A fresh process running ``command``, answering one JSON line (:func:`reply`) per command
    line it reads; its first line says it is ready."""

    def __init__(self, name: str, command: List[str]):
        self.name = name
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.ready = self._read()

    def _read(self) -> Dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died (exit {self.proc.wait()})")
        return json.loads(line)

    def ask(self, command: str) -> Dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=60)


def interleave(workers: List[Worker], command: str, rounds: int) -> Dict[str, List[Dict]]:
    """``rounds`` rounds, each worker once per round, the starting worker rotating, so that load
    from other jobs hits every worker alike."""
    out: Dict[str, List[Dict]] = {w.name: [] for w in workers}
    for r in range(rounds):
        order = workers[r % len(workers):] + workers[: r % len(workers)]
        for worker in order:
            out[worker.name].append(worker.ask(command))
    return out


@contextlib.contextmanager
def cpu_burner(processes: int = 1) -> Iterator[None]:
    """``processes`` processes spinning on a core each for the duration of the block: a busy
    machine, as when a training job runs beside the measured one."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def crf_params(crf) -> Dict[str, Any]:
    """A copy of a ``ConstrainedCRF``'s learned scores (``transitions (T, T)``, ``start (T,)``,
    ``end (T,)``) and of the masks of the moves its scheme allows (``allowed_*``, same shapes)."""
    return {
        "transitions": crf.transitions.detach().clone(),
        "start": crf.start_transitions.detach().clone(),
        "end": crf.end_transitions.detach().clone(),
        "allowed_transitions": crf.allowed_transitions.clone(),
        "allowed_start": crf.allowed_start.clone(),
        "allowed_end": crf.allowed_end.clone(),
    }


def crf_score_sizes(params: Dict[str, Any], reference: Optional[Dict[str, Any]] = None) -> Dict[str, float]:
    """Of :func:`crf_params` ``params`` less ``reference`` (another snapshot; None: 0): the mean and
    max ``|score|`` over the transitions the scheme allows, and the mean over the allowed start and
    end scores (the forbidden ones are never used)."""
    import torch  # after threads_from_argv: torch reads its thread settings at import

    def moved(name: str):
        return params[name] - reference[name] if reference is not None else params[name]

    transitions = moved("transitions").abs()[params["allowed_transitions"]]
    start_end = torch.cat([moved("start").abs()[params["allowed_start"]], moved("end").abs()[params["allowed_end"]]])
    return {"transitions_abs_mean": float(transitions.mean()), "transitions_abs_max": float(transitions.max()),
            "start_end_abs_mean": float(start_end.mean())}
