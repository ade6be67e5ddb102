"""Hashed character n-gram embeddings, for languages read one character per token (Chinese).

`spacy-crf-ner.CharNgramHashEmbed.v1` is spaCy's `MultiHashEmbed` (one hashed table per token
attribute, mixed by a Maxout layer) with more tables: for each n in `ngram_sizes`, one per n-gram
that contains the token. For n = 2 that is the bigram ending at character i (c[i-1] c[i]) and the
one beginning there (c[i] c[i+1]): the bigram features that character-level Chinese NER systems
add to a character model (Zhang and Yang 2018: 88.81 -> 91.87 F1 on MSRA for a BiLSTM-CRF).
Whether they help this CNN is measured in bench/results/msra.md.
"""
from typing import Callable, List, Tuple

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import HashEmbed, Maxout, Model, chain, concatenate, list2ragged, ragged2list, with_array
from thinc.types import Floats2d, Ints2d

# The n-grams are made of this attribute (NORM: lower-cased Latin, characters as they are).
NGRAM_ATTR = "NORM"
# Stands for the characters before the first and after the last one of a doc.
BOUNDARY = numpy.uint64(0x5F3759DF5F3759DF)
# Odd 64-bit multiplier (the golden ratio's): folds n character ids into one n-gram id, with
# wrap-around; HashEmbed hashes that id again, with its own seed.
FOLD = numpy.uint64(0x9E3779B97F4A7C15)
# MultiHashEmbed's first seed, so that the token-attribute tables start as its would.
FIRST_SEED = 8


def ngram_ids(chars: numpy.ndarray, n: int) -> numpy.ndarray:
    """The ids of the n-grams that contain each character.

    chars: uint64 (length,), one id per character. Returns uint64 (length, n): column k is the
    n-gram that starts k characters after the first n-gram holding the character, i.e. at i-n+1+k
    (for n = 2: column 0 is c[i-1] c[i], column 1 is c[i] c[i+1]). BOUNDARY pads both ends.
    """
    length = chars.shape[0]
    padded = numpy.concatenate([numpy.full(n - 1, BOUNDARY), chars, numpy.full(n - 1, BOUNDARY)])
    columns = []
    for k in range(n):
        ids = numpy.zeros(length, dtype=numpy.uint64)
        for m in range(n):
            ids = ids * FOLD + padded[k + m: k + m + length]
        columns.append(ids)
    return numpy.stack(columns, axis=1) if columns else numpy.zeros((length, 0), numpy.uint64)


def CharNgramFeatures(attrs: List[str], ngram_sizes: List[int]) -> Model[List[Doc], List[Ints2d]]:
    """Per doc, uint64 (n_tokens, len(attrs) + sum(ngram_sizes)): the attributes, then the
    n-gram ids of each size in turn (see ngram_ids)."""
    return Model("extract_char_ngrams", _features_forward,
                 attrs={"columns": list(attrs), "ngram_sizes": list(ngram_sizes)})


def _features_forward(model, docs: List[Doc], is_train: bool) -> Tuple[List[Ints2d], Callable]:
    columns = model.attrs["columns"]
    features = []
    for doc in docs:
        values = doc.to_array(columns + [NGRAM_ATTR]).astype(numpy.uint64)
        ngrams = [ngram_ids(values[:, -1], n) for n in model.attrs["ngram_sizes"]]
        features.append(model.ops.asarray2i(numpy.hstack([values[:, :-1]] + ngrams), dtype="uint64"))
    return features, lambda d_features: []


@registry.architectures("spacy-crf-ner.CharNgramHashEmbed.v1")
def build_char_ngram_hash_embed(
    width: int, attrs: List[str], rows: List[int], ngram_sizes: List[int], ngram_rows: int
) -> Model[List[Doc], List[Floats2d]]:
    """MultiHashEmbed plus character n-gram tables; output float (n_tokens, width) per doc.

    attrs, rows: token attributes and their table sizes, as for MultiHashEmbed.
    ngram_sizes: e.g. [2] for bigrams; ngram_rows: rows of each n-gram table.
    """
    if len(rows) != len(attrs):
        raise ValueError(f"Mismatched lengths: {len(rows)} rows for {len(attrs)} attrs")
    table_rows = list(rows) + [ngram_rows] * sum(ngram_sizes)
    tables = [HashEmbed(width, n_rows, column=i, seed=FIRST_SEED + i, dropout=0.0)
              for i, n_rows in enumerate(table_rows)]
    return chain(
        CharNgramFeatures(attrs, ngram_sizes),
        list2ragged(),
        with_array(concatenate(*tables)),
        with_array(Maxout(width, width * len(tables), nP=3, dropout=0.0, normalize=True)),
        ragged2list(),
    )
