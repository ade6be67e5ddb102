"""crf_ner as a drop-in for spaCy's ner: entities already on the doc, blocked tokens, labels added
late, negative examples and the component lifecycle, each checked side by side with ``ner``
trained on the same data, and the constrained decoding against brute force."""
import json

import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import fix_random_seed
from test_crf import brute_paths, logsumexp

from spacy_crf_ner.layers import get_crf
from spacy_crf_ner.objectives import negative_examples_loss
from spacy_crf_ner.tags import make_tags, to_spans

TEXT = "Anna Berg joined Nordbank in Oslo last year ."
RULER_PATTERNS = [{"label": "EVENT", "pattern": "last year", "id": "last-year"}]


def entities(doc):
    return [(e.text, e.label_) for e in doc.ents]


@pytest.fixture(scope="module")
def trained(make_examples):
    """``make(factory)``: a fresh copy of a pipeline whose ``factory`` ("crf_ner" or "ner")
    was trained on the shared synthetic data (trained once per module)."""
    saved = {}
    # Steps each needs to learn the data (ents_f 1.0 on it); ner learns more slowly.
    for factory, steps in (("crf_ner", 25), ("ner", 50)):
        fix_random_seed(0)
        nlp = spacy.blank("en")
        nlp.add_pipe(factory, name="entities", config={"incorrect_spans_key": "rejected"})
        examples = make_examples(nlp, 40)
        optimizer = nlp.initialize(lambda: examples)
        for _ in range(steps):
            nlp.update(examples, sgd=optimizer)
        saved[factory] = (nlp.config, nlp.to_bytes())

    def make(factory):
        config, data = saved[factory]
        return spacy.util.load_model_from_config(config, auto_fill=False).from_bytes(data)

    return make


# -- entities already on the doc -------------------------------------------------------------


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_entity_ruler_before_keeps_its_entities(trained, factory):
    nlp = trained(factory)
    plain = entities(nlp(TEXT))
    assert ("Anna Berg", "PER") in plain and ("Oslo", "LOC") in plain, plain
    ruler = nlp.add_pipe("entity_ruler", before="entities")
    ruler.add_patterns(RULER_PATTERNS)
    doc = nlp(TEXT)
    event = [e for e in doc.ents if e.label_ == "EVENT"]
    assert [(e.text, e.id_) for e in event] == [("last year", "last-year")]
    # The model predicts around it: what it found elsewhere stays.
    assert ("Anna Berg", "PER") in entities(doc) and ("Oslo", "LOC") in entities(doc)


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_entity_ruler_after_adds_where_free(trained, factory):
    nlp = trained(factory)
    ruler = nlp.add_pipe("entity_ruler", after="entities")
    ruler.add_patterns([{"label": "EVENT", "pattern": "last year"}, {"label": "CITY", "pattern": "Oslo"}])
    found = entities(nlp(TEXT))
    assert ("last year", "EVENT") in found
    assert ("Oslo", "LOC") in found and ("Oslo", "CITY") not in found


def test_crf_ner_keeps_the_ruler_entities_in_a_saved_pipeline(trained, tmp_path):
    nlp = trained("crf_ner")
    nlp.add_pipe("entity_ruler", before="entities").add_patterns(RULER_PATTERNS)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert entities(loaded(TEXT)) == entities(nlp(TEXT))
    assert ("last year", "EVENT") in entities(loaded(TEXT))


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_preset_entity_and_kb_id_survive(trained, factory):
    nlp = trained(factory)
    doc = nlp.make_doc(TEXT)
    doc.set_ents([Span(doc, 0, 2, "PER", kb_id="Q_ANNA"), Span(doc, 5, 6, "CITY", kb_id="Q_OSLO")])
    doc = nlp.get_pipe("entities")(doc)
    kept = [(e.text, e.label_, e.kb_id_) for e in doc.ents if e.kb_id_]
    assert kept == [("Anna Berg", "PER", "Q_ANNA"), ("Oslo", "CITY", "Q_OSLO")]


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_tokens_preset_outside_or_missing_are_free(trained, factory):
    """An entity_ruler marks every token it does not cover as O: that is no decision, and ner
    predicts over such tokens as over unannotated ones."""
    nlp = trained(factory)
    expected = entities(nlp(TEXT))
    for default in ("outside", "missing"):
        doc = nlp.make_doc(TEXT)
        doc.set_ents([], default=default)
        assert entities(nlp.get_pipe("entities")(doc)) == expected


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_blocked_tokens_stay_out_of_entities(trained, factory):
    nlp = trained(factory)
    doc = nlp.make_doc(TEXT)
    doc.set_ents([], blocked=[Span(doc, 1, 2), Span(doc, 5, 6)])
    doc = nlp.get_pipe("entities")(doc)
    assert all(not {1, 5} & set(range(e.start, e.end)) for e in doc.ents), entities(doc)
    assert [(t.ent_iob_, t.ent_type_) for t in (doc[1], doc[5])] == [("B", ""), ("B", "")]


