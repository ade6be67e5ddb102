"""``crf_ner`` trains from a streamed corpus (``max_epochs = -1``): spaCy pulls batches from the
reader as it goes and never holds the corpus, so it may be larger than memory."""
from pathlib import Path

import pytest
import spacy
from spacy.training.initialize import init_nlp
from spacy.training.loop import train
from thinc.api import Config

ROOT = Path(__file__).resolve().parent.parent
STEPS = 40
# A trainer that read the whole corpus first would hit this: the stream is endless.
MAX_PULLED = 20_000


@pytest.mark.slow
def test_crf_ner_trains_from_an_endless_streamed_corpus(make_examples, write_corpus, blank_en):
    pulled = []

    @spacy.registry.readers("test_streamed_training.endless.v1")
    def endless():
        def read(nlp):
            seed = 0
            while True:
                for example in make_examples(nlp, 50, seed=1000 + seed):
                    pulled.append(1)
                    if len(pulled) > MAX_PULLED:
                        raise AssertionError("the trainer reads the stream to its end")
                    yield example
                seed += 1

        return read

    dev = write_corpus(make_examples(blank_en, 60, seed=99), "dev")
    config = Config().from_disk(ROOT / "configs" / "crf_ner_cnn.cfg", overrides={
        "paths.train": None, "paths.dev": str(dev), "paths.vectors": None,
        "corpora.train": {"@readers": "test_streamed_training.endless.v1"},
        "training.max_epochs": -1, "training.max_steps": STEPS, "training.eval_frequency": STEPS,
        "training.batcher.size": 300,
    })
    nlp = init_nlp(config)
    # spaCy initializes a streamed corpus from its first 100 examples: they hold every label
    assert sorted(nlp.get_pipe("crf_ner").labels) == ["LOC", "ORG", "PER"]
    before = nlp.evaluate(nlp_dev(nlp, dev))["ents_f"]
    train(nlp, None)
    after = nlp.evaluate(nlp_dev(nlp, dev))["ents_f"]
    assert 100 < len(pulled) < MAX_PULLED
    assert after > 0.9 > before, (before, after)


def nlp_dev(nlp, path):
    from spacy.training import Corpus

    return list(Corpus(str(path))(nlp))
