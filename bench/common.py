"""What the benchmark scripts share: the machine's description and spaCy's `ner` as the peer."""
import copy
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Dict, List

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