def test_overwrite_ents_replaces_the_doc_entities(trained):
    nlp = trained("crf_ner")
    expected = entities(nlp(TEXT))
    nlp.get_pipe("entities").cfg["overwrite_ents"] = True
    nlp.add_pipe("entity_ruler", before="entities").add_patterns(RULER_PATTERNS)
    doc = nlp.make_doc(TEXT)
    doc.set_ents([Span(doc, 0, 1, "ORG", kb_id="Q")], blocked=[Span(doc, 5, 6)])
    for doc in (nlp(TEXT), nlp.get_pipe("entities")(doc)):
        assert entities(doc) == expected


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_decoding_under_preset_entities_matches_brute_force(make_examples, scheme):
    """The decoded path is the best valid path that agrees with the doc's entities and blocked
    tokens, and each entity's confidence is its probability given them."""
    fix_random_seed(0)
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("crf_ner", config={"scheme": scheme})
    examples = make_examples(nlp, 20)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    words = ["Anna", "went", "to", "Oslo"]
    for preset, blocked in [([(0, 1, "EVENT")], [2]), ([(2, 4, "LOC")], [0]), ([(1, 2, "PER")], [])]:
        doc = Doc(nlp.vocab, words=words)
        doc.set_ents([Span(doc, s, e, label) for s, e, label in preset], blocked=[doc[i : i + 1] for i in blocked])
        crf = get_crf(ner.model.get_ref("crf")).double()
        emissions = torch.from_numpy(ner.model.predict([doc])[0]).double()
        paths, scores = brute_paths(crf, emissions, len(doc))
        crf.float()
        # Agreeing, spelled out: each preset entity of a known label is an entity of the path,
        # and every other entity of the path keeps off the preset and blocked tokens.
        known = {(label, s, e) for s, e, label in preset if label in ner.labels}
        taken = {i for s, e, _ in preset for i in range(s, e)} | set(blocked)
        path_ents = [{(x.label_, x.start, x.end) for x in to_spans(doc, [ner.tags[t] for t in path], scheme)} for path in paths]
        agrees = numpy.array([
            known <= ents and all(ent in known or taken.isdisjoint(range(ent[1], ent[2])) for ent in ents)
            for ents in path_ents
        ])
        paths, scores = paths[agrees], scores[agrees]
        prediction = ner.predict([doc])
        assert prediction.paths[0].tolist() == paths[numpy.argmax(scores)].tolist()
        log_z = logsumexp(scores)
        for (label, start, end), p in zip(prediction.spans[0], prediction.scores[0]):
            spelled = [
                (label, start, end) in {(s.label_, s.start, s.end) for s in to_spans(doc, [ner.tags[t] for t in path], scheme)}
                for path in paths
            ]
            assert p == pytest.approx(numpy.exp(logsumexp(scores[spelled]) - log_z), abs=1e-4)
        # k-best: agreeing paths only, with the 8 best scores of brute force (ties in any order).
        analyses = ner.kbest([doc], k=8)[0]
        agreeing = {tuple(path): score for path, score in zip(paths.tolist(), scores)}
        for analysis in analyses:
            path = tuple(ner.tags.index(t) for t in analysis.tags)
            assert agreeing[path] == pytest.approx(analysis.score, abs=1e-3)
        assert numpy.allclose([a.score for a in analyses], numpy.sort(scores)[::-1][:8], atol=1e-3)
        ner.set_annotations([doc], prediction)
        for s, e, label in preset:
            assert (s, e, label) in {(ent.start, ent.end, ent.label_) for ent in doc.ents}


# -- labels ----------------------------------------------------------------------------------


