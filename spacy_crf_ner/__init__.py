"""spacy-crf-ner: a linear-chain CRF named-entity recognizer for spaCy 3.

Modules, one job each:
- ``crf``: the CRF math in pure PyTorch (forward algorithm, Viterbi, marginals);
- ``tags``: tag schemes (BILUO, BIO), their transition constraints, tags <-> spans;
- ``confidence``: entity probabilities, high-recall candidates and k-best analyses;
- ``layers``: the CRF as a Thinc layer, with its own learning rate;
- ``architectures``: the registered model, ``spacy-crf-ner.CRFTagger.v1``;
- ``pipeline_component``: the ``crf_ner`` spaCy component;
- ``char_ngrams``: hashed character n-gram embeddings for Chinese, ``spacy-crf-ner.CharNgramHashEmbed.v1``;
- ``convert``: CoNLL-style, .iob and BMES character-per-line files to DocBins, checked line by line
  (``python -m spacy_crf_ner convert``).
"""
from .architectures import build_crf_tagger
from .char_ngrams import build_char_ngram_hash_embed
from .crf import ConstrainedCRF
from .pipeline_component import CRFEntityRecognizer, entity_confidences, make_crf_ner

__all__ = ["ConstrainedCRF", "CRFEntityRecognizer", "build_crf_tagger", "entity_confidences", "make_crf_ner"]
