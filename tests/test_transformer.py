"""crf_ner listening to a transformer (configs/crf_ner_trf.cfg) with a tiny random-weight BERT
made locally: gradients reach the transformer, long docs work, save/load is exact, and the
frozen-encoder mode trains the head only."""
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.training.initialize import init_nlp
from spacy.training.loop import train
from spacy.util import load_config

pytest.importorskip("spacy_transformers")

CONFIG = Path(__file__).parent.parent / "configs" / "crf_ner_trf.cfg"


def make_nlp(tiny_bert, train_path, dev_path, **overrides):
    config = load_config(
        CONFIG,
        overrides={
            "paths.transformer": tiny_bert,
            "paths.train": str(train_path),
            "paths.dev": str(dev_path),
            "training.max_steps": 12,
            "training.eval_frequency": 6,
            "training.accumulate_gradient": 1,
            "training.optimizer.learn_rate.warmup_steps": 2,
            "training.optimizer.learn_rate.initial_rate": 1e-3,
            "training.batcher.size": 500,
            **overrides,
        },
        interpolate=False,
    )
    return init_nlp(config)


def transformer_weights(nlp):
    shim = next(node for node in nlp.get_pipe("transformer").model.walk() if node.shims).shims[0]
    return {name: p.detach().clone() for name, p in shim._model.named_parameters()}


def crf_transitions(nlp):
    return nlp.get_pipe("crf_ner").crf.transitions.detach().clone()


@pytest.fixture
def corpus(blank_en, make_examples, write_corpus):
    return write_corpus(make_examples(blank_en, 30), "train"), write_corpus(make_examples(blank_en, 8, seed=1), "dev")


def changed(before, after):
    return [name for name in before if not numpy.allclose(before[name].numpy(), after[name].numpy())]


def test_trains_through_the_listener(tiny_bert, corpus, tmp_path):
    nlp = make_nlp(tiny_bert, *corpus)
    trf_before, crf_before = transformer_weights(nlp), crf_transitions(nlp)
    (tmp_path / "out").mkdir()
    train(nlp, tmp_path / "out", stdout=open("/dev/null", "w"))
    assert changed(trf_before, transformer_weights(nlp)), "no gradient reached the transformer"
    assert not numpy.allclose(crf_before.numpy(), crf_transitions(nlp).numpy())

    long_text = " ".join(["Anna Berg flew to Oslo ."] * 150)  # ~900 tokens, > 512 word pieces
    texts = ["", "  ", "Oslo", "東京 🎉 Anna Berg", long_text]
    docs = list(nlp.pipe(texts))
    assert [len(d) for d in docs[:3]] == [0, 1, 1]
    assert len(docs[-1]) == 900

    loaded = spacy.load(tmp_path / "out" / "model-last")
    again = list(loaded.pipe(texts))
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in docs] == [
        [(e.start, e.end, e.label_) for e in d.ents] for d in again
    ]
    for a, b in zip(docs, again):
        assert a.spans["crf_ner"].attrs["scores"] == pytest.approx(b.spans["crf_ner"].attrs["scores"], abs=1e-5)


def test_frozen_transformer_trains_the_head_only(tiny_bert, corpus, tmp_path):
    """The README's recipe: assemble the transformer alone, then source it frozen (and
    annotating, so the listener reads its output from the docs)."""
    frozen = tmp_path / "transformer"
    subprocess.run(
        [sys.executable, "-m", "spacy", "assemble", str(CONFIG), str(frozen),
         "--nlp.pipeline", '["transformer"]', "--paths.transformer", tiny_bert],
        check=True, capture_output=True,
    )
    nlp = make_nlp(
        tiny_bert, *corpus,
        **{
            "components.transformer": {"source": str(frozen)},
            "training.frozen_components": ["transformer"],
            "training.annotating_components": ["transformer"],
        },
    )
    trf_before, crf_before = transformer_weights(nlp), crf_transitions(nlp)
    assert changed(transformer_weights(spacy.load(frozen)), trf_before) == []
    (tmp_path / "out").mkdir()
    train(nlp, tmp_path / "out", stdout=open("/dev/null", "w"))
    assert changed(trf_before, transformer_weights(nlp)) == []
    assert not numpy.allclose(crf_before.numpy(), crf_transitions(nlp).numpy())
