"""spacy-crf-ner: a linear-chain CRF named-entity recognizer for spaCy 3.

Modules, one job each:
- ``crf``: the CRF math in pure PyTorch (forward algorithm, Viterbi, marginals);
- ``tags``: tag schemes (BILUO, BIO), their transition constraints, tags <-> spans;
- ``confidence``: entity probabilities, high-recall candidates and k-best analyses;
- ``layers``: the CRF as a Thinc layer, with its own learning rate;
- ``architectures``: the registered model, ``spacy-crf-ner.CRFTagger.v1``;
- ``pipeline_component``: the ``crf_ner`` spaCy component;
- ``annotate``: batch annotation of a corpus into Parquet/JSONL shards (``python -m spacy_crf_ner
  annotate``), on this machine; ``annotate_ray``: its Ray Data engine (the ``ray`` extra).
"""
from .architectures import build_crf_tagger
from .crf import ConstrainedCRF
from .pipeline_component import CRFEntityRecognizer, entity_confidences, make_crf_ner

__all__ = ["ConstrainedCRF", "CRFEntityRecognizer", "build_crf_tagger", "entity_confidences", "make_crf_ner"]
