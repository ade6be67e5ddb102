"""Entity confidences, high-recall candidates and k-best analyses of the component, checked
against brute-force enumeration of every tag path of short docs."""
import copy
import itertools

import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.training.iob_utils import iob_to_biluo, tags_to_entities

from spacy_crf_ner.pipeline_component import entity_confidences

TEXTS = ["Anna Berg joined Oslo", "Oslo", "Omar met Lea Park", ""]


def trained(scheme: str, steps: int = 4, **config):
    """A lightly trained pipeline: uncertain enough that many paths have mass."""
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("crf_ner", config={"scheme": scheme, **config})
    examples = [
        Example.from_dict(nlp.make_doc("Anna Berg joined Oslo"), {"entities": [(0, 9, "PER"), (17, 21, "LOC")]}),
        Example.from_dict(nlp.make_doc("Lea Park met Omar"), {"entities": [(0, 8, "PER"), (13, 17, "PER")]}),
    ]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return nlp, ner


def brute_force(ner, doc):
    """Every valid path of ``doc`` with its probability, and the probability of each entity."""
    crf = ner.crf
    emissions = ner.model.predict([doc])[0]
    start, trans, end = (t.detach().numpy().astype("float64") for t in crf.constrained_scores())
    allowed = crf.allowed_transitions.numpy()
    paths, scores = [], []
    for path in itertools.product(range(len(ner.tags)), repeat=len(doc)):
        if path and not (crf.allowed_start[path[0]] and crf.allowed_end[path[-1]]):
            continue
        if not all(allowed[a, b] for a, b in zip(path, path[1:])):
            continue
        score = start[path[0]] + end[path[-1]] if path else 0.0
        score += sum(emissions[i, t] for i, t in enumerate(path)) + sum(trans[a, b] for a, b in zip(path, path[1:]))
        paths.append(path)
        scores.append(score)
    scores = numpy.array(scores)
    probs = numpy.exp(scores - numpy.logaddexp.reduce(scores))
    entity_probs = {}
    for path, p in zip(paths, probs):
        tags = [ner.tags[t] for t in path]
        biluo = tags if ner.cfg["scheme"] == "BILUO" else iob_to_biluo(tags)
        for label, s, e in tags_to_entities(biluo):
            entity_probs[(label, s, e + 1)] = entity_probs.get((label, s, e + 1), 0.0) + p
    return paths, scores, probs, entity_probs


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_entity_probabilities_equal_brute_force(scheme):
    nlp, ner = trained(scheme)
    for doc in nlp.pipe(TEXTS):
        _, _, _, entity_probs = brute_force(ner, doc)
        group = doc.spans["crf_ner"]
        assert [(s.start, s.end, s.label_) for s in group] == [(e.start, e.end, e.label_) for e in doc.ents]
        assert len(group.attrs["scores"]) == len(group)
        for span, p in entity_confidences(doc):
            assert p == pytest.approx(entity_probs[(span.label_, span.start, span.end)], abs=1e-4)


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_threshold_adds_exactly_the_likely_candidates(scheme):
    threshold = 0.02
    nlp, ner = trained(scheme, steps=2, threshold=threshold)
    for doc in nlp.pipe(TEXTS):
        _, _, _, entity_probs = brute_force(ner, doc)
        ents = {(e.label_, e.start, e.end) for e in doc.ents}
        stored = {(s.label_, s.start, s.end): p for s, p in entity_confidences(doc)}
        expected = {span for span, p in entity_probs.items() if p >= threshold + 1e-4} | ents
        assert expected <= set(stored) <= {span for span, p in entity_probs.items() if p >= threshold - 1e-4} | ents
        for span, p in stored.items():
            assert p == pytest.approx(entity_probs[span], abs=1e-4)
    # doc.ents is the best path either way
    with_candidates = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(TEXTS)]
    ner.cfg["threshold"] = None
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(TEXTS)] == with_candidates


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_kbest_order_and_scores_equal_brute_force(scheme):
    nlp, ner = trained(scheme, steps=2)
    docs = [nlp.make_doc(t) for t in TEXTS]
    analyses = ner.kbest(docs, k=4)
    for doc, doc_analyses in zip(docs, analyses):
        paths, scores, probs, _ = brute_force(ner, doc)
        order = numpy.argsort(-scores, kind="stable")[:4]
        assert len(doc_analyses) == min(4, len(paths))
        assert [a.score for a in doc_analyses] == pytest.approx(list(scores[order]), abs=1e-3)
        assert [a.probability for a in doc_analyses] == pytest.approx(list(probs[order]), abs=1e-4)
        assert [(e.start, e.end, e.label_) for e in doc_analyses[0].ents] == [
            (e.start, e.end, e.label_) for e in nlp(doc.text).ents
        ]


def test_confidences_can_be_switched_off_and_keyed():
    nlp, _ = trained("BILUO", confidences=False)
    assert "crf_ner" not in nlp("Anna Berg joined Oslo").spans
    nlp, _ = trained("BILUO", spans_key="ner_conf")
    assert len(nlp("Anna Berg joined Oslo").spans["ner_conf"]) > 0


def test_confidences_survive_serialization(tmp_path):
    nlp, _ = trained("BILUO", threshold=0.05)
    docs = list(nlp.pipe(TEXTS))
    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    again = list(loaded.pipe(TEXTS))
    for a, b in zip(docs, again):
        assert [(s.start, s.end, s.label_) for s in a.spans["crf_ner"]] == [(s.start, s.end, s.label_) for s in b.spans["crf_ner"]]
        assert a.spans["crf_ner"].attrs["scores"] == pytest.approx(b.spans["crf_ner"].attrs["scores"], abs=1e-6)
    restored = list(DocBin(docs=docs, store_user_data=True).get_docs(nlp.vocab))
    assert restored[0].spans["crf_ner"].attrs["scores"] == docs[0].spans["crf_ner"].attrs["scores"]