def product_examples(nlp, n=30):
    texts = [("Ivy Chen bought a Zephyr Phone in Cairo .", [(18, 30, "PRODUCT")]), ("The Zephyr Phone is new .", [(4, 16, "PRODUCT")])]
    out = []
    for i in range(n):
        text, ents = texts[i % 2]
        out.append(Example.from_dict(nlp.make_doc(text), {"entities": ents}))
    return out


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_add_label_to_a_trained_model(trained, make_examples, factory):
    nlp = trained(factory)
    texts = [eg.reference.text for eg in make_examples(nlp, 30, seed=5)]
    before = [entities(doc) for doc in nlp.pipe(texts)]
    component = nlp.get_pipe("entities")
    if factory == "crf_ner":
        scores = [doc.spans["entities"].attrs["scores"] for doc in nlp.pipe(texts)]
    assert component.add_label("PRODUCT") == 1
    if factory == "crf_ner":
        assert [entities(doc) for doc in nlp.pipe(texts)] == before
        after = [doc.spans["entities"].attrs["scores"] for doc in nlp.pipe(texts)]
        assert numpy.allclose(numpy.concatenate(after), numpy.concatenate(scores), atol=1e-5)
        # The grown model saves and loads, still untrained for the new label.
        loaded = spacy.util.load_model_from_config(nlp.config, auto_fill=False).from_bytes(nlp.to_bytes())
        assert [entities(doc) for doc in loaded.pipe(texts)] == before
        assert loaded.get_pipe("entities").labels == ("LOC", "ORG", "PER", "PRODUCT")
    optimizer = nlp.resume_training()
    new = product_examples(nlp) + make_examples(nlp, 30)
    for _ in range(15):
        nlp.update(new, sgd=optimizer)
    if factory == "crf_ner":
        assert ("Zephyr Phone", "PRODUCT") in entities(nlp("Ivy Chen bought a Zephyr Phone in Cairo ."))


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_label_first_seen_in_update(trained, make_examples, factory):
    nlp = trained(factory)
    optimizer = nlp.resume_training()
    new = product_examples(nlp) + make_examples(nlp, 30)
    for _ in range(15):
        nlp.update(new, sgd=optimizer)
    assert "PRODUCT" in nlp.get_pipe("entities").labels
    if factory == "crf_ner":
        assert ("Zephyr Phone", "PRODUCT") in entities(nlp("Ivy Chen bought a Zephyr Phone in Cairo ."))


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_initialize_without_labels_predicts_nothing(factory):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory)
    nlp.initialize()
    assert nlp.get_pipe(factory).labels == ()
    assert entities(nlp(TEXT)) == []


def test_untrained_model_predicts_no_entities(make_examples):
    """Ten seeds, each a freshly initialized model: not one entity on 20 sentences. (spaCy
    3.8's ner, initialized the same way, predicts 20 entities on them with seed 0.)"""
    for seed in range(10):
        fix_random_seed(seed)
        nlp = spacy.blank("en")
        nlp.add_pipe("crf_ner")
        examples = make_examples(nlp, 20, seed=seed)
        nlp.initialize(lambda: examples)
        assert sum(len(doc.ents) for doc in nlp.pipe(eg.reference.text for eg in examples)) == 0, seed


def test_labels_file_written_for_ner(trained):
    """`spacy init labels` writes ner's label_data, a dict of moves: crf_ner reads its labels."""
    ner_labels = trained("ner").get_pipe("entities").label_data
    assert isinstance(ner_labels, dict)
    nlp = spacy.blank("en")
    crf = nlp.add_pipe("crf_ner")
    unannotated = [Example(nlp.make_doc(TEXT), nlp.make_doc(TEXT))]
    crf.initialize(lambda: unannotated, nlp=nlp, labels=json.loads(json.dumps(ner_labels)))
    assert set(crf.labels) == set(trained("ner").get_pipe("entities").labels) == {"PER", "ORG", "LOC"}
    with pytest.raises(ValueError, match="ner's moves"):
        crf.initialize(lambda: unannotated, nlp=nlp, labels={"1": ["PER"]})


# -- negative examples -----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_negative_examples_loss_matches_brute_force(scheme):
    """The numerator sums over exactly the paths that agree with the gold tags and spell none of
    the rejected spans (overlapping ones included)."""
    from spacy_crf_ner.layers import build_crf_layer

    layer = build_crf_layer()
    layer.attrs.update(tags=make_tags(["PER"], scheme), scheme=scheme)
    layer.initialize()
    crf = get_crf(layer)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in crf.parameters():
            param.copy_(torch.randn(param.shape, generator=gen))
    tags = layer.attrs["tags"]
    emissions = [numpy.random.default_rng(2).normal(size=(4, len(tags))).astype("float32")]
    gold = [numpy.array([-1, -1, -1, 0])]
    negatives = [[("PER", 0, 2), ("PER", 1, 2), ("PER", 0, 1)]]
    loss, d_emissions = negative_examples_loss(layer, emissions, gold, negatives, scheme)

    paths, scores = brute_paths(crf.double(), torch.from_numpy(emissions[0]).double(), 4)
    crf.float()
    spelled = lambda path, span: span in {(s.label_, s.start, s.end) for s in to_spans(Doc(spacy.blank("en").vocab, words=list("abcd")), [tags[t] for t in path], scheme)}
    keep = [path[3] == 0 and not any(spelled(path, span) for span in negatives[0]) for path in paths]
    expected = logsumexp(scores) - logsumexp(scores[keep])
    assert loss == pytest.approx(expected, rel=1e-4)
    # The gradient is the difference of the two marginal distributions.
    marginal = lambda which: numpy.stack([(numpy.exp(scores[which] - logsumexp(scores[which]))[:, None] * (paths[which] == t)).sum(0) for t in range(len(tags))], 1)
    assert numpy.allclose(d_emissions[0], marginal(numpy.ones(len(paths), bool)) - marginal(numpy.array(keep)), atol=1e-4)


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_negative_span_equal_to_gold_is_an_error(factory):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"incorrect_spans_key": "rejected"})
    eg = Example.from_dict(nlp.make_doc("Anna lives in Oslo ."), {"entities": [(0, 4, "PER")]})
    eg.reference.spans["rejected"] = [Span(eg.reference, 0, 1, "PER")]
    nlp.initialize(lambda: [eg])
    with pytest.raises(ValueError, match=r"Anna|\(0, 4, 'PER'\)"):
        nlp.update([eg])


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_negative_examples_unlearn_an_entity(trained, factory):
    """Trained to call 'Oslo' a LOC everywhere, told that in one sentence it is not."""
    nlp = trained(factory)
    text = "The talks in Oslo ended early ."
    assert ("Oslo", "LOC") in entities(nlp(text))
    eg = Example(nlp.make_doc(text), nlp.make_doc(text))
    eg.reference.spans["rejected"] = [Span(eg.reference, 3, 4, "LOC")]
    optimizer = nlp.resume_training()
    for _ in range(10):
        nlp.update([eg], sgd=optimizer)
    assert ("Oslo", "LOC") not in entities(nlp(text))


