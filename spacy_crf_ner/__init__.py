"""spacy-crf-ner: a linear-chain CRF named-entity recognizer for spaCy 3.

Modules, one job each:
- ``crf``: the CRF math in pure PyTorch (forward algorithm, Viterbi, marginals);
- ``tags``: tag schemes (BILUO, BIO), their transition constraints, tags <-> spans;
- ``confidence``: entity probabilities, high-recall candidates and k-best analyses;
- ``calibration``: temperature scaling of those probabilities, fitted on held-out data
  (``CRFEntityRecognizer.calibrate``, ``python -m spacy_crf_ner calibrate``);
- ``scoring``: entity correctness, expected calibration error and the registered scorer
  ``spacy-crf-ner.ner_scorer.v1`` (spaCy's NER scores plus ``ents_ece``);
- ``layers``: the CRF as a Thinc layer, with its own learning rate;
- ``architectures``: the registered model, ``spacy-crf-ner.CRFTagger.v1``;
- ``pipeline_component``: the ``crf_ner`` spaCy component.
"""
from .architectures import build_crf_tagger
from .crf import ConstrainedCRF
from .pipeline_component import CRFEntityRecognizer, entity_confidences, make_crf_ner

__all__ = ["ConstrainedCRF", "CRFEntityRecognizer", "build_crf_tagger", "entity_confidences", "make_crf_ner"]
