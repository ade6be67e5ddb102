"""The crf_ner component on its default CPU model: registration, training, prediction, errors,
serialization and the CRF learning rate."""
from importlib.metadata import entry_points

import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Adam

from spacy_crf_ner.tags import is_valid


def train_nlp(nlp, examples, steps=25, **config):
    nlp.add_pipe("crf_ner", config=config)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        losses = nlp.update(examples, sgd=optimizer)
    return optimizer, losses


def entities(doc):
    return [(e.start, e.end, e.label_) for e in doc.ents]


def test_registered_through_entry_points():
    factories = {ep.name: ep.value for ep in entry_points(group="spacy_factories")}
    architectures = {ep.name: ep.value for ep in entry_points(group="spacy_architectures")}
    assert factories["crf_ner"] == "spacy_crf_ner.pipeline_component:make_crf_ner"
    assert architectures["spacy-crf-ner.CRFTagger.v1"] == "spacy_crf_ner.architectures:build_crf_tagger"


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_learns_training_data_and_sets_ents(blank_en, make_examples, scheme):
    examples = make_examples(blank_en, 40)
    _, losses = train_nlp(blank_en, examples, scheme=scheme)
    assert losses["crf_ner"] < 1.0
    for eg in examples:
        doc = blank_en(eg.reference.text)
        assert entities(doc) == entities(eg.reference)
        # token-level attributes agree with doc.ents
        iob = ["O"] * len(doc)
        for ent in doc.ents:
            iob[ent.start : ent.end] = ["B"] + ["I"] * (len(ent) - 1)
        assert [t.ent_iob_ for t in doc] == iob
    scores = blank_en.evaluate(examples)
    assert scores["ents_f"] == 1.0 and set(scores["ents_per_type"]) == {"PER", "ORG", "LOC"}


def test_unknown_label_in_get_loss_is_named(blank_en, make_examples):
    """update adds a new label first (as ner does); get_loss alone names the one it lacks."""
    examples = make_examples(blank_en, 10)
    ner = blank_en.add_pipe("crf_ner")
    blank_en.initialize(lambda: examples)
    doc = blank_en.make_doc("Zed visited Mars .")
    bad = Example.from_dict(doc, {"entities": [(12, 16, "PLANET")]})
    with pytest.raises(ValueError, match="'PLANET'"):
        ner.get_loss([bad], ner.model.predict([bad.predicted]))


def test_unknown_label_at_initialize_is_named(blank_en, make_examples):
    examples = make_examples(blank_en, 20)
    blank_en.add_pipe("crf_ner")
    with pytest.raises(ValueError, match=r"\['LOC', 'ORG'\]"):
        blank_en.get_pipe("crf_ner").initialize(lambda: examples, nlp=blank_en, labels=["PER"])


def test_init_labels_round_trip(blank_en, make_examples):
    examples = make_examples(blank_en, 20)
    ner = blank_en.add_pipe("crf_ner")
    ner.initialize(lambda: examples, nlp=blank_en, labels=["LOC", "ORG", "PER", "MISC"])
    assert ner.label_data == ["LOC", "ORG", "PER", "MISC"]
    assert ner.tags[0] == "O" and len(ner.tags) == 1 + 4 * 4


def test_survives_awkward_docs(blank_en, make_examples):
    examples = make_examples(blank_en, 20)
    train_nlp(blank_en, examples, steps=3)
    texts = ["", "   ", "\n\t", "Oslo", "東京で会議 🎉 Anna Berg 😀", " ".join(["word"] * 5000)]
    texts += [" ".join(["Oslo"] * n) for n in range(6)]
    awkward = [Example(blank_en.make_doc(t), blank_en.make_doc(t)) for t in texts]
    losses = blank_en.update(awkward + examples[:2])
    assert numpy.isfinite(losses["crf_ner"])
    ner = blank_en.get_pipe("crf_ner")
    docs = list(blank_en.pipe(texts, batch_size=4))
    assert [len(d) for d in docs][:3] == [0, 1, 1]
    predictions = ner.predict(docs)
    for doc, path, scores in zip(docs, predictions.paths, predictions.scores):
        assert len(path) == len(doc)
        assert is_valid([ner.tags[t] for t in path], "BILUO")
        assert numpy.all((scores >= 0) & (scores <= 1))


def test_missing_annotation_is_marginalised(blank_en, make_examples):
    """A doc whose NER annotation is missing gives no loss and no gradient."""
    examples = make_examples(blank_en, 10)
    train_nlp(blank_en, examples, steps=1)
    words = ["Anna", "Berg", "went", "home"]
    missing = Example(Doc(blank_en.vocab, words=words), Doc(blank_en.vocab, words=words))
    ner = blank_en.get_pipe("crf_ner")
    loss, d_emissions = ner.get_loss([missing], ner.model.predict([missing.predicted]))
    assert loss == pytest.approx(0.0, abs=1e-4)
    assert numpy.abs(d_emissions[0]).max() < 1e-5
    assert blank_en.update([missing])["crf_ner"] == pytest.approx(0.0, abs=1e-4)


