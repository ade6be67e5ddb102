"""Tests for the pure-torch CRF in ``spacy_crf_ner.crf``.

Most checks compare against brute force: on sequences of at most 4 tokens every tag path can be
enumerated, so the partition function, likelihood, Viterbi, marginals, span probabilities and
k-best lists all have an obvious reference that shares no code with the dynamic programs.
"""
import io
import itertools

import numpy
import pytest
import torch
import torchcrf
from spacy.training.iob_utils import iob_to_biluo, tags_to_entities

from spacy_crf_ner import tags as tagging
from spacy_crf_ner.crf import IMPOSSIBLE, ConstrainedCRF, lengths_to_mask

# (scheme, labels); scheme None = no constraints over `labels` (an int) tags.
CONFIGS = [
    ("BILUO", ["PER"]),
    ("BIO", ["PER"]),
    ("BIO", ["PER", "LOC"]),
    (None, 4),
]
SCHEME_CONFIGS = [c for c in CONFIGS if c[0] is not None]
IDS = [f"{s}-{l}" for s, l in CONFIGS]


def make_crf(scheme, labels, seed=0, dtype=torch.float64):
    """A CRF with random (not small) parameters, so transitions matter in every test."""
    if scheme is None:
        tag_list = [f"T{i}" for i in range(labels)]
        crf = ConstrainedCRF(labels)
    else:
        tag_list = tagging.make_tags(labels, scheme)
        start, trans, end = tagging.transition_constraints(tag_list, scheme)
        crf = ConstrainedCRF(len(tag_list), torch.tensor(start), torch.tensor(trans), torch.tensor(end))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in (crf.start_transitions, crf.end_transitions, crf.transitions):
            param.copy_(torch.randn(param.shape, generator=gen))
    return crf.to(dtype), tag_list


def make_batch(num_tags, lengths, seed=0, scale=2.0, pad_value=1e6, dtype=torch.float64, max_length=None):
    """Random emissions for left-aligned sequences; padding holds junk that must not leak."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    mask = lengths_to_mask(lengths, max_length)
    emissions = torch.randn((len(lengths), mask.shape[1], num_tags), generator=gen, dtype=dtype) * scale
    emissions = emissions.masked_fill(~mask.unsqueeze(2), pad_value)
    return emissions, mask


def brute_paths(crf, emissions, length):
    """``(paths (P, n), scores (P,))`` of every valid path of one sequence, in numpy float64."""
    num_tags = crf.num_tags
    if length == 0:
        return numpy.zeros((1, 0), dtype=int), numpy.zeros(1)
    em = emissions[:length].detach().double().numpy()
    start = crf.start_transitions.detach().double().numpy()
    trans = crf.transitions.detach().double().numpy()
    end = crf.end_transitions.detach().double().numpy()
    ok_start, ok_trans, ok_end = (m.numpy() for m in (crf.allowed_start, crf.allowed_transitions, crf.allowed_end))
    paths = numpy.array(list(itertools.product(range(num_tags), repeat=length)))
    prev, nxt = paths[:, :-1], paths[:, 1:]
    valid = ok_start[paths[:, 0]] & ok_end[paths[:, -1]] & ok_trans[prev, nxt].all(axis=1)
    scores = (
        start[paths[:, 0]]
        + em[numpy.arange(length), paths].sum(axis=1)
        + trans[prev, nxt].sum(axis=1)
        + end[paths[:, -1]]
    )
    return paths[valid], scores[valid]


def brute_marginals(paths, scores, max_length, num_tags):
    """``(max_length, T)`` tag marginals from every valid path and its score."""
    probs = numpy.exp(scores - logsumexp(scores))
    expected = numpy.zeros((max_length, num_tags))
    for i in range(paths.shape[1]):
        numpy.add.at(expected[i], paths[:, i], probs)
    return expected


def span_query_args(queries, tag_list, scheme):
    """``(batch_index, starts, ends, span_tags, forbidden_next)`` for ``span_log_probs``, from
    ``(b, label, start, end)`` queries."""
    span_tags, forbidden = tagging.span_queries([(label, s, e) for _, label, s, e in queries], tag_list, scheme)
    return (
        torch.tensor([q[0] for q in queries]),
        torch.tensor([q[2] for q in queries]),
        torch.tensor([q[3] for q in queries]),
        torch.from_numpy(span_tags),
        torch.from_numpy(forbidden),
    )


def logsumexp(values):
    values = numpy.asarray(values, dtype=float)
    if len(values) == 0:
        return -numpy.inf
    top = values.max()
    return top + numpy.log(numpy.exp(values - top).sum())


def entities(tag_strings, scheme):
    """Entity spans ``(label, start, end_exclusive)`` of a valid path, by spaCy's own converters."""
    biluo = list(tag_strings) if scheme == "BILUO" else iob_to_biluo(list(tag_strings))
    return {(label, start, end + 1) for label, start, end in tags_to_entities(biluo)}


LENGTHS = [0, 1, 2, 3, 4, 4, 2, 0]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run on one intra-op thread: the CRF's per-position steps are tiny ops, and on a busy
    machine OpenMP's thread hand-offs made them 10-25x slower (a 5000-token backward went from
    1.5 s to 35 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- brute force ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme,labels", CONFIGS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_log_partition_and_forward_backward_match_brute_force(scheme, labels, seed):
    crf, _ = make_crf(scheme, labels, seed)
    emissions, mask = make_batch(crf.num_tags, LENGTHS, seed, max_length=5)
    log_z = crf.log_partition(emissions, mask)
    alpha, beta, fb_log_z = crf.forward_backward(emissions, mask)
    for b, n in enumerate(LENGTHS):
        _, scores = brute_paths(crf, emissions[b], n)
        assert log_z[b].item() == pytest.approx(logsumexp(scores), abs=1e-9)
    torch.testing.assert_close(fb_log_z, log_z)
    # Every real token splits every path in two: logsumexp(alpha + beta) is log Z everywhere.
    per_token = torch.logsumexp(alpha + beta, dim=2)
    torch.testing.assert_close(per_token[mask], log_z.unsqueeze(1).expand_as(mask)[mask])
    assert torch.all(alpha[~mask] == 0) and torch.all(beta[~mask] == 0)