# -- lifecycle -------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_save_and_load_before_initialize(factory, make_examples, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    again = spacy.blank("en")
    again.add_pipe(factory)
    again.from_bytes(nlp.to_bytes())
    for pipeline in (loaded, again):
        examples = make_examples(pipeline, 20)
        optimizer = pipeline.initialize(lambda: examples)
        pipeline.update(examples, sgd=optimizer)
        assert set(pipeline.get_pipe(factory).labels) == {"PER", "ORG", "LOC"}


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_initialize_again_with_a_new_label(factory, make_examples):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory)
    examples = make_examples(nlp, 20)
    nlp.initialize(lambda: examples)
    more = examples + product_examples(nlp, 4)
    optimizer = nlp.initialize(lambda: more)
    assert set(nlp.get_pipe(factory).labels) == {"PER", "ORG", "LOC", "PRODUCT"}
    nlp.update(more, sgd=optimizer)


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_initialize_with_labels_and_no_examples(factory):
    """What `spacy assemble` does: labels from the config, no training data."""
    config = spacy.blank("en").config
    config["components"] = {factory: {"factory": factory}}
    config["nlp"]["pipeline"] = [factory]
    # ner's format, {move: {label: count}}, which crf_ner reads too (BEGIN, IN, LAST, UNIT).
    moves = {str(move): {"PER": 1, "LOC": 1} for move in range(1, 5)}
    config["initialize"]["components"] = {factory: {"labels": moves}}
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    nlp.initialize()
    assert set(nlp.get_pipe(factory).labels) == {"PER", "LOC"}
    if factory == "crf_ner":  # (an untrained ner predicts entities here)
        assert entities(nlp(TEXT)) == []


def test_rehearse_needs_resume_training(trained):
    nlp = trained("crf_ner")
    eg = Example(nlp.make_doc(TEXT), nlp.make_doc(TEXT))
    with pytest.raises(ValueError, match="resume_training"):
        nlp.rehearse([eg])


@pytest.mark.parametrize("factory", ["crf_ner", "ner"])
def test_rehearse_pulls_back_towards_the_old_model(trained, factory):
    nlp = trained(factory)
    raw = [Example(nlp.make_doc(t), nlp.make_doc(t)) for t in [TEXT, "Maria flew to Lisbon .", "Nordbank hired Jon Olsen ."]]
    optimizer = nlp.resume_training()
    loss = nlp.rehearse(raw, sgd=optimizer)["entities"]
    if factory == "ner":  # a squared difference of its action scores, not 0 at the start
        assert numpy.isfinite(loss) and loss > 0
        return
    assert loss == pytest.approx(0.0, abs=1e-4)  # the same model: KL 0
    # Unlearn 'Oslo' as LOC (as above), then rehearse on the raw texts: the loss is the KL
    # divergence from the old model, and rehearsing brings it down.
    eg = Example(nlp.make_doc(TEXT), nlp.make_doc(TEXT))
    eg.reference.spans["rejected"] = [Span(eg.reference, 5, 6, "LOC")]
    for _ in range(5):
        nlp.update([eg], sgd=optimizer)
    drift = nlp.rehearse(raw)["entities"]
    assert drift > 0.1
    for _ in range(20):
        nlp.rehearse(raw, sgd=optimizer)
    assert nlp.rehearse(raw)["entities"] < drift / 2
