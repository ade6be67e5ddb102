"""Kept only for ``bench/accuracy.py``, which still imports ``expected_calibration_error`` from
here: the calibration measures live in the package (``spacy_crf_ner.scoring``), the reliability
diagram in ``scripts/evaluate.py``. Delete this file once the benchmark imports the package."""
from spacy_crf_ner.scoring import expected_calibration_error

__all__ = ["expected_calibration_error"]
