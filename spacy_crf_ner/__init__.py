"""spacy-crf-ner: a linear-chain CRF named-entity recognizer for spaCy 3.

Modules, one job each:
- ``crf``: ``ConstrainedCRF``, the CRF with torchcrf's contract (likelihood, decoding, posteriors);
- ``crf_kernels``: its dynamic programs, a log-space reference and the fast kernel for each;
- ``tags``: tag schemes (BILUO, BIO), their transition constraints, tags <-> spans;
- ``confidence``: entity probabilities, high-recall candidates and k-best analyses;
- ``calibration``: temperature scaling of those probabilities, fitted on held-out data
  (``CRFEntityRecognizer.calibrate``, ``python -m spacy_crf_ner calibrate``);
- ``scoring``: entity correctness, expected calibration error and the registered scorer
  ``spacy-crf-ner.ner_scorer.v1`` (spaCy's NER scores plus ``ents_ece``);
- ``layers``: the CRF as a Thinc layer, with its own learning rate;
- ``architectures``: the registered model, ``spacy-crf-ner.CRFTagger.v1``, and its resizing;
- ``objectives``: training losses besides the likelihood (negative examples, rehearsal);
- ``pipeline_component``: the ``crf_ner`` spaCy component;
- ``debug_data``: ``python -m spacy_crf_ner debug-data``, the NER checks of ``spacy debug data``.
- ``annotate``: batch annotation of a corpus into Parquet/JSONL shards (``python -m spacy_crf_ner
  annotate``), on this machine; ``annotate_ray``: its Ray Data engine (the ``ray`` extra).
- ``char_ngrams``: hashed character n-gram embeddings for Chinese, ``spacy-crf-ner.CharNgramHashEmbed.v1``;
- ``cpu_ops``: ``TorchGemmOps``, Thinc's CPU ops with PyTorch's matrix product (a faster CPU CNN),
  and the config callback ``spacy-crf-ner.torch_gemm_ops.v1`` that selects it;
- ``convert``: CoNLL-style, .iob and BMES character-per-line files to DocBins, checked line by line
  (``python -m spacy_crf_ner convert``);
- ``runtime``: what the project's steps run on: the offline transformer's directory, the GPU id.
"""
from .architectures import build_crf_tagger
# Register spacy-crf-ner.CharNgramHashEmbed.v1 and spacy-crf-ner.torch_gemm_ops.v1 whenever the
# package is imported, also in an environment whose entry points predate them.
from .char_ngrams import build_char_ngram_hash_embed
from .cpu_ops import TorchGemmOps
from .crf import ConstrainedCRF
from .pipeline_component import CRFEntityRecognizer, entity_confidences, make_crf_ner

__all__ = ["ConstrainedCRF", "CRFEntityRecognizer", "TorchGemmOps", "build_char_ngram_hash_embed", "build_crf_tagger", "entity_confidences", "make_crf_ner"]