# -- exact on long documents ----------------------------------------------------------------


def reference_span_probabilities(crf, emissions, mask, spans, tags, scheme):
    """Entity probabilities by the log-space float64 reference, with one global log Z."""
    from spacy_crf_ner import crf_kernels
    from spacy_crf_ner.tags import span_queries

    flat = [(b, ent) for b, doc_spans in enumerate(spans) for ent in doc_spans]
    paths, forbidden = span_queries([ent for _, ent in flat], tags, scheme)
    crf64 = copy.deepcopy(crf).double()
    scores = crf64.constrained_scores()
    emissions = emissions.double()
    with torch.no_grad():
        posteriors = crf_kernels.forward_backward_reference(emissions, mask, *scores)
        log_probs = crf_kernels.span_log_probs(
            emissions, mask, *scores, posteriors,
            torch.tensor([b for b, _ in flat]), torch.tensor([e[1] for _, e in flat]), torch.tensor([e[2] for _, e in flat]),
            torch.from_numpy(paths), torch.from_numpy(forbidden),
        )
    return log_probs.exp().numpy()


@pytest.mark.slow
def test_long_documents_report_float64_exact_probabilities():
    """Entity probabilities, threshold candidates and k-best path probabilities of docs up to
    5,000 tokens agree with the float64 reference to 1e-4, and none exceeds 1. Emissions of
    scale 8 put log Z near 5e4, where float32 with a global log Z was off by up to 0.4."""
    from spacy_crf_ner import crf_kernels
    from spacy_crf_ner.confidence import entity_probabilities, kbest_analyses, likely_entities
    from spacy_crf_ner.crf import ConstrainedCRF, lengths_to_mask
    from spacy_crf_ner.tags import make_tags, transition_constraints

    tags = make_tags(["PER", "LOC", "ORG"], "BILUO")
    crf = ConstrainedCRF(len(tags), *(torch.from_numpy(m) for m in transition_constraints(tags, "BILUO")))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in crf.parameters():
            param.copy_(torch.randn(param.shape, generator=gen))
    lengths = torch.tensor([5000, 2021, 0, 251])
    mask = lengths_to_mask(lengths)
    emissions = (torch.randn((len(lengths), mask.shape[1], len(tags)), generator=gen) * 8.0).masked_fill(~mask.unsqueeze(2), 0.0)
    with torch.no_grad():
        _, best = crf.viterbi(emissions, mask)
    entities = [
        [(label, s, e + 1) for label, s, e in tags_to_entities([tags[t] for t in best[b, :n].tolist()])]
        for b, n in enumerate(lengths.tolist())
    ]

    probs = entity_probabilities(crf, emissions, mask, entities, tags, "BILUO")
    got = numpy.concatenate(probs)
    expected = reference_span_probabilities(crf, emissions, mask, entities, tags, "BILUO")
    assert len(got) > 1000 and numpy.abs(got - expected).max() < 1e-4 and got.max() <= 1.0

    spans, probs = likely_entities(crf, emissions, mask, entities, tags, "BILUO", threshold=0.05)
    got = numpy.concatenate(probs)
    expected = reference_span_probabilities(crf, emissions, mask, spans, tags, "BILUO")
    assert sum(map(len, spans)) > sum(map(len, entities))  # candidates beyond the best path
    assert numpy.abs(got - expected).max() < 1e-4 and got.max() <= 1.0

    vocab = spacy.blank("en").vocab
    docs = [Doc(vocab, words=["w"] * n) for n in lengths.tolist()]
    analyses = kbest_analyses(crf, emissions, mask, docs, tags, "BILUO", k=3)
    crf64 = copy.deepcopy(crf).double()
    scores = crf64.constrained_scores()
    with torch.no_grad():
        log_z = crf_kernels.log_partition_reference(emissions.double(), mask, *scores)
        for b, doc_analyses in enumerate(analyses):
            n = int(lengths[b])
            assert len(doc_analyses) == 3 if n else len(doc_analyses) == 1
            for analysis in doc_analyses:
                path = torch.tensor([[tags.index(t) for t in analysis.tags] + [0] * (mask.shape[1] - n)])
                path_score = crf_kernels.path_scores(emissions[b : b + 1].double(), path, mask[b : b + 1], *scores)
                exact = float((path_score - log_z[b]).exp())
                assert abs(analysis.probability - exact) < 1e-4 and analysis.probability <= 1.0


def test_identical_sentences_in_a_long_doc_get_the_same_scores():
    """One sentence repeated 400 times as one doc (4,000 tokens): every copy away from the doc's
    ends has the same context, so the same entities with the same probabilities to 1e-4."""
    nlp, ner = trained("BILUO", steps=12)
    sentence = "Anna Berg joined Helix Labs in Oslo last year ."
    width = len(nlp.make_doc(sentence))
    doc = nlp(" ".join([sentence] * 400))
    by_offset = {}
    for span, score in entity_confidences(doc):
        copy_index = span.start // width
        if 3 <= copy_index < 397:  # the CNN sees 4 tokens either side: the ends differ
            key = (span.label_, span.start % width, len(span))
            by_offset.setdefault(key, []).append(score)
    assert by_offset, "the model found no entity in the sentence"
    for key, scores in by_offset.items():
        assert len(scores) == 394, key
        assert max(scores) - min(scores) < 1e-4, key
        assert max(scores) <= 1.0
