"""TorchGemmOps: Thinc's NumpyOps with torch's matrix product. Its products must equal BLIS's
(NumpyOps) up to float32 rounding, and a pipeline built with the callback must predict what the
same weights predict on plain NumpyOps."""
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.training import Example
from spacy.util import load_config, load_model_from_config
from thinc.api import NumpyOps, get_current_ops

from spacy_crf_ner.cpu_ops import TorchGemmOps

CONFIG = Path(__file__).parent.parent / "configs" / "crf_ner_zh_cnn.cfg"
# float32 products of ~500 terms summed in another order
RTOL, ATOL = 1e-5, 1e-4


@pytest.mark.parametrize("trans1", [False, True])
@pytest.mark.parametrize("trans2", [False, True])
def test_gemm_equals_blis(trans1, trans2):
    rng = numpy.random.default_rng(0)
    m, k, n = 37, 512, 19
    x = rng.standard_normal((k, m) if trans1 else (m, k)).astype("float32")
    y = rng.standard_normal((n, k) if trans2 else (k, n)).astype("float32")
    expected = NumpyOps().gemm(x, y, trans1=trans1, trans2=trans2)
    got = TorchGemmOps().gemm(x, y, trans1=trans1, trans2=trans2)
    assert got.shape == (m, n) and got.dtype == numpy.float32
    numpy.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    out = numpy.full((m, n), numpy.nan, dtype="float32")
    assert TorchGemmOps().gemm(x, y, out=out, trans1=trans1, trans2=trans2) is out
    numpy.testing.assert_allclose(out, expected, rtol=RTOL, atol=ATOL)


def test_gemm_rejects_what_numpy_ops_rejects():
    ops = TorchGemmOps()
    with pytest.raises(ValueError, match="2-dimensional"):
        ops.gemm(numpy.zeros((2, 3, 4), "float32"), numpy.zeros((4, 2), "float32"))
    with pytest.raises(ValueError, match="float32"):
        ops.gemm(numpy.zeros((2, 3), "float64"), numpy.zeros((3, 2), "float64"))


def build(config, callback: bool):
    if not callback:
        config = config.copy()
        config["nlp"]["after_pipeline_creation"] = None
    return load_model_from_config(config, auto_fill=True)


def test_callback_switches_only_this_pipeline_and_predicts_the_same(tmp_path):
    config = load_config(CONFIG, overrides={"components.crf_ner.model.tok2vec.encode.depth": 2})
    fast, plain = build(config, True), build(config, False)
    assert {type(layer.ops) for layer in fast.get_pipe("crf_ner").model.walk()} == {TorchGemmOps}
    assert {type(layer.ops) for layer in plain.get_pipe("crf_ner").model.walk()} == {NumpyOps}
    assert type(get_current_ops()) is NumpyOps  # Thinc's current ops untouched
    docs = [fast.make_doc(text) for text in ["张伟在北京访问了新华社。", "会议在上海举行。"]]
    examples = [Example(doc, doc.copy()) for doc in docs]
    fast.get_pipe("crf_ner").initialize(lambda: examples, nlp=fast, labels=["PER"])
    plain.from_bytes(fast.to_bytes())  # the same weights, on plain NumpyOps
    fast.to_disk(tmp_path / "fast")
    loaded = spacy.load(tmp_path / "fast")
    assert {type(layer.ops) for layer in loaded.get_pipe("crf_ner").model.walk()} == {TorchGemmOps}
    expected = plain.get_pipe("crf_ner").model.predict(docs)
    for nlp in (fast, loaded):
        for got, want, doc in zip(nlp.get_pipe("crf_ner").model.predict(docs), expected, docs):
            assert got.shape == (len(doc), 5)  # O and BILU-PER
            numpy.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
