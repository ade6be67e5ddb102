"""Shared fixtures: small synthetic NER data and a tiny random-weight BERT made on the spot, so
the suite needs no download and no ../shared data."""
import os
import random
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example

# Everything the tests load is made or shipped locally; never ask a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PEOPLE = ["Anna Berg", "Tomas Lind", "Maria", "Jon Olsen", "Lea Park", "Omar Diaz", "Ivy Chen"]
ORGS = ["Nordbank", "Acme Corp", "the Blue Lions", "Helix Labs", "Orbit Media"]
PLACES = ["Oslo", "Lisbon", "New Delhi", "Lake Town", "Cairo", "Port Vila"]
PATTERNS = [
    "{PER} joined {ORG} in {LOC} last year .",
    "{ORG} opened an office in {LOC} .",
    "Yesterday {PER} flew to {LOC} with {PER} .",
    "{PER} said the plan was good .",
    "The talks in {LOC} ended early .",
    "{ORG} hired {PER} as its new head .",
    "Nobody expected rain today .",
]


def make_example(nlp, rng: random.Random) -> Example:
    """One sentence from a template, with its gold entities."""
    words, ents = [], []
    for part in rng.choice(PATTERNS).split():
        if part in ("{PER}", "{ORG}", "{LOC}"):
            label = part[1:-1]
            name = rng.choice({"PER": PEOPLE, "ORG": ORGS, "LOC": PLACES}[label]).split()
            ents.append((len(words), len(words) + len(name), label))
            words.extend(name)
        else:
            words.append(part)
    doc = Doc(nlp.vocab, words=words)
    doc.ents = [Span(doc, s, e, label=label) for s, e, label in ents]
    return Example(Doc(nlp.vocab, words=words), doc)


@pytest.fixture(scope="session")
def make_examples():
    def make(nlp, n: int, seed: int = 0):
        rng = random.Random(seed)
        return [make_example(nlp, rng) for _ in range(n)]

    return make


def write_tiny_bert(path: Path, vocab) -> str:
    """A 2-layer, 32-wide BERT with random weights and the WordPiece vocabulary `vocab` (special
    tokens first), saved as a Hugging Face directory that spacy-transformers loads by path."""
    transformers = pytest.importorskip("transformers")
    import torch

    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(path)
    transformers.BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True).save_pretrained(path)
    return str(path)


BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="session")
def make_tiny_bert(tmp_path_factory):
    """make(vocab) -> the directory of a tiny BERT whose vocabulary is the special tokens + vocab."""
    return lambda vocab: write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), BERT_SPECIAL_TOKENS + vocab)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A tiny random-weight BERT (write_tiny_bert) with a vocabulary built from the test text."""
    words = {w.lower() for text in PATTERNS + PEOPLE + ORGS + PLACES for w in text.split()}
    chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    vocab = BERT_SPECIAL_TOKENS + chars + ["##" + c for c in chars] + sorted(words - set(chars))
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), vocab)


@pytest.fixture
def write_corpus(tmp_path):
    def write(examples, name: str) -> Path:
        out = tmp_path / f"{name}.spacy"
        DocBin(docs=[eg.reference for eg in examples]).to_disk(out)
        return out

    return write


@pytest.fixture
def blank_en():
    return spacy.blank("en")
