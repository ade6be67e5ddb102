"""Resolve the project's `gpu` variable to a spaCy GPU id, optionally running a command with it.

    python scripts/gpu.py auto                 # prints 0 if torch sees a CUDA GPU, else -1
    python scripts/gpu.py auto -- CMD ARGS...  # runs CMD with every `{gpu}` in ARGS replaced

`auto` means GPU 0 when `torch.cuda.is_available()`, else the CPU (-1); an integer (-1 for the
CPU, 0 or higher for that GPU) is used as it is (`spacy_crf_ner.runtime.resolve_gpu`).
"""
import subprocess
import sys
from typing import List

from spacy_crf_ner.runtime import resolve_gpu


def main(argv: List[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 1
    try:
        gpu = resolve_gpu(argv[0])
    except ValueError as err:
        raise SystemExit(str(err))
    if len(argv) == 1:
        print(gpu)
        return 0
    if argv[1] != "--" or len(argv) < 3:
        raise SystemExit("usage: gpu.py GPU [-- COMMAND ARGS...]")
    command = [arg.replace("{gpu}", str(gpu)) for arg in argv[2:]]
    if command[0] == "python":  # the interpreter running this, as spacy project does
        command[0] = sys.executable
    print(f"gpu {argv[0]} -> {gpu} ({'GPU ' + str(gpu) if gpu >= 0 else 'CPU'})", flush=True)
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