@pytest.mark.parametrize("scheme,labels", CONFIGS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_with_unknown_tags_matches_brute_force(scheme, labels, seed):
    crf, _ = make_crf(scheme, labels, seed)
    emissions, mask = make_batch(crf.num_tags, LENGTHS, seed, max_length=5)
    rng = numpy.random.default_rng(seed)
    gold = torch.full(mask.shape, -1, dtype=torch.long)
    expected = []
    for b, n in enumerate(LENGTHS):
        paths, scores = brute_paths(crf, emissions[b], n)
        path = paths[rng.integers(len(paths))]
        known = rng.random(n) < 0.6
        gold[b, :n] = torch.tensor(numpy.where(known, path, -1))
        # Padding tags are ignored, whatever they are.
        gold[b, n:] = torch.tensor(rng.integers(-1, crf.num_tags, mask.shape[1] - n))
        agree = (paths[:, known] == path[known]).all(axis=1)
        expected.append(logsumexp(scores[agree]) - logsumexp(scores))
    llh = crf(emissions, gold, mask, reduction="none")
    numpy.testing.assert_allclose(llh.detach().numpy(), expected, atol=1e-9)
    # Gold that breaks a constraint is (numerically) impossible, yet finite.
    if scheme is not None:
        bad = torch.zeros_like(gold)
        bad[:, 0] = tagging.make_tags(labels, scheme).index(f"I-{labels[0]}")
        llh = crf(emissions, bad, mask, reduction="none")
        assert torch.isfinite(llh).all()
        assert (llh[mask[:, 0]] < IMPOSSIBLE / 2).all()


@pytest.mark.parametrize("scheme,labels", CONFIGS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_viterbi_matches_brute_force(scheme, labels, seed):
    crf, _ = make_crf(scheme, labels, seed)
    emissions, mask = make_batch(crf.num_tags, LENGTHS, seed, max_length=5)
    scores, tags = crf.viterbi(emissions, mask)
    decoded = crf.decode(emissions, mask)
    for b, n in enumerate(LENGTHS):
        paths, brute = brute_paths(crf, emissions[b], n)
        best = int(numpy.argmax(brute))
        assert scores[b].item() == pytest.approx(brute[best], abs=1e-9)
        assert tags[b, :n].tolist() == paths[best].tolist() == decoded[b]
        assert (tags[b, n:] == -1).all()


@pytest.mark.parametrize("scheme,labels", CONFIGS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_marginals_match_brute_force(scheme, labels, seed):
    crf, _ = make_crf(scheme, labels, seed)
    emissions, mask = make_batch(crf.num_tags, LENGTHS, seed, max_length=5)
    marginals = crf.marginals(emissions, mask)
    for b, n in enumerate(LENGTHS):
        paths, scores = brute_paths(crf, emissions[b], n)
        expected = brute_marginals(paths, scores, mask.shape[1], crf.num_tags)
        numpy.testing.assert_allclose(marginals[b].detach().numpy(), expected, atol=1e-9)


@pytest.mark.parametrize("scheme,labels", SCHEME_CONFIGS + [("BILUO", ["PER", "LOC"])])
@pytest.mark.parametrize("seed", [0, 1])
def test_span_log_probs_match_brute_force(scheme, labels, seed):
    crf, tag_list = make_crf(scheme, labels, seed)
    lengths = [1, 2, 3, 4, 3] if len(tag_list) <= 5 else [1, 3, 2]  # 9 tags: keep 9**n small
    emissions, mask = make_batch(crf.num_tags, lengths, seed, max_length=5)
    queries = [
        (b, label, start, end)
        for b, n in enumerate(lengths)
        for label in labels
        for start in range(n)
        for end in range(start + 1, n + 1)
    ]
    args = span_query_args(queries, tag_list, scheme)
    got = crf.span_log_probs(emissions, mask, *args)
    # Sharing one forward-backward pass gives the same numbers.
    shared = crf.span_log_probs(emissions, mask, *args, posteriors=crf.posteriors(emissions, mask))
    torch.testing.assert_close(got, shared)
    # Without gradients (on CPU: the NumPy kernels), the same numbers.
    with torch.no_grad():
        torch.testing.assert_close(crf.span_log_probs(emissions, mask, *args), got.detach(), rtol=0, atol=1e-12)

    brute = {}
    for b, n in enumerate(lengths):
        paths, scores = brute_paths(crf, emissions[b], n)
        log_probs = scores - logsumexp(scores)
        found = {}
        for path, log_prob in zip(paths, log_probs):
            for span in entities([tag_list[t] for t in path], scheme):
                found.setdefault(span, []).append(log_prob)
        brute[b] = found
    for (b, label, start, end), value in zip(queries, got.tolist()):
        expected = logsumexp(brute[b].get((label, start, end), []))
        assert numpy.isfinite(expected)  # every span can be spelled by a valid path
        assert value == pytest.approx(expected, abs=1e-7), (b, label, start, end)

    # An independent route: the constrained forward algorithm, with the span's tags pinned.
    for n_q, (b, label, start, end) in enumerate(queries[:12]):
        allowed = torch.ones_like(emissions, dtype=torch.bool)
        allowed[b, start:end] = False
        allowed[b, torch.arange(start, end), args[3][n_q, : end - start]] = True
        if end < lengths[b]:
            allowed[b, end] = ~args[4][n_q]
        pinned = crf.log_partition(emissions, mask, allowed) - crf.log_partition(emissions, mask)
        assert got[n_q].item() == pytest.approx(pinned[b].item(), abs=1e-9)


def test_span_log_probs_generic_queries_and_gradients():
    crf, tag_list = make_crf("BIO", ["PER", "LOC"], seed=3)
    emissions, mask = make_batch(crf.num_tags, [4, 0, 3], seed=3)
    emissions.requires_grad_(True)
    # An empty query list, then a bad query (empty span; past the sequence's end).
    assert crf.span_log_probs(emissions, mask, *(torch.zeros(0, dtype=torch.long),) * 3,
                              torch.zeros((0, 1), dtype=torch.long)).shape == (0,)
    for start, end, b in [(1, 1, 0), (2, 4, 2), (0, 1, 1)]:
        with pytest.raises(ValueError):
            crf.span_log_probs(emissions, mask, torch.tensor([b]), torch.tensor([start]), torch.tensor([end]),
                               torch.tensor([[1, 2]]))
    # Without forbidden_next, "B-PER I-PER here" includes continuing with I-PER: never less likely.
    b, s, e = torch.tensor([0]), torch.tensor([0]), torch.tensor([2])
    path = torch.tensor([[1, 2]])
    forbid = torch.zeros((1, crf.num_tags), dtype=torch.bool)
    forbid[0, 2] = True
    loose = crf.span_log_probs(emissions, mask, b, s, e, path)
    exact = crf.span_log_probs(emissions, mask, b, s, e, path, forbid)
    assert loose.item() > exact.item()
    exact.sum().backward()
    assert torch.isfinite(emissions.grad).all()
    assert torch.all(emissions.grad[~mask] == 0)


@pytest.mark.parametrize("scheme,labels", CONFIGS, ids=IDS)
@pytest.mark.parametrize("k", [1, 3, 40])
def test_kbest_matches_brute_force(scheme, labels, k):
    crf, _ = make_crf(scheme, labels, seed=k)
    emissions, mask = make_batch(crf.num_tags, LENGTHS, seed=k, max_length=5)
    scores, tags = crf.kbest(emissions, mask, k=k)
    assert scores.shape == (len(LENGTHS), k) and tags.shape == (len(LENGTHS), k, 5)
    for b, n in enumerate(LENGTHS):
        paths, brute = brute_paths(crf, emissions[b], n)
        order = numpy.argsort(-brute, kind="stable")[:k]
        expected = numpy.full(k, -numpy.inf)
        expected[: len(order)] = brute[order]
        numpy.testing.assert_allclose(scores[b].detach().numpy(), expected, atol=1e-9)
        for rank in range(k):
            if rank < len(order):
                assert tags[b, rank, :n].tolist() == paths[order[rank]].tolist()
                assert (tags[b, rank, n:] == -1).all()
            else:
                assert (tags[b, rank] == -1).all()
    best_scores, best_tags = crf.viterbi(emissions, mask)
    torch.testing.assert_close(scores[:, 0], best_scores)
    assert torch.equal(tags[:, 0], best_tags)


def test_kbest_k1_equals_viterbi_float32_large_batch():
    crf, _ = make_crf("BILUO", ["PER", "LOC", "ORG"], seed=5, dtype=torch.float32)
    emissions, mask = make_batch(crf.num_tags, list(range(0, 40)), seed=5, scale=5.0, dtype=torch.float32)
    scores, tags = crf.kbest(emissions, mask, k=1)
    best_scores, best_tags = crf.viterbi(emissions, mask)
    assert torch.equal(tags[:, 0], best_tags)
    torch.testing.assert_close(scores[:, 0], best_scores)
    with pytest.raises(ValueError):
        crf.kbest(emissions, mask, k=0)


# -- parity with pytorch-crf ----------------------------------------------------------------


@pytest.mark.parametrize("full_mask", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_torchcrf_without_constraints(full_mask, seed):
    num_tags, batch, length = 6, 8, 7
    torch.manual_seed(seed)
    ours = ConstrainedCRF(num_tags)
    reference = torchcrf.CRF(num_tags, batch_first=True)
    state = {k: v for k, v in ours.state_dict().items() if not k.startswith("allowed_")}
    reference.load_state_dict(state)
    emissions = torch.randn(batch, length, num_tags) * 3
    tags = torch.randint(num_tags, (batch, length))
    if full_mask:
        mask = torch.ones(batch, length, dtype=torch.bool)
    else:
        lengths = torch.randint(1, length + 1, (batch,))
        lengths[0] = length
        mask = lengths_to_mask(lengths, length)
    for reduction in ("none", "sum", "mean", "token_mean"):
        torch.testing.assert_close(
            ours(emissions, tags, mask, reduction=reduction),
            reference(emissions, tags, mask, reduction=reduction),
        )
    assert ours.decode(emissions, mask) == reference.decode(emissions, mask)


# -- constraints ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_decoding_never_breaks_the_scheme(scheme):
    gen = torch.Generator().manual_seed(7)
    for round_ in range(9):
        labels = ["PER", "LOC", "ORG"][: 1 + round_ % 3]
        crf, tag_list = make_crf(scheme, labels, seed=round_, dtype=torch.float32)
        lengths = torch.randint(0, 20, (16,), generator=gen)
        mask = lengths_to_mask(lengths, 20)
        emissions = torch.randn((16, 20, crf.num_tags), generator=gen) * 20
        for path in crf.decode(emissions, mask):
            assert tagging.is_valid([tag_list[t] for t in path], scheme)
        scores, tags = crf.kbest(emissions, mask, k=4)
        assert torch.isfinite(scores[:, 0]).all()
        for b, n in enumerate(lengths.tolist()):
            for rank in range(4):
                if torch.isfinite(scores[b, rank]):
                    assert tagging.is_valid([tag_list[t] for t in tags[b, rank, :n].tolist()], scheme)
        # Forbidden tags get no posterior mass.
        marginals = crf.marginals(emissions, mask)
        forbidden_first = ~crf.allowed_start
        assert marginals[:, 0, forbidden_first].max() < 1e-6


# -- numerics -------------------------------------------------------------------------------


def check_everything_finite(crf, emissions, mask, expect_real_rows=True):
    emissions = emissions.detach().requires_grad_(True)
    crf.zero_grad()
    gold = torch.full(mask.shape, -1, dtype=torch.long)
    gold[:, ::3] = 0  # some known "O", the rest unknown
    loss = -crf(emissions, gold, mask, reduction="token_mean")
    assert torch.isfinite(loss)
    if emissions.shape[1] == 0:
        # log_partition returns a fresh zeros tensor for a (B, 0, T) batch: no graph to run back.
        assert loss.item() == 0
    else:
        loss.backward()
        assert torch.isfinite(emissions.grad).all()
        for param in crf.parameters():
            assert param.grad is None or torch.isfinite(param.grad).all()  # None: length 1 never moves
    with torch.no_grad():
        marginals = crf.marginals(emissions, mask)
        assert torch.isfinite(marginals).all()
        sums = marginals.sum(dim=2)
        torch.testing.assert_close(sums[mask], torch.ones_like(sums[mask]))
        assert torch.all(sums[~mask] == 0)
        alpha, beta, log_z = crf.forward_backward(emissions, mask)
        assert torch.isfinite(alpha).all() and torch.isfinite(beta).all() and torch.isfinite(log_z).all()
        scores, tags = crf.viterbi(emissions, mask)
        assert torch.isfinite(scores).all()
        assert torch.equal(tags >= 0, mask)
        k_scores, k_tags = crf.kbest(emissions, mask, k=2)
        assert torch.isfinite(k_scores[:, 0]).all()
        torch.testing.assert_close(k_scores[:, 0], scores)
        # Over thousands of float32 additions exact ties between paths happen, and max() and
        # topk() may break them differently: compare the paths by their (float64) scores.
        assert torch.equal(k_tags[:, 0] >= 0, mask)
        for b in range(len(mask)):
            n = int(mask[b].sum())
            assert path_score(crf, emissions[b], k_tags[b, 0, :n]) == pytest.approx(
                path_score(crf, emissions[b], tags[b, :n]), rel=1e-6, abs=1e-6)
    return marginals


def path_score(crf, emissions, path):
    """The float64 score of one path (``path`` (n,) long), constraints ignored."""
    if len(path) == 0:
        return 0.0
    em = emissions.double()
    start, trans, end = (p.double() for p in (crf.start_transitions, crf.transitions, crf.end_transitions))
    score = start[path[0]] + em[torch.arange(len(path)), path].sum() + trans[path[:-1], path[1:]].sum() + end[path[-1]]
    return score.item()


@pytest.mark.parametrize("length", [0, 1])
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_numerics_tiny_lengths(length, scale):
    crf, _ = make_crf("BILUO", ["PER", "LOC"], dtype=torch.float32)
    emissions, mask = make_batch(crf.num_tags, [length, length], scale=scale, dtype=torch.float32)
    check_everything_finite(crf, emissions, mask)
    # A (B, 0, T) batch too.
    empty = torch.zeros((2, 0, crf.num_tags))
    assert crf.forward_backward(empty)[0].shape == (2, 0, crf.num_tags)
    assert crf.marginals(empty).shape == (2, 0, crf.num_tags)
    scores, tags = crf.kbest(empty, k=3)
    assert scores[:, 0].eq(0).all() and scores[:, 1:].eq(float("-inf")).all() and tags.shape == (2, 3, 0)


@pytest.mark.parametrize("lengths,scale", [([5000, 0, 1, 2, 17], 1e3), ([300, 0, 1, 299, 5], 1.0)])
def test_numerics_long_and_mixed_lengths(lengths, scale):
    crf, _ = make_crf("BILUO", ["PER", "LOC"], dtype=torch.float32)
    emissions, mask = make_batch(crf.num_tags, lengths, scale=scale, dtype=torch.float32)
    check_everything_finite(crf, emissions, mask)


def test_numerics_all_padding():
    crf, _ = make_crf("BIO", ["PER", "LOC"], dtype=torch.float32)
    emissions, mask = make_batch(crf.num_tags, [0, 0, 0], dtype=torch.float32, max_length=4)
    marginals = check_everything_finite(crf, emissions, mask)
    assert torch.all(marginals == 0)
    assert torch.all(crf(emissions, torch.zeros_like(mask, dtype=torch.long), mask, reduction="none") == 0)
    scores, tags = crf.kbest(emissions, mask, k=3)
    assert scores[:, 0].eq(0).all() and scores[:, 1:].eq(float("-inf")).all() and tags.eq(-1).all()


def test_padding_junk_does_not_leak():
    crf, _ = make_crf("BIO", ["PER", "LOC"], dtype=torch.float64)
    emissions, mask = make_batch(crf.num_tags, [4, 2, 0], max_length=5)
    clean = emissions.masked_fill(~mask.unsqueeze(2), 0.0)
    for junk in (float("inf"), float("-inf"), float("nan")):
        dirty = emissions.masked_fill(~mask.unsqueeze(2), junk).requires_grad_(True)
        for got, want in zip(crf.forward_backward(dirty, mask), crf.forward_backward(clean, mask)):
            assert torch.equal(got, want)
        marginals = crf.marginals(dirty, mask)
        torch.testing.assert_close(marginals, crf.marginals(clean, mask))
        span = crf.span_log_probs(dirty, mask, torch.tensor([1]), torch.tensor([0]), torch.tensor([2]),
                                  torch.tensor([[1, 2]]))
        span.sum().backward()
        assert torch.isfinite(span).all() and torch.isfinite(dirty.grad).all()
        with torch.no_grad():  # the NumPy kernel
            queries = (torch.tensor([1, 0, 0]), torch.tensor([0, 2, 3]), torch.tensor([2, 4, 4]), torch.tensor([[1, 2], [3, 4], [1, -1]]))
            torch.testing.assert_close(crf.span_log_probs(dirty, mask, *queries), crf.span_log_probs(clean, mask, *queries))
        assert torch.equal(crf.kbest(dirty, mask, k=3)[1], crf.kbest(clean, mask, k=3)[1])


# -- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme,labels", CONFIGS, ids=IDS)
def test_marginals_are_the_gradient_of_log_partition(scheme, labels):
    crf, _ = make_crf(scheme, labels, seed=11)
    emissions, mask = make_batch(crf.num_tags, [7, 1, 0, 12, 5], seed=11, pad_value=0.0)
    emissions.requires_grad_(True)
    crf.log_partition(emissions, mask).sum().backward()
    torch.testing.assert_close(crf.marginals(emissions, mask), emissions.grad)


# -- serialization --------------------------------------------------------------------------


def test_from_state_bytes_round_trip():
    crf, _ = make_crf("BILUO", ["PER", "LOC"], seed=4, dtype=torch.float32)
    buffer = io.BytesIO()
    torch.save(crf.state_dict(), buffer)
    restored = ConstrainedCRF.from_state_bytes(buffer.getvalue())
    assert restored.num_tags == crf.num_tags
    for name, value in crf.state_dict().items():
        assert torch.equal(restored.state_dict()[name], value), name
    assert not restored.allowed_transitions.all()  # the constraints came back, not the defaults
    emissions, mask = make_batch(crf.num_tags, [9, 3, 0, 6], seed=4, scale=5.0, dtype=torch.float32)
    assert restored.decode(emissions, mask) == crf.decode(emissions, mask)
    torch.testing.assert_close(restored.log_partition(emissions, mask), crf.log_partition(emissions, mask))


# -- the kernels, each against the log-space reference and brute force -----------------------

from spacy_crf_ner import crf_kernels as kernels  # noqa: E402

MIXED_LENGTHS = [0, 1, 2, 7, 40, 23, 1, 40]


def random_gold(crf, emissions, mask, seed, known_share=0.5):
    """Valid gold paths (the best path under noise), with a share of the tags unknown (-1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        _, gold = crf.viterbi(emissions + 5.0 * torch.randn(emissions.shape, generator=gen, dtype=emissions.dtype), mask)
    unknown = torch.rand(gold.shape, generator=gen) > known_share
    return gold.masked_fill(unknown | ~mask, -1)


@pytest.mark.parametrize("scheme,labels", CONFIGS, ids=IDS)
@pytest.mark.parametrize("scale", [2.0, 40.0, 1000.0])
def test_log_partition_matmul_equals_reference(scheme, labels, scale):
    crf, _ = make_crf(scheme, labels, seed=3)
    emissions, mask = make_batch(crf.num_tags, MIXED_LENGTHS, seed=3, scale=scale, pad_value=float("nan"))
    scores = crf.constrained_scores()
    expected = kernels.log_partition_reference(emissions, mask, *scores)
    torch.testing.assert_close(kernels.log_partition_matmul(emissions, mask, *scores), expected, rtol=1e-12, atol=1e-9)
    # The numerator with partly known gold: the reference on IMPOSSIBLE-masked emissions.
    gold = random_gold(crf, emissions, mask, seed=3)
    allowed = torch.ones_like(emissions, dtype=torch.bool)
    known = gold >= 0
    allowed[known] = torch.nn.functional.one_hot(gold[known], crf.num_tags).bool()
    leaf = emissions.clone().requires_grad_(True)
    expected = kernels.log_partition_reference(leaf.masked_fill(~allowed, IMPOSSIBLE), mask, *scores)
    expected_grad, = torch.autograd.grad(expected.sum(), leaf)
    got = kernels.log_partition_matmul(leaf, mask, *scores, allowed)
    got_grad, = torch.autograd.grad(got.sum(), leaf)
    # Paths through an impossible tag are worth ~exp(-10000): both kernels ignore them, to rounding.
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(got_grad, expected_grad, rtol=0, atol=1e-9)  # the posteriors of the gold's paths


@pytest.mark.parametrize("scheme,labels", CONFIGS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_kernels_match_brute_force(scheme, labels, seed):
    crf, _ = make_crf(scheme, labels, seed)
    emissions, mask = make_batch(crf.num_tags, LENGTHS, seed, max_length=5)
    scores = crf.constrained_scores()
    log_z = kernels.log_partition_reference(emissions, mask, *scores)
    reference = kernels.forward_backward_reference(emissions, mask, *scores)
    best, best_tags = kernels.viterbi_reference(emissions, mask, *scores)
    tag_marginals = kernels.marginals(reference, mask)
    torch.testing.assert_close(reference.log_z, log_z)
    for b, n in enumerate(LENGTHS):
        paths, brute = brute_paths(crf, emissions[b], n)
        assert log_z[b].item() == pytest.approx(logsumexp(brute), abs=1e-9)
        assert best[b].item() == pytest.approx(brute.max(), abs=1e-9)
        assert best_tags[b, :n].tolist() == paths[numpy.argmax(brute)].tolist()
        expected = brute_marginals(paths, brute, mask.shape[1], crf.num_tags)
        numpy.testing.assert_allclose(tag_marginals[b].detach().numpy(), expected, atol=1e-9)


@pytest.mark.parametrize("scheme,labels", SCHEME_CONFIGS + [("BILUO", ["PER", "LOC"])])
@pytest.mark.parametrize("scale", [2.0, 40.0, 1000.0])
def test_forward_backward_matmul_equals_reference(scheme, labels, scale):
    """Both fast kernels against the reference on mixed lengths and large emission scales."""
    crf, tag_list = make_crf(scheme, labels, seed=5)
    emissions, mask = make_batch(crf.num_tags, MIXED_LENGTHS, seed=5, scale=scale, pad_value=float("inf"))
    scores = crf.constrained_scores()
    reference = kernels.forward_backward_reference(emissions, mask, *scores)
    arrays = kernels.forward_backward_numpy(emissions.numpy(), mask.sum(1).numpy(), *(s.detach().numpy() for s in scores))
    for fast in (kernels.forward_backward_matmul(emissions, mask, *scores), kernels.Posteriors(*map(torch.from_numpy, arrays))):
        check_posteriors(fast, reference, emissions, mask, scores, labels, tag_list, scheme)


def test_length_groups_split_off_a_long_outlier_only():
    lengths = numpy.array([5, 300, 0, 7, 5, 6] + [4] * 40)
    groups = kernels.length_groups(lengths, num_tags=9)
    assert [g.tolist() for g in groups[:1]] == [[1]]
    assert sorted(numpy.concatenate(groups).tolist()) == list(range(len(lengths)))
    assert len(kernels.length_groups(numpy.array([40, 23, 7, 1, 0]), num_tags=9)) == 1
    assert [g.tolist() for g in kernels.length_groups(numpy.array([3]), 9)] == [[0]]


@pytest.mark.parametrize("scheme,labels", [("BILUO", ["PER", "LOC"]), ("BIO", ["PER", "LOC"])])
@pytest.mark.parametrize("scale", [2.0, 1000.0])
def test_forward_backward_numpy_in_length_groups_equals_reference(scheme, labels, scale):
    """A batch with one long document among short ones runs in groups; the numbers are those of
    one call and of the log-space reference, spans and marginals included."""
    crf, tag_list = make_crf(scheme, labels, seed=4)
    lengths = [3, 2, 40, 0, 1, 2] + [3] * 30 + [400]
    emissions, mask = make_batch(crf.num_tags, lengths, seed=4, scale=scale, pad_value=float("nan"))
    scores = crf.constrained_scores()
    args = (emissions.numpy(), mask.sum(1).numpy(), *(s.detach().numpy() for s in scores))
    assert len(kernels.length_groups(args[1], crf.num_tags)) > 1
    grouped = kernels.forward_backward_numpy(*args)
    whole = kernels.forward_backward_scaled(*args)
    exact = whole[3]
    for got, expected in zip(grouped, whole[:3]):
        numpy.testing.assert_allclose(got[exact], expected[exact], rtol=1e-12, atol=1e-9)
    reference = kernels.forward_backward_reference(emissions, mask, *scores)
    fast = kernels.Posteriors(*map(torch.from_numpy, grouped))
    torch.testing.assert_close(fast.log_z, reference.log_z, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(kernels.marginals(fast, mask), kernels.marginals(reference, mask), rtol=0, atol=1e-9)
    queries = [(b, labels[0], start, start + 2) for b, n in enumerate(lengths) for start in range(0, n - 1, 7)]
    span_args = span_query_args(queries, tag_list, scheme)
    got = kernels.span_log_probs(emissions, mask, *scores, fast, *span_args).exp()
    torch.testing.assert_close(got, kernels.span_log_probs(emissions, mask, *scores, reference, *span_args).exp(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("scheme,labels", [("BILUO", ["PER", "LOC"]), ("BIO", ["PER", "LOC"])])
@pytest.mark.parametrize("scale", [2.0, 40.0, 300.0, 1000.0])
@pytest.mark.parametrize("block", ["none", "inside", "preset"])
def test_forward_backward_scaled_where_it_vouches_and_redone_elsewhere(scheme, labels, scale, block):
    """The probability-space kernel equals the log-space one (the same numbers, not just the same
    probabilities) on every sequence it marks exact, blocked (IMPOSSIBLE) tags included; the
    others are redone, and the combination matches the reference.

    Blocked tags as the component makes them: ``inside``, I-X at random tokens (B-X still reaches
    what follows); ``preset``, every tag but the best path's at a third of the tokens (a doc's own
    entities), so that some sums are fed by no allowed path at all."""
    crf, tag_list = make_crf(scheme, labels, seed=9)
    emissions, mask = make_batch(crf.num_tags, MIXED_LENGTHS, seed=9, scale=scale, pad_value=float("nan"))
    scores = crf.constrained_scores()
    gen = torch.Generator().manual_seed(9)
    blocked = torch.zeros(emissions.shape, dtype=torch.bool)
    if block == "inside":
        inside = torch.tensor([tag.startswith("I-") for tag in tag_list])
        blocked = (torch.rand(emissions.shape, generator=gen) < 0.3) & inside
    elif block == "preset":
        _, path = kernels.viterbi_reference(emissions, mask, *scores)
        forced = (torch.rand(mask.shape, generator=gen) < 0.3).unsqueeze(2)
        blocked = forced & (torch.arange(crf.num_tags) != path.clamp(min=0).unsqueeze(2))
    blocked &= mask.unsqueeze(2)
    emissions = emissions.masked_fill(blocked, IMPOSSIBLE)
    args = (emissions.numpy(), mask.sum(1).numpy(), *(s.detach().numpy() for s in scores))
    alpha, beta, log_norms, exact = kernels.forward_backward_scaled(*args)
    log_alpha, log_beta, log_log_norms = kernels.forward_backward_log_numpy(*args)
    assert blocked.any() == (block != "none")
    if scale <= 40.0:
        assert exact.all()  # blocked tags included
    if scale >= 300.0:
        assert not exact.all()  # the log-space kernel redoes some
    numpy.testing.assert_allclose(log_norms[exact], log_log_norms[exact], rtol=1e-12, atol=1e-8)
    for got, expected in ((alpha, log_alpha), (beta, log_beta)):
        # Entries no allowed path reaches are IMPOSSIBLE-level in both, not equal: compared as
        # probabilities (0) through the checks below.
        possible = expected[exact] > IMPOSSIBLE / 2
        numpy.testing.assert_allclose(got[exact][possible], expected[exact][possible], rtol=1e-12, atol=1e-8)
        assert (got[exact][~possible] < IMPOSSIBLE / 2).all()
    reference = kernels.forward_backward_reference(emissions, mask, *scores)
    fast = kernels.Posteriors(*map(torch.from_numpy, kernels.forward_backward_numpy(*args)))
    check_posteriors(fast, reference, emissions, mask, scores, labels, tag_list, scheme)


def mixed_length_spans(labels, longest=4):
    """``(b, label, start, end)``: every labelled span of up to ``longest`` tokens in a batch of
    MIXED_LENGTHS."""
    return [
        (b, label, start, end)
        for b, n in enumerate(MIXED_LENGTHS)
        for label in labels
        for start in range(n)
        for end in range(start + 1, min(n, start + longest) + 1)
    ]


def check_posteriors(fast, reference, emissions, mask, scores, labels, tag_list, scheme):
    """Marginals and every labelled span of up to 4 tokens agree between two Posteriors."""
    torch.testing.assert_close(fast.log_z, reference.log_z, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(kernels.marginals(fast, mask), kernels.marginals(reference, mask), rtol=0, atol=1e-9)
    queries = mixed_length_spans(labels)
    args = span_query_args(queries, tag_list, scheme)
    got = kernels.span_log_probs(emissions, mask, *scores, fast, *args)
    expected = kernels.span_log_probs(emissions, mask, *scores, reference, *args)
    # Compared as probabilities: at scale 1000 most spans have log-probabilities of -1e4 and below.
    torch.testing.assert_close(got.exp(), expected.exp(), rtol=0, atol=1e-9)
    likely = expected > -30.0
    torch.testing.assert_close(got[likely], expected[likely], rtol=0, atol=1e-8)


@pytest.mark.parametrize("scheme,labels", SCHEME_CONFIGS)
@pytest.mark.parametrize("scale", [2.0, 40.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_span_log_probs_numpy_equals_torch_kernel(scheme, labels, scale, dtype):
    """The NumPy span kernel gives the torch kernel's numbers on the same posteriors, forbidden
    next tags or not, with padding full of junk."""
    crf, tag_list = make_crf(scheme, labels, seed=5, dtype=dtype)
    emissions, mask = make_batch(crf.num_tags, MIXED_LENGTHS, seed=5, scale=scale, pad_value=float("nan"), dtype=dtype)
    scores = crf.constrained_scores()
    with torch.no_grad():
        posteriors = crf.posteriors(emissions, mask)
    queries = mixed_length_spans(labels)
    args = span_query_args(queries, tag_list, scheme)
    lengths = mask.sum(1).numpy()
    arrays = [x.detach().numpy() for x in (emissions, *scores)]
    for forbidden in (args[4], None):
        expected = kernels.span_log_probs(emissions, mask, *scores, posteriors, *args[:4], forbidden).detach()
        got = kernels.span_log_probs_numpy(
            arrays[0], lengths, *arrays[1:], tuple(x.numpy() for x in posteriors), *(x.numpy() for x in args[:4]),
            None if forbidden is None else forbidden.numpy(),
        )
        assert got.dtype == arrays[0].dtype and numpy.isfinite(got).all()
        tolerance = 1e-12 if dtype == torch.float64 else 1e-4
        numpy.testing.assert_allclose(got, expected.numpy(), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("scheme,labels", CONFIGS, ids=IDS)
@pytest.mark.parametrize("scale", [2.0, 40.0, 1000.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_viterbi_numpy_equals_reference(scheme, labels, scale, dtype):
    crf, _ = make_crf(scheme, labels, seed=7, dtype=dtype)
    emissions, mask = make_batch(crf.num_tags, MIXED_LENGTHS, seed=7, scale=scale, dtype=dtype, pad_value=float("nan"))
    scores = [s.detach() for s in crf.constrained_scores()]
    expected, expected_tags = kernels.viterbi_reference(emissions, mask, *scores)
    best, tags = kernels.viterbi_numpy(emissions.numpy(), mask.sum(1).numpy(), *(s.detach().numpy() for s in scores))
    torch.testing.assert_close(torch.from_numpy(best), expected.detach())
    assert torch.equal(torch.from_numpy(tags) >= 0, mask)
    # Exact ties may be broken differently: compare the paths by their float64 scores.
    for b in range(len(mask)):
        n = int(mask[b].sum())
        assert path_score(crf, emissions[b], torch.from_numpy(tags[b, :n])) == pytest.approx(
            path_score(crf, emissions[b], expected_tags[b, :n]), rel=1e-6, abs=1e-6)


def test_padding_may_hold_inf_and_nan_for_the_loss():
    """The likelihood's value and gradients never read padding, whatever the caller padded with."""
    crf, _ = make_crf("BILUO", ["PER", "LOC"], seed=9)
    emissions, mask = make_batch(crf.num_tags, [6, 3, 0, 1], seed=9, pad_value=0.0)
    gold = random_gold(crf, emissions, mask, seed=9)
    full_gold = torch.where(mask, crf.viterbi(emissions, mask)[1], 0)
    results = {}
    for junk in (0.0, float("inf"), float("-inf"), float("nan")):
        for name, tags in (("partly known", gold), ("known", full_gold)):
            dirty = emissions.masked_fill(~mask.unsqueeze(2), junk).requires_grad_(True)
            crf.zero_grad()
            llh = crf(dirty, tags, mask, reduction="none")
            llh.sum().backward()
            grads = [dirty.grad] + [p.grad for p in crf.parameters()]
            assert all(torch.isfinite(g).all() for g in grads), (junk, name)
            assert torch.all(dirty.grad[~mask] == 0)
            if name in results:
                torch.testing.assert_close(llh, results[name][0])
                for got, want in zip(grads, results[name][1]):
                    torch.testing.assert_close(got, want)
            else:
                results[name] = (llh.detach(), [g.clone() for g in grads])
        log_z = crf.log_partition(emissions.masked_fill(~mask.unsqueeze(2), junk), mask)
        torch.testing.assert_close(log_z, crf.log_partition(emissions, mask))


# -- exact on long sequences ---------------------------------------------------------------


def test_span_probabilities_exact_on_long_float32_sequences():
    """At 5,000 tokens with confident float32 emissions log Z is ~5e4: a span probability built
    by subtracting it (the float64 reference's formula, in float32) is off by up to ~0.4. The
    per-token normalised kernel keeps float32 within 1e-4 of float64."""
    crf, tag_list = make_crf("BILUO", ["PER", "LOC", "ORG"], seed=0, dtype=torch.float32)
    emissions, mask = make_batch(crf.num_tags, [5000, 1000, 0, 251], seed=0, scale=8.0, dtype=torch.float32)
    with torch.no_grad():
        _, best = crf.viterbi(emissions, mask)
    queries = [
        (b, label, start, end + 1)
        for b, n in enumerate(mask.sum(1).tolist())
        for label, start, end in tags_to_entities([tag_list[t] for t in best[b, :n].tolist()])
    ]
    args = span_query_args(queries, tag_list, "BILUO")
    with torch.no_grad():
        got = crf.span_log_probs(emissions, mask, *args).double().exp()
        scores = crf.constrained_scores()
        global_level = kernels.forward_backward_reference(emissions, mask, *scores)
        subtracted = kernels.span_log_probs(emissions, mask, *scores, global_level, *args).double().exp()
        crf64 = crf.double()
        scores = crf64.constrained_scores()
        reference = kernels.forward_backward_reference(emissions.double(), mask, *scores)
        expected = kernels.span_log_probs(emissions.double(), mask, *scores, reference, *args).exp()
    assert len(queries) > 1000
    assert (got - expected).abs().max() < 1e-4
    assert (subtracted - expected).abs().max() > 1e-2  # what the test guards against


@pytest.mark.parametrize("scheme,labels", [("BILUO", [f"L{i}" for i in range(18)]), ("BIO", [f"L{i}" for i in range(18)]), (None, 20)])
def test_viterbi_numpy_equals_reference_with_many_tags(scheme, labels):
    """Many tags take the other code paths: grouped predecessors (constrained), torch's add (not)."""
    crf, _ = make_crf(scheme, labels, seed=8, dtype=torch.float32)
    emissions, mask = make_batch(crf.num_tags, [30, 0, 17, 1, 30], seed=8, scale=3.0, dtype=torch.float32)
    scores = [s.detach() for s in crf.constrained_scores()]
    expected, expected_tags = kernels.viterbi_reference(emissions, mask, *scores)
    best, tags = kernels.viterbi_numpy(emissions.numpy(), mask.sum(1).numpy(), *(s.numpy() for s in scores))
    torch.testing.assert_close(torch.from_numpy(best), expected)
    for b in range(len(mask)):
        n = int(mask[b].sum())
        assert path_score(crf, emissions[b], torch.from_numpy(tags[b, :n])) == pytest.approx(
            path_score(crf, emissions[b], expected_tags[b, :n]), rel=1e-6, abs=1e-6)
        if scheme is not None:
            assert tagging.is_valid([tagging.make_tags(labels, scheme)[t] for t in tags[b, :n]], scheme)


def test_one_intra_op_thread_restores_the_callers_setting():
    """Nested and concurrent scopes run on one thread and restore the caller's count at the end."""
    import threading

    from spacy_crf_ner.crf import one_intra_op_thread

    outside = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_intra_op_thread():
            assert torch.get_num_threads() == 1
            with one_intra_op_thread():
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        # Two threads whose scopes overlap, the first to enter leaving first.
        first_inside, second_inside, first_left = threading.Event(), threading.Event(), threading.Event()
        seen = []

        def first():
            with one_intra_op_thread():
                first_inside.set()
                second_inside.wait(5)
            first_left.set()

        def second():
            first_inside.wait(5)
            with one_intra_op_thread():
                second_inside.set()
                first_left.wait(5)
                seen.append(torch.get_num_threads())

        workers = [threading.Thread(target=first), threading.Thread(target=second)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(10)
        assert seen == [1]  # still limited after the first scope left
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(outside)


@pytest.mark.parametrize("shared", [True, False])
def test_viterbi_numpy_grouped_predecessors_shared_or_gathered(shared):
    """The grouped max reads a slice where the second group's tags share their predecessors
    (BILUO) and gathers them where they do not (random constraints); both equal the reference."""
    if shared:
        crf, _ = make_crf("BILUO", [f"L{i}" for i in range(6)], seed=10)
    else:
        gen = torch.Generator().manual_seed(10)
        allowed = torch.rand((25, 25), generator=gen) < 0.5
        allowed[:, :3] &= torch.rand((25, 3), generator=gen) < 0.1  # a few tags with few predecessors
        crf = ConstrainedCRF(25, torch.ones(25, dtype=torch.bool), allowed, torch.ones(25, dtype=torch.bool)).double()
        with torch.no_grad():
            crf.transitions.normal_(generator=gen)
    scores = [s.detach() for s in crf.constrained_scores()]
    allowed = (scores[1] > IMPOSSIBLE / 2).numpy()
    groups, _ = kernels.predecessor_groups(allowed.tobytes(), len(allowed))
    assert len(groups) == 2 and isinstance(groups[1][1], slice) == shared
    emissions, mask = make_batch(crf.num_tags, [30, 0, 17, 1, 30], seed=10, scale=3.0)
    expected, expected_tags = kernels.viterbi_reference(emissions, mask, *scores)
    best, tags = kernels.viterbi_numpy(emissions.numpy(), mask.sum(1).numpy(), *(s.numpy() for s in scores))
    torch.testing.assert_close(torch.from_numpy(best), expected)
    for b in range(len(mask)):
        n = int(mask[b].sum())
        path = torch.from_numpy(tags[b, :n])
        assert allowed[path[:-1], path[1:]].all()
        assert path_score(crf, emissions[b], path) == pytest.approx(path_score(crf, emissions[b], expected_tags[b, :n]), abs=1e-9)