def test_serialization_gives_identical_predictions(blank_en, make_examples, tmp_path):
    examples = make_examples(blank_en, 30)
    train_nlp(blank_en, examples, steps=10)
    texts = [eg.reference.text for eg in make_examples(blank_en, 20, seed=7)]
    expected = [entities(d) for d in blank_en.pipe(texts)]
    emissions = blank_en.get_pipe("crf_ner").model.predict([blank_en.make_doc(t) for t in texts])

    blank_en.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    assert [entities(d) for d in loaded.pipe(texts)] == expected
    again = loaded.get_pipe("crf_ner").model.predict([loaded.make_doc(t) for t in texts])
    assert all(numpy.array_equal(a, b) for a, b in zip(emissions, again))
    crf, crf2 = (nlp.get_pipe("crf_ner").crf for nlp in (blank_en, loaded))
    for name, tensor in crf.state_dict().items():
        assert torch.equal(tensor, crf2.state_dict()[name]), name

    fresh = spacy.blank("en")
    fresh.add_pipe("crf_ner")
    fresh.from_bytes(blank_en.to_bytes())
    assert [entities(d) for d in fresh.pipe(texts)] == expected


def test_multiprocess_pipe_with_cnn(blank_en, make_examples):
    examples = make_examples(blank_en, 30)
    train_nlp(blank_en, examples, steps=10)
    texts = [eg.reference.text for eg in make_examples(blank_en, 12, seed=3)]
    single = [entities(d) for d in blank_en.pipe(texts)]
    assert [entities(d) for d in blank_en.pipe(texts, n_process=2, batch_size=3)] == single


def test_crf_learning_rate_multiplier():
    """Adam's first step moves every weight by lr * g / (|g| + eps), i.e. by lr for a unit
    gradient: the CRF's weights must move by multiplier * lr, the encoder's by lr."""
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("crf_ner", config={"crf_lr_multiplier": 50.0})
    ner.initialize(lambda: [Example.from_dict(nlp.make_doc("Anna ran"), {"entities": [(0, 4, "PER")]})], nlp=nlp)
    optimizer = Adam(0.001, L2=0.0, grad_clip=0.0, use_averages=False, eps=1e-12)
    output = ner.model.get_ref("output")
    crf = ner.crf
    W_before = output.get_param("W").copy()
    crf_before = {n: p.detach().clone() for n, p in crf.named_parameters()}
    output.inc_grad("W", output.ops.alloc2f(*W_before.shape) + 1.0)
    for param in crf.parameters():
        param.grad = torch.ones_like(param)
    ner.finish_update(optimizer)
    assert numpy.allclose(W_before - output.get_param("W"), 0.001, rtol=1e-4)
    for name, param in crf.named_parameters():
        assert torch.allclose(crf_before[name] - param.detach(), torch.tensor(0.05), rtol=1e-4), name


def test_parameter_averages_reach_the_crf(blank_en, make_examples):
    examples = make_examples(blank_en, 10)
    blank_en.add_pipe("crf_ner")
    blank_en.initialize(lambda: examples)
    optimizer = Adam(0.001, use_averages=True)
    for _ in range(3):
        blank_en.update(examples, sgd=optimizer)
    crf = blank_en.get_pipe("crf_ner").crf
    current = crf.transitions.detach().clone()
    with blank_en.use_params(optimizer.averages):
        averaged = crf.transitions.detach().clone()
    assert not torch.equal(current, averaged)
    assert torch.equal(crf.transitions.detach(), current)


def test_softmax_baseline_keeps_transitions_at_zero_and_repairs(blank_en, make_examples):
    """use_crf=False is a per-token softmax: zero transition scores that never move, per-token
    argmax decoding, and invalid sequences repaired into entities."""
    examples = make_examples(blank_en, 30)
    train_nlp(blank_en, examples, steps=15, use_crf=False, constrained=False)
    ner = blank_en.get_pipe("crf_ner")
    crf = ner.crf
    assert all(torch.count_nonzero(p) == 0 for p in crf.parameters())
    docs = [blank_en.make_doc(eg.reference.text) for eg in examples[:10]]
    emissions = ner.model.predict(docs)
    predictions = ner.predict(docs)
    for scores, path in zip(emissions, predictions.paths):
        assert path.tolist() == scores.argmax(axis=1).tolist()
    assert blank_en.evaluate(examples)["ents_f"] > 0.9


def test_repair_of_invalid_sequences():
    from spacy_crf_ner.tags import repair

    assert repair(["O", "I-PER", "L-PER", "B-LOC"], "BILUO") == ["O", "B-PER", "L-PER", "U-LOC"]
    assert repair(["I-PER", "I-LOC", "O"], "BIO") == ["B-PER", "B-LOC", "O"]
    assert repair(["B-PER", "L-PER"], "BILUO") == ["B-PER", "L-PER"]


def test_labels_with_hyphens(blank_en):
    """WNUT-17 has labels like creative-work: only the first '-' of a tag separates the prefix."""
    examples = [
        Example.from_dict(blank_en.make_doc("I watched Star Wars twice"), {"entities": [(10, 19, "creative-work")]}),
        Example.from_dict(blank_en.make_doc("Star Wars is long"), {"entities": [(0, 9, "creative-work")]}),
    ]
    train_nlp(blank_en, examples, steps=20)
    assert [(e.text, e.label_) for e in blank_en("I watched Star Wars twice").ents] == [("Star Wars", "creative-work")]
