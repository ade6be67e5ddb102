"""The CRF's dynamic programs, as plain functions of ``(emissions, mask, start, transitions, end)``.

:class:`~spacy_crf_ner.crf.ConstrainedCRF` is the readable face; these are the kernels its methods
pick from. Each algorithm has a plain log-space *reference* (a ``logsumexp`` or ``max`` over a
``(B, T_prev, T_next)`` tensor per token, torch-struct's standard version) and, where it pays, a
fast kernel beside it that the tests hold to the reference and to brute force:

- log partition (the loss): :func:`log_partition_reference`; fast: :func:`log_partition_matmul`;
- forward-backward (marginals, span probabilities): :func:`forward_backward_reference`; fast:
  :func:`forward_backward_matmul` (differentiable) and :func:`forward_backward_numpy` (CPU, no
  gradients: :func:`forward_backward_scaled` in probability space, the sequences it cannot vouch
  for redone by :func:`forward_backward_log_numpy`); they give :class:`Posteriors`, which
  :func:`marginals` and :func:`span_log_probs` read (:func:`span_log_probs_numpy` on CPU without
  gradients);
- Viterbi: :func:`viterbi_reference` (tensor ops only, no host syncs: the one for accelerators);
  fast on CPU: :func:`viterbi_numpy`;
- k-best (list Viterbi): :func:`kbest_reference` only (rarely called).

Arguments, everywhere:

- ``emissions``: ``(B, L, T)`` float with ``L >= 1`` (callers handle ``L == 0``);
- ``mask``: ``(B, L)`` bool, ``True`` on real tokens, left-aligned (a sequence of length ``n``
  holds positions ``0..n-1``; ``n == 0`` is allowed);
- ``start (T,)``, ``transitions (T_prev, T_next)``, ``end (T,)``: the scores with the
  constraints applied (forbidden entries at :data:`IMPOSSIBLE`), in the emissions' dtype.

Padding: every kernel reads emissions at real tokens only, so whatever padding holds (even inf or
NaN) reaches neither a result nor a gradient.
"""
import functools
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import numpy
import torch

# A large finite number rather than -inf keeps every gradient finite (logsumexp over all -inf has
# a NaN gradient) while giving forbidden moves (numerically) zero probability.
IMPOSSIBLE = -10000.0

# The matrix-product kernels sum exp(score - best score) in float64: its exponent reaches e^-708,
# so a sum underflows only where every way into a tag trails the best by ~690 nats (float32:
# ~70, which confident emissions of scale 15-50 reach in every batch). Such entries are redone
# in log space, exactly.
MATMUL_DTYPE = torch.float64

# Where exp(scores - best) @ exp(transitions - shift) is at least this, the product lost nothing
# that matters: a sum of factors <= 1 that is >= tiny / eps holds its largest terms to full
# precision. A smaller one may have lost its terms to underflow.
SMALLEST_EXACT_SUM = torch.finfo(MATMUL_DTYPE).tiny / torch.finfo(MATMUL_DTYPE).eps

# The scaled forward-backward multiplies such sums by emission factors and divides by the token's
# largest product. With every sum at least this (1e-146, e^-336), a product that underflows errs by
# less than tiny / this, below eps times any sum the next token builds from it: all its numbers
# keep full precision. Sequences with a smaller sum are redone in log space.
SMALLEST_SCALED_SUM = SMALLEST_EXACT_SUM**0.5

# The NumPy forward-backward does about a dozen whole-array passes over its (L, T, B) arrays, padding
# included, at ~0.02 us per entry; one more call costs ~0.1 ms plus its per-token loop. A batch is
# split where that spares this many padded (token, tag) entries (~1 ms of passes): one long
# document among short ones (215 tokens among 64 sentences of at most 27: 8.8 ms in one call, 1.2 ms
# in two).
SPLIT_PADDING = 50_000

# On CPU, exp is many times slower on arguments below about -87 (float32 denormals); clamping the
# shifted terms of a log-space sum at -80 adds at most T * e^-80 to a sum of at least 1 (the
# largest term's own).
EXP_FLOOR = -80.0

# The NumPy Viterbi's table per token is T * T * B. From about this many tags its size outweighs
# the per-call cost: constrained tags are then grouped by their allowed predecessors (more calls,
# fewer candidates), and an unconstrained table is filled by torch's add, faster than NumPy's on
# big tables. Below it, one dense NumPy table wins.
MANY_TAGS = 16

# In the grouped Viterbi, tags with at most this many allowed predecessors (I-X and L-X have two)
# take their max over those alone; the others over their own (padded) predecessor lists.
FEW_PREDECESSORS = 4


class Posteriors(NamedTuple):
    """Forward and backward scores, normalised per token.

    For a sequence of length ``n``, real token ``i`` and tag ``t``, with ``N[j] = log_norms[b, j]``:

    - ``alpha[b, i, t] + N[0] + .. + N[i]`` is the forward score: the log of the summed exp-score
      of every path prefix over tokens ``0..i`` ending in ``t``;
    - ``beta[b, i, t] + N[i+1] + .. + N[n]`` is the backward score: the same for every suffix
      after token ``i`` that follows ``t`` (its transitions, emissions and the end score);
    - ``log_norms (B, L + 1)``: ``N[n]`` closes the sequence and the positions past it hold 0,
      so ``log_norms.sum(1)`` is log Z (0 for an empty sequence).

    So ``alpha[b, i] + beta[b, i]`` is the log of token ``i``'s tag marginals. A kernel may put
    any part of the score level in ``log_norms``: the reference puts all of it (log Z) at ``N[n]``,
    the matrix-product kernel one best score per token, which keeps every number a probability
    needs small. Padded positions of ``alpha`` and ``beta`` hold 0.
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    log_norms: torch.Tensor

    @property
    def log_z(self) -> torch.Tensor:
        """``(B,)`` log partition."""
        return self.log_norms.sum(dim=1)


def clean_padding(emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``emissions`` with 0 at padded positions (``masked_fill`` passes no gradient there)."""
    return emissions.masked_fill(~mask.unsqueeze(2), 0.0)


def logsumexp_previous(scores: torch.Tensor, transitions: torch.Tensor) -> torch.Tensor:
    """``(B, T_next)`` logsumexp over the previous tag of ``scores (B, T_prev) + transitions``.

    torch.logsumexp, with the shifted terms clamped at :data:`EXP_FLOOR` for speed.
    """
    terms = scores.unsqueeze(2) + transitions  # (B, T_prev, T_next)
    best = terms.detach().amax(dim=1, keepdim=True)
    return torch.log(torch.exp((terms - best).clamp(min=EXP_FLOOR)).sum(dim=1)) + best.squeeze(1)


# -- log partition -------------------------------------------------------------------------


def log_partition_reference(
    emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor, end: torch.Tensor
) -> torch.Tensor:
    """``(B,)`` log of the summed exp-score of every path: the forward algorithm in log space."""
    alpha = forward_scores_reference(emissions, mask, start, transitions)[:, -1]
    log_z = torch.logsumexp(alpha + end, dim=1)
    return torch.where(mask[:, 0], log_z, torch.zeros_like(log_z))


def forward_scores_reference(
    emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor
) -> torch.Tensor:
    """``(B, L, T)`` forward scores; padding carries the last real token's forward."""
    emissions = clean_padding(emissions, mask)
    alphas = [start + emissions[:, 0]]  # (B, T)
    for i in range(1, emissions.shape[1]):
        step = logsumexp_previous(alphas[-1], transitions) + emissions[:, i]  # (B, T_next)
        alphas.append(torch.where(mask[:, i].unsqueeze(1), step, alphas[-1]))
    return torch.stack(alphas, dim=1)


def log_partition_matmul(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    start: torch.Tensor,
    transitions: torch.Tensor,
    end: torch.Tensor,
    allowed_tags: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``(B,)`` :func:`log_partition_reference`, one matrix product per token.

    With ``allowed_tags (B, L, T)`` bool, only paths whose tags are all allowed are summed (the
    likelihood's numerator with partly known gold). Tags that no allowed path reaches are known
    to be impossible ahead of the sums, so they take :data:`IMPOSSIBLE` without the exact
    log-space step an underflowing sum gets.
    """
    dtype = emissions.dtype
    emissions = clean_padding(emissions, mask).to(MATMUL_DTYPE)
    start, transitions, end = (x.to(MATMUL_DTYPE) for x in (start, transitions, end))
    moves = MatmulMoves(transitions)
    possible = None
    if allowed_tags is not None:
        emissions = emissions.masked_fill(~allowed_tags, IMPOSSIBLE)
        allowed_moves = (transitions > IMPOSSIBLE / 2).to(MATMUL_DTYPE)
        possible = allowed_tags[:, 0] & (start > IMPOSSIBLE / 2)
    alpha = start + emissions[:, 0]  # (B, T)
    # unbind: one backward node for all tokens, not one per token
    emission_rows = (emissions + moves.shift).unbind(1)
    real_rows = mask.unsqueeze(2).unbind(1)
    for i in range(1, len(emission_rows)):
        reachable = None
        if possible is not None:
            reachable = (possible.to(MATMUL_DTYPE) @ allowed_moves > 0) & allowed_tags[:, i]
            possible = torch.where(real_rows[i], reachable, possible)
        step = moves.logsumexp_previous(alpha, reachable) + emission_rows[i]
        alpha = torch.where(real_rows[i], step, alpha)
    log_z = torch.logsumexp(alpha + end, dim=1)
    return torch.where(mask[:, 0], log_z, torch.zeros_like(log_z)).to(dtype)


class MatmulMoves:
    """One token's log-space step, ``logsumexp_previous(scores, transitions)``, as a matrix product.

    ``log(exp(scores - best) @ exp(transitions - shift)) + best + shift``, with ``best`` each
    row's best score and ``shift (T_next,)`` the best move into each tag: every factor is at most
    1, and it costs ``B * T`` exps where the log-space step costs ``B * T * T``. Sums below
    :data:`SMALLEST_EXACT_SUM` may have lost their terms to underflow: their rows get the exact
    log-space step (one host sync per token, cheap on CPU, where this kernel runs).
    """

    def __init__(self, transitions: torch.Tensor) -> None:
        self.transitions = transitions  # (T_prev, T_next)
        self.shift = transitions.detach().amax(dim=0)  # (T_next,)
        self.weights = torch.exp(transitions - self.shift)  # forbidden moves: exactly 0

    def logsumexp_previous(self, scores: torch.Tensor, possible: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T_next)``, without ``shift`` (callers add it to their emissions once).

        ``possible (B, T_next)`` bool, if given, marks the entries that may be non-zero: the
        others get :data:`IMPOSSIBLE` (relative to the row's best) and no exact step.
        """
        best = scores.detach().amax(dim=1, keepdim=True)  # (B, 1)
        total = torch.exp(scores - best) @ self.weights  # (B, T_next)
        underflow = total.detach() < SMALLEST_EXACT_SUM
        if possible is None:
            if not bool(underflow.any()):
                return torch.log(total) + best
        else:
            underflow &= possible
        # log() of a where(): no infinite gradient reaches the entries replaced below.
        fine = ~underflow if possible is None else ~underflow & possible
        result = torch.log(torch.where(fine, total, torch.ones_like(total))) + best
        if possible is not None:
            result = torch.where(possible, result, best + IMPOSSIBLE - self.shift)
        if bool(underflow.any()):
            rows = underflow.any(dim=1).nonzero().squeeze(1)
            exact = logsumexp_previous(scores[rows], self.transitions) - self.shift  # (R, T_next)
            exact = torch.zeros_like(result).index_copy(0, rows, exact)
            result = torch.where(underflow, exact, result)
        return result


# -- forward-backward ----------------------------------------------------------------------


def forward_backward_reference(
    emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor, end: torch.Tensor
) -> Posteriors:
    """:class:`Posteriors` from log-space forward and backward scores, with log Z as the one
    normaliser. In float32 on long sequences the scores reach ~1e5 and a probability built
    from them loses its precision: this is the reference for float64."""
    batch, length, num_tags = emissions.shape
    alpha = forward_scores_reference(emissions, mask, start, transitions)
    emissions = clean_padding(emissions, mask)
    end_row = end.expand(batch, num_tags)
    betas = [end_row]
    for i in range(length - 2, -1, -1):
        step = logsumexp_previous(emissions[:, i + 1] + betas[-1], transitions.t())  # (B, T_prev)
        # Left alignment: token i is its sequence's last real token iff token i+1 is padding.
        betas.append(torch.where(mask[:, i + 1].unsqueeze(1), step, end_row))
    beta = torch.stack(betas[::-1], dim=1)
    log_z = torch.logsumexp(alpha[:, -1] + end, dim=1)  # padding carried the last real alpha
    log_z = torch.where(mask[:, 0], log_z, torch.zeros_like(log_z))
    is_real = mask.unsqueeze(2)
    lengths = mask.sum(dim=1, keepdim=True)
    log_norms = torch.zeros((batch, length + 1), dtype=emissions.dtype, device=emissions.device)
    log_norms = log_norms.scatter(1, lengths, log_z.unsqueeze(1))
    return Posteriors(
        alpha.masked_fill(~is_real, 0.0),
        (beta - log_z.view(batch, 1, 1)).masked_fill(~is_real, 0.0),
        log_norms,
    )


def forward_backward_matmul(
    emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor, end: torch.Tensor
) -> Posteriors:
    """:class:`Posteriors` normalised at every token (each token's best forward score goes to
    ``log_norms``), with the steps of :class:`MatmulMoves`. Every number a probability is built
    from stays small, so span and path probabilities keep their precision on any length."""
    batch, length, num_tags = emissions.shape
    dtype = emissions.dtype
    emissions = clean_padding(emissions, mask).to(MATMUL_DTYPE)
    start, transitions, end = (x.to(MATMUL_DTYPE) for x in (start, transitions, end))
    into, out_of = MatmulMoves(transitions), MatmulMoves(transitions.t())
    zeros = emissions.new_zeros(batch)

    first = start + emissions[:, 0]
    norm = first.detach().amax(dim=1)
    # The normalisers are constants to autograd: any value gives the same identities, so the
    # gradients are exact without running back through the max.
    alphas, norms = [first - norm.unsqueeze(1)], [torch.where(mask[:, 0], norm, zeros)]
    for i in range(1, length):
        step = into.logsumexp_previous(alphas[-1]) + into.shift + emissions[:, i]  # (B, T_next)
        norm = torch.where(mask[:, i], step.detach().amax(dim=1), zeros)
        alphas.append(torch.where(mask[:, i].unsqueeze(1), step - norm.unsqueeze(1), alphas[-1]))
        norms.append(norm)
    closing = torch.logsumexp(alphas[-1] + end, dim=1)  # padding carried the last real alpha
    closing = torch.where(mask[:, 0], closing, zeros)

    last_row = end - closing.unsqueeze(1)  # (B, T)
    betas = [last_row]
    for i in range(length - 2, -1, -1):
        step = out_of.logsumexp_previous(emissions[:, i + 1] + betas[-1]) + out_of.shift - norms[i + 1].unsqueeze(1)
        betas.append(torch.where(mask[:, i + 1].unsqueeze(1), step, last_row))

    is_real = mask.unsqueeze(2)
    lengths = mask.sum(dim=1, keepdim=True)
    log_norms = torch.cat([torch.stack(norms, dim=1), zeros.unsqueeze(1)], dim=1)  # (B, L + 1)
    log_norms = log_norms.scatter(1, lengths, closing.unsqueeze(1))
    return Posteriors(
        torch.stack(alphas, dim=1).masked_fill(~is_real, 0.0).to(dtype),
        torch.stack(betas[::-1], dim=1).masked_fill(~is_real, 0.0).to(dtype),
        log_norms.to(dtype),
    )


def forward_backward_numpy(
    emissions: numpy.ndarray, lengths: numpy.ndarray, start: numpy.ndarray, transitions: numpy.ndarray, end: numpy.ndarray
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """:func:`forward_backward_matmul` on float64 arrays, without gradients: ``emissions (B, L, T)``
    of left-aligned sequences of ``lengths (B,)``; returns ``(alpha, beta, log_norms)`` as in
    :class:`Posteriors` (the same numbers as the matrix-product kernel).

    :func:`forward_backward_scaled` runs every sequence, in groups of similar length
    (:func:`length_groups`); the few it cannot vouch for (a sum that fell below
    :data:`SMALLEST_SCALED_SUM`) are redone by :func:`forward_backward_log_numpy`."""
    groups = length_groups(lengths, emissions.shape[2])
    if len(groups) == 1:
        alpha, beta, log_norms, exact = forward_backward_scaled(emissions, lengths, start, transitions, end)
    else:
        batch, length, num_tags = emissions.shape
        alpha, beta = numpy.zeros((batch, length, num_tags)), numpy.zeros((batch, length, num_tags))
        log_norms, exact = numpy.zeros((batch, length + 1)), numpy.empty(batch, dtype=bool)
        for rows in groups:
            width = max(int(lengths[rows].max()), 1)
            found = forward_backward_scaled(emissions[rows, :width], lengths[rows], start, transitions, end)
            alpha[rows, :width], beta[rows, :width], log_norms[rows, : width + 1], exact[rows] = found
    redo = numpy.flatnonzero(~exact)
    if len(redo):
        length = max(int(lengths[redo].max()), 1)
        redone = forward_backward_log_numpy(emissions[redo, :length], lengths[redo], start, transitions, end)
        alpha[redo, :length], beta[redo, :length] = redone[0], redone[1]
        log_norms[redo] = 0.0
        log_norms[redo, : length + 1] = redone[2]
    return alpha, beta, log_norms


def length_groups(lengths: numpy.ndarray, num_tags: int) -> List[numpy.ndarray]:
    """The sequences of a batch (``lengths (B,)``) in groups to run separately, longest first,
    each an array of batch indices: a batch is split where that saves at least
    :data:`SPLIT_PADDING` padded ``(token, tag)`` entries. Usually one group; a document far
    longer than the rest of its batch gets its own."""
    order = numpy.argsort(-lengths, kind="stable")
    longest_first = lengths[order]
    groups, first = [], 0
    while first < len(order):
        rest = longest_first[first:]
        # Ending the group before sequence k pads the len(rest) - k sequences from k on to their
        # own longest instead of rest[0].
        saved = (rest[0] - rest[1:]) * numpy.arange(len(rest) - 1, 0, -1) * num_tags
        if not len(saved) or saved.max() < SPLIT_PADDING:
            groups.append(order[first:])
            break
        size = int(saved.argmax()) + 1
        groups.append(order[first : first + size])
        first += size
    return groups


def forward_backward_scaled(
    emissions: numpy.ndarray, lengths: numpy.ndarray, start: numpy.ndarray, transitions: numpy.ndarray, end: numpy.ndarray
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Scaled forward-backward in probability space: ``(alpha, beta, log_norms, exact (B,) bool)``,
    the first three as :func:`forward_backward_numpy` returns them, right where ``exact`` holds.

    Both passes run in one loop: step ``i`` takes the forward pass to token ``i`` and the backward
    pass to token ``L - 1 - i``, in four NumPy calls on ``(2, T, B)`` arrays, each pass the same
    way: its probabilities (each sequence's largest 1) times the moves ``exp(transitions - shift)``
    (transposed for the forward pass), times the token's emission factors ``exp(emission + shift -
    best)`` (all tokens' computed in one call), divided by their largest entry. The backward
    pass starts again from the end scores at each sequence's last token. Tags run down the rows
    and sequences along the columns, so the largest entry is an element-wise max over T rows
    (a max along each of B short rows costs more than the matrix product). The logs (alpha,
    beta, the normalisers) are taken after the loop, from the sums and the emission scores, so a
    factor that underflows (an IMPOSSIBLE tag) still gets its exact log.

    ``exact[b]`` is False where a sum or normaliser of sequence ``b`` that some allowed path
    feeds fell below :data:`SMALLEST_SCALED_SUM`: its numbers may then have lost precision. Sums
    that no allowed path feeds (after tags blocked by IMPOSSIBLE emissions) get the log
    IMPOSSIBLE. Padded positions hold 0 (log_norms: past ``n``). alpha and beta are ``(B, L, T)``
    views of ``(L, T, B)`` arrays.
    """
    batch, length, num_tags = emissions.shape
    is_real = numpy.arange(length)[:, None] < lengths  # (L, B)
    has_next = is_real[1:]  # (L - 1, B): token i + 1 is real
    rows = numpy.arange(batch)
    last = numpy.maximum(lengths - 1, 0)
    shift = transitions.max(axis=0)  # (T_next,): the best move into each tag
    weights = numpy.exp(transitions - shift)  # (T_prev, T_next), each column's largest 1
    moves = numpy.stack([weights.T, weights])  # (2, T, T): forward sums weights.T @ p, backward weights @ p
    # (L, T, B) emission scores (the start scores at token 0) with the shift folded in, padding 0
    scores = numpy.empty((length, num_tags, batch))
    numpy.add(emissions.transpose(1, 2, 0), shift[:, None], out=scores)
    scores[0] = (emissions[:, 0] + start).T
    scores.transpose(0, 2, 1)[~is_real] = 0.0
    best = scores.max(axis=1, keepdims=True)  # (L, 1, B)
    scores -= best  # the log emission factors, <= 0
    factors = numpy.exp(scores)
    step_factors = numpy.stack([factors, factors[::-1]], axis=1)  # (L, 2, T, B): step i's, per pass

    # (L, 2, T, B): at step i, the forward sums (probabilities @ moves, before the factors) of
    # token i and the backward sums of token L - 1 - i; (L, 2, 1, B) the largest products.
    sums = numpy.ones((length, 2, num_tags, batch))
    norms = numpy.empty((length, 2, 1, batch))
    prob = numpy.ones((2, num_tags, batch))  # work: each pass's probabilities
    # The backward pass restarts at each sequence's last token from the end scores.
    end_factors = numpy.exp(end - end.max())
    restart = end_factors[:, None] * factors[last, :, rows].T  # (T, B)
    restart_norm = restart.max(axis=0)  # (B,)
    restarts = backward_restarts(lengths, length)
    sum_rows, factor_rows, norm_rows = list(sums), list(step_factors), list(norms)  # views made once
    maximum, multiply, divide, matmul = numpy.maximum.reduce, numpy.multiply, numpy.divide, numpy.matmul
    with numpy.errstate(under="ignore", divide="ignore", invalid="ignore"):
        restart /= restart_norm
        multiply(sum_rows[0], factor_rows[0], prob)
        maximum(prob, 1, None, norm_rows[0], True)
        divide(prob, norm_rows[0], prob)
        for i in range(1, length):
            if i in restarts:
                prob[1][:, restarts[i]] = restart[:, restarts[i]]
            matmul(moves, prob, sum_rows[i])
            multiply(sum_rows[i], factor_rows[i], prob)
            maximum(prob, 1, None, norm_rows[i], True)
            divide(prob, norm_rows[i], prob)

        # Token order: forward sums and normalisers of tokens 0..L-1; backward sums and
        # normalisers of tokens 0..L-2 (the backward pass never steps into the last token).
        sums_in, log_norm = sums[:, 0], numpy.log(norms[:, 0])  # (L, T, B), (L, 1, B)
        sums_out, log_norm_out = sums[:0:-1, 1], numpy.log(norms[:0:-1, 1, 0])  # (L - 1, T, B), (L - 1, B)

        # Sums are of factors <= 1 whose largest is 1. One below SMALLEST_SCALED_SUM is either
        # fed by no allowed path (an IMPOSSIBLE score before it: its log is IMPOSSIBLE, as
        # MatmulMoves gives such tags) or one that may have lost precision: its sequence is
        # redone. So is one whose backward normaliser (a largest product before any sum is
        # checked) is that small. One pass over all sums first: usually none is, padding included.
        exact = numpy.ones(batch, dtype=bool)
        exact &= ~((lengths > 1) & ~(restart_norm >= SMALLEST_SCALED_SUM))
        exact &= ~(has_next[1:] & ~(norms[-2:0:-1, 1, 0] >= SMALLEST_SCALED_SUM)).any(axis=0)
        dead_in = dead_out = None
        smallest = (sums_in[1:].min(initial=1.0), sums_out.min(initial=1.0))  # NaN if any is
        if not all(value >= SMALLEST_SCALED_SUM for value in smallest):
            not_impossible = [score > IMPOSSIBLE / 2 for score in (scores, transitions, end)]
            fed_in, fed_out = fed_by_allowed_paths(*not_impossible, lengths)
            low_in, low_out = ~(sums_in[1:] >= SMALLEST_SCALED_SUM), ~(sums_out >= SMALLEST_SCALED_SUM)  # NaN too
            exact &= ~(((low_in & fed_in) | (low_out & fed_out)).any(axis=1) & has_next).any(axis=0)
            dead_in, dead_out = low_in & ~fed_in, low_out & ~fed_out

        alpha = numpy.log(sums_in)  # (L, T, B)
        if dead_in is not None:
            alpha[1:][dead_in] = IMPOSSIBLE
        alpha += scores
        alpha -= log_norm
        closing = numpy.logaddexp.reduce(alpha[last, :, rows] + end, axis=1)  # (B,)
        closing = numpy.where(lengths > 0, closing, 0.0)
        log_norms = numpy.zeros((batch, length + 1))
        log_norms[:, :length] = numpy.where(is_real, (log_norm + best)[:, 0], 0.0).T
        log_norms[rows, lengths] = closing

        # beta at token i < n - 1 is log(backward sum) + level[i + 1]: the backward pass's log
        # scale at token i + 1 less the normalisers N[i + 1..n]. At the last token n - 1 it is
        # end.max() + log(restart norm) - N[n-1] - N[n]; going back each token adds its backward
        # normaliser and takes off its forward one (small numbers: no large level cancels).
        steps = numpy.where(has_next, log_norm_out - log_norm[:-1, 0], 0.0)  # (L - 1, B)
        level = numpy.empty((length, batch))
        level[:] = end.max() + numpy.log(restart_norm) - log_norm[last, 0, rows] - closing
        level[1:-1] += numpy.cumsum(steps[:0:-1], axis=0)[::-1]
        beta = numpy.empty((length, num_tags, batch))
        numpy.log(sums_out, out=beta[:-1])
        if dead_out is not None:
            beta[:-1][dead_out] = IMPOSSIBLE
        beta[:-1] += level[1:, None, :]
        beta[last, :, rows] = end - closing[:, None]
    alpha.transpose(0, 2, 1)[~is_real] = 0.0
    beta.transpose(0, 2, 1)[~is_real] = 0.0
    return alpha.transpose(2, 0, 1), beta.transpose(2, 0, 1), log_norms, exact


def backward_restarts(lengths: numpy.ndarray, length: int) -> Dict[int, numpy.ndarray]:
    """``{step: batch indices}``: the sequences (of ``lengths (B,)``, padded to ``length``) whose
    backward pass starts at that step of :func:`forward_backward_scaled`'s loop, the step into
    their second-to-last token (``L + 1 - n`` for length ``n >= 2``)."""
    return {length + 1 - n: numpy.flatnonzero(lengths == n) for n in set(lengths.tolist()) - {0, 1}}


def fed_by_allowed_paths(
    possible: numpy.ndarray, allowed: numpy.ndarray, can_end: numpy.ndarray, lengths: numpy.ndarray
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Which sums of :func:`forward_backward_scaled` some allowed path feeds: ``(fed_in, fed_out)``,
    ``(L - 1, T, B)`` bool each, for the forward sums of tokens ``1..L-1`` and the backward sums of
    tokens ``0..L-2``, from ``possible (L, T, B)`` (the tags whose emission is not IMPOSSIBLE),
    ``allowed (T_prev, T_next)`` moves and the tags that ``can_end (T,)`` a sequence. Both
    directions run in one loop, stacked as the sums are."""
    length, num_tags, batch = possible.shape
    moves = numpy.stack([allowed.T, allowed])  # (2, T, T)
    step_possible = numpy.stack([possible, possible[::-1]], axis=1)  # (L, 2, T, B)
    fed = numpy.zeros((length, 2, num_tags, batch), dtype=bool)
    reach = numpy.zeros((2, num_tags, batch), dtype=bool)  # work: the tags a path reaches, per direction
    reach[0] = possible[0]
    restart = can_end[:, None] & possible[numpy.maximum(lengths - 1, 0), :, numpy.arange(batch)].T  # (T, B)
    restarts = backward_restarts(lengths, length)
    for i in range(1, length):
        if i in restarts:
            reach[1][:, restarts[i]] = restart[:, restarts[i]]
        numpy.matmul(moves, reach, fed[i])
        numpy.logical_and(fed[i], step_possible[i], reach)
    return fed[1:, 0], fed[:0:-1, 1]


def forward_backward_log_numpy(
    emissions: numpy.ndarray, lengths: numpy.ndarray, start: numpy.ndarray, transitions: numpy.ndarray, end: numpy.ndarray
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """:func:`forward_backward_numpy` with the steps of :class:`MatmulMoves` (log-space scores,
    the exact log-space step where a sum underflows): exact on any input, and about five times
    the calls of :func:`forward_backward_scaled` per token."""
    batch, length, num_tags = emissions.shape
    is_real = numpy.arange(length) < lengths[:, None]  # (B, L)
    emissions = numpy.where(is_real[:, :, None], emissions, 0.0)
    with numpy.errstate(divide="ignore", under="ignore"):
        into, out_of = _NumpyMoves(transitions), _NumpyMoves(transitions.T)
        alpha = numpy.zeros((batch, length, num_tags))
        log_norms = numpy.zeros((batch, length + 1))
        step = start + emissions[:, 0]
        for i in range(length):
            if i > 0:
                step = into.logsumexp_previous(alpha[:, i - 1]) + emissions[:, i]
            norm = step.max(axis=1)
            real = is_real[:, i]
            log_norms[:, i] = numpy.where(real, norm, 0.0)
            # Padding carries the last real alpha forward.
            alpha[:, i] = numpy.where(real[:, None], step - norm[:, None], alpha[:, i - 1] if i else 0.0)
        closing = numpy.logaddexp.reduce(alpha[:, -1] + end, axis=1)
        closing = numpy.where(lengths > 0, closing, 0.0)
        log_norms[numpy.arange(batch), lengths] = closing

        beta = numpy.empty_like(alpha)
        last_row = end - closing[:, None]
        beta[:, -1] = last_row
        for i in range(length - 2, -1, -1):
            step = out_of.logsumexp_previous(emissions[:, i + 1] + beta[:, i + 1]) - log_norms[:, i + 1, None]
            beta[:, i] = numpy.where(is_real[:, i + 1, None], step, last_row)
    padding = ~is_real[:, :, None]
    return numpy.where(padding, 0.0, alpha), numpy.where(padding, 0.0, beta), log_norms


class _NumpyMoves:
    """:class:`MatmulMoves` on float64 arrays (its ``logsumexp_previous`` includes the shift)."""

    def __init__(self, transitions: numpy.ndarray) -> None:
        self.transitions = transitions  # (T_prev, T_next)
        self.shift = transitions.max(axis=0)
        self.weights = numpy.exp(transitions - self.shift)

    def logsumexp_previous(self, scores: numpy.ndarray) -> numpy.ndarray:
        best = scores.max(axis=1, keepdims=True)
        total = numpy.exp(scores - best) @ self.weights  # (B, T_next)
        result = numpy.log(total) + best + self.shift
        underflow = total < SMALLEST_EXACT_SUM
        if underflow.any():
            rows = underflow.any(axis=1)
            terms = scores[rows, :, None] + self.transitions  # (R, T_prev, T_next)
            exact = numpy.logaddexp.reduce(terms, axis=1)
            result[rows] = numpy.where(underflow[rows], exact, result[rows])
        return result


def marginals(posteriors: Posteriors, mask: torch.Tensor) -> torch.Tensor:
    """``(B, L, T)`` tag marginals: each real token's row sums to 1, padded rows are 0."""
    # A softmax over tags rather than exp(alpha + beta): the same numbers, and each row sums to
    # 1 to rounding.
    return torch.softmax(posteriors.alpha + posteriors.beta, dim=2) * mask.unsqueeze(2).to(posteriors.alpha.dtype)


# -- span probabilities --------------------------------------------------------------------


def span_log_probs(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    start: torch.Tensor,
    transitions: torch.Tensor,
    end: torch.Tensor,
    posteriors: Posteriors,
    batch_index: torch.Tensor,
    starts: torch.Tensor,
    ends: torch.Tensor,
    span_tags: torch.Tensor,
    forbidden_next: Optional[torch.Tensor],
) -> torch.Tensor:
    """``(N,)`` log-probability of each queried tag segment (see ``ConstrainedCRF.span_log_probs``
    for the queries; they are checked there).

    ``log P = [into the span] + [its emissions and transitions] + [out of it] - N[start..end]``:
    the forward score before the span, the backward score after it and the normalisers of the
    tokens in between (``N`` = ``posteriors.log_norms``). Each token's scores and normaliser are
    summed together, so with per-token normalisers no large number cancels.
    """
    alpha, beta, log_norms = posteriors
    emissions = clean_padding(emissions, mask)
    length = emissions.shape[1]
    width = span_tags.shape[1]
    span_length = ends - starts
    seq_length = mask.sum(dim=1)[batch_index]
    offsets = torch.arange(width, device=emissions.device)

    inside = offsets < span_length.unsqueeze(1)  # (N, M)
    path = torch.where(inside, span_tags, torch.zeros_like(span_tags))
    positions = (starts.unsqueeze(1) + offsets).clamp(max=length - 1)  # (N, M)
    rows = batch_index.unsqueeze(1).expand(-1, width)
    emitted = emissions[rows, positions, path]  # (N, M)
    moved = torch.cat([emitted.new_zeros((len(path), 1)), transitions[path[:, :-1], path[:, 1:]]], dim=1)
    per_token = (emitted + moved - log_norms[rows, positions]).masked_fill(~inside, 0.0)
    first = path[:, 0]
    last = path.gather(1, (span_length - 1).unsqueeze(1)).squeeze(1)

    # Into the span: every prefix ending at token start-1, or the start score.
    before = alpha[batch_index, (starts - 1).clamp(min=0)]  # (N, T_prev)
    enter = torch.logsumexp(before + transitions[:, first].t(), dim=1)
    enter = torch.where(starts == 0, start[first], enter)

    # Out of it: every suffix from token `end` on whose first tag is not forbidden, or the end
    # score. Forbidding by emission mirrors the allowed-tags numerator of the likelihood.
    after = ends.clamp(max=length - 1)
    next_emissions = emissions[batch_index, after]  # (N, T_next)
    if forbidden_next is not None:
        next_emissions = next_emissions.masked_fill(forbidden_next.bool(), IMPOSSIBLE)
    leave = torch.logsumexp(transitions[last] + next_emissions + beta[batch_index, after], dim=1)
    leave = torch.where(ends == seq_length, end[last], leave)
    return enter + per_token.sum(dim=1) + leave - log_norms[batch_index, ends]



def span_log_probs_numpy(
    emissions: numpy.ndarray,
    lengths: numpy.ndarray,
    start: numpy.ndarray,
    transitions: numpy.ndarray,
    end: numpy.ndarray,
    posteriors: Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray],
    batch_index: numpy.ndarray,
    starts: numpy.ndarray,
    ends: numpy.ndarray,
    span_tags: numpy.ndarray,
    forbidden_next: Optional[numpy.ndarray],
) -> numpy.ndarray:
    """:func:`span_log_probs` on arrays, without gradients: ``emissions (B, L, T)`` of
    left-aligned sequences of ``lengths (B,)``, ``posteriors`` the ``(alpha, beta, log_norms)``
    arrays of :class:`Posteriors`, the queries as there (``(N,)`` integer arrays, ``span_tags
    (N, M)``, ``forbidden_next (N, T)`` bool or None). Returns ``(N,)`` in the emissions' dtype.

    The same sums in the same order as the torch kernel, in a few dozen NumPy calls for the whole
    batch: on CPU, torch's per-call cost was most of the time. Padding is never read into a
    result: the emissions gathered there are replaced before any arithmetic.
    """
    alpha, beta, log_norms = posteriors
    length = emissions.shape[1]
    width = span_tags.shape[1]
    span_length = ends - starts  # (N,)
    seq_length = lengths[batch_index]
    offsets = numpy.arange(width)

    inside = offsets < span_length[:, None]  # (N, M): real tokens of the span
    path = numpy.where(inside, span_tags, 0)
    positions = numpy.minimum(starts[:, None] + offsets, length - 1)  # (N, M)
    rows = batch_index[:, None]
    emitted = numpy.where(inside, emissions[rows, positions, path], 0.0)
    moved = numpy.zeros_like(emitted)
    moved[:, 1:] = transitions[path[:, :-1], path[:, 1:]]
    per_token = numpy.where(inside, emitted + moved - log_norms[rows, positions], 0.0)
    first = path[:, 0]
    last = path[numpy.arange(len(path)), span_length - 1]

    # Into the span: every prefix ending at token start-1, or the start score.
    before = alpha[batch_index, numpy.maximum(starts - 1, 0)]  # (N, T_prev)
    enter = numpy.logaddexp.reduce(before + transitions[:, first].T, axis=1)
    enter = numpy.where(starts == 0, start[first], enter)

    # Out of it: every suffix from token `end` on whose first tag is not forbidden, or the end score.
    ends_inside = ends < seq_length
    after = numpy.minimum(ends, length - 1)
    next_emissions = numpy.where(ends_inside[:, None], emissions[batch_index, after], 0.0)  # (N, T_next)
    if forbidden_next is not None:
        next_emissions = numpy.where(forbidden_next, IMPOSSIBLE, next_emissions)
    leave = numpy.logaddexp.reduce(transitions[last] + next_emissions + beta[batch_index, after], axis=1)
    leave = numpy.where(ends_inside, leave, end[last])
    return enter + per_token.sum(axis=1) + leave - log_norms[batch_index, ends]

# -- scores of given paths -----------------------------------------------------------------


def path_scores(
    emissions: torch.Tensor,
    tags: torch.Tensor,
    mask: torch.Tensor,
    start: torch.Tensor,
    transitions: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor:
    """``(B,)`` score of the paths ``tags (B, L)`` (any tag index where ``mask`` is False; 0 for
    an empty sequence). A transition links consecutive real tokens; padding is never read."""
    positions = torch.arange(tags.shape[1], device=tags.device)
    last_real = torch.where(mask, positions, 0).cummax(dim=1).values  # (B, L)
    tags = tags.gather(1, last_real)  # padding repeats the last real tag
    emitted = torch.where(mask, clean_padding(emissions, mask).gather(2, tags.unsqueeze(2)).squeeze(2), 0.0)
    moved = torch.where(mask[:, 1:], transitions[tags[:, :-1], tags[:, 1:]], 0.0)
    score = start[tags[:, 0]] + emitted.sum(1) + moved.sum(1) + end[tags[:, -1]]
    return torch.where(mask[:, 0], score, torch.zeros_like(score))


# -- Viterbi -------------------------------------------------------------------------------


def viterbi_reference(
    emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor, end: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(scores (B,), tags (B, L))``: the best path per sequence, tags -1 past its length.

    Tensor operations only, no host syncs (the traceback gathers backpointers on the device).
    """
    batch, length, num_tags = emissions.shape
    emissions = clean_padding(emissions, mask)
    same_tag = torch.arange(num_tags, device=emissions.device).expand(batch, num_tags)
    score = start + emissions[:, 0]  # (B, T)
    backpointers = []
    for i in range(1, length):
        best, previous = (score.unsqueeze(2) + transitions).max(dim=1)  # (B, T_next)
        is_real = mask[:, i].unsqueeze(1)
        score = torch.where(is_real, best + emissions[:, i], score)
        # Padding points back to the same tag, so the traceback passes through unchanged.
        backpointers.append(torch.where(is_real, previous, same_tag))
    best_score, last = (score + end).max(dim=1)
    path = [last]
    for previous in reversed(backpointers):
        last = previous.gather(1, last.unsqueeze(1)).squeeze(1)
        path.append(last)
    tags = torch.stack(path[::-1], dim=1).masked_fill(~mask, -1)
    return torch.where(mask[:, 0], best_score, torch.zeros_like(best_score)), tags


def viterbi_numpy(
    emissions: numpy.ndarray,
    lengths: numpy.ndarray,
    start: numpy.ndarray,
    transitions: numpy.ndarray,
    end: numpy.ndarray,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """:func:`viterbi_reference` on arrays: ``emissions (B, L, T)`` of left-aligned sequences of
    ``lengths (B,)``; returns ``(scores (B,), tags (B, L) int64)``.

    The forward pass keeps only the best scores: per token, a max over a ``(T_prev, T_next, B)``
    table, restricted to the allowed moves (see :func:`predecessor_groups`). The traceback
    recomputes one argmax per token, for the chosen tags only. On such small arrays the per-call
    cost is most of the time, and NumPy's is a fraction of torch's.
    """
    # Work with the tags reordered group by group, so each group's maxima fill a slice.
    allowed = (transitions > IMPOSSIBLE / 2) | (len(transitions) < MANY_TAGS)  # few tags: dense
    groups, order = predecessor_groups(allowed.tobytes(), len(allowed))
    start, end, transitions = start[order], end[order], transitions[order][:, order]
    batch, length, num_tags = emissions.shape
    # (L, T, B): transposed, then reordered a contiguous row of B at a time (a gather over the
    # transposed view would read one strided number at a time)
    emission_rows = numpy.ascontiguousarray(emissions.transpose(1, 2, 0)).take(order, axis=1)
    scores = numpy.empty_like(emission_rows)  # (L, T, B): the best score of a path ending in each tag
    scores[0] = start[:, None] + emission_rows[0]
    score_rows, step_rows = list(scores), list(emission_rows)  # views made once, not per use
    maximum = numpy.maximum.reduce
    with numpy.errstate(invalid="ignore", over="ignore"):  # padding may hold anything
        if len(groups) == 1 and groups[0][1] is None:  # every move allowed: one dense table
            moves = numpy.repeat(transitions[:, :, None], batch, axis=2)  # (T_prev, T_next, B)
            table = numpy.empty_like(moves)
            if num_tags >= MANY_TAGS:
                add, into, out = torch.add, torch.from_numpy(moves), torch.from_numpy(table)
                previous = torch.from_numpy(scores).unsqueeze(2).unbind(0)  # (T_prev, 1, B) each
            else:
                add, into, out, previous = numpy.add, moves, table, list(scores[:, :, None, :])
            for i in range(1, length):
                add(previous[i - 1], into, out=out)
                row = score_rows[i]
                maximum(table, 0, None, row)  # positional arguments: parsed faster
                row += step_rows[i]
        else:
            # Per group: its moves (K, J, B), a work table, and for shared predecessors their
            # scores per token as (K, 1, B) views (else gathered). Torch adds those: its
            # broadcast over J is faster than NumPy's on these tables (as in the dense case).
            tables = []
            for tag_slice, predecessors in groups:
                if isinstance(predecessors, slice):
                    moves = transitions[predecessors, tag_slice]
                    shared_rows = torch.from_numpy(scores)[:, predecessors].unsqueeze(2).unbind(0)
                else:
                    moves = transitions[predecessors, numpy.arange(tag_slice.start, tag_slice.stop)]
                    shared_rows = None
                moves = numpy.repeat(moves[:, :, None], batch, 2)
                table = numpy.empty_like(moves)
                tables.append((tag_slice, predecessors, shared_rows, moves, torch.from_numpy(moves), table, torch.from_numpy(table)))
            for i in range(1, length):
                before, row = score_rows[i - 1], score_rows[i]
                for tag_slice, predecessors, shared_rows, moves, torch_moves, table, torch_table in tables:
                    if shared_rows is None:
                        before.take(predecessors, 0, table)  # (K, J, B)
                        table += moves
                    else:
                        torch.add(shared_rows[i - 1], torch_moves, out=torch_table)
                    maximum(table, 0, None, row[tag_slice])
                row += step_rows[i]
    rows = numpy.arange(batch)
    last = numpy.maximum(lengths - 1, 0)
    final = scores[last, :, rows] + end  # (B, T)
    tag = final.argmax(1)
    best = numpy.where(lengths > 0, final[rows, tag], 0).astype(scores.dtype)

    work = numpy.empty((num_tags, batch), scores.dtype)  # (T_prev, B)
    path = numpy.zeros((length, batch), numpy.intp)
    path[last, rows] = tag
    ending_at = {}
    for row, n in enumerate(last.tolist()):
        ending_at.setdefault(n, []).append(row)
    path_rows = list(path)
    with numpy.errstate(invalid="ignore", over="ignore"):
        for i in range(length - 1, 0, -1):
            # Past a sequence's end this traces garbage, until its last token restarts it.
            numpy.add(score_rows[i - 1], transitions.take(path_rows[i], 1), work)
            work.argmax(0, path_rows[i - 1])
            if i - 1 in ending_at:
                ending = ending_at[i - 1]
                path[i - 1, ending] = tag[ending]
    tags = numpy.where(numpy.arange(length) < lengths[:, None], order[path.T], -1)
    return best, tags.astype(numpy.int64, copy=False)


@functools.lru_cache(maxsize=64)  # a CRF's constraints never change: group them once
def predecessor_groups(
    allowed_bytes: bytes, num_tags: int
) -> Tuple[List[Tuple[slice, Union[None, slice, numpy.ndarray]]], numpy.ndarray]:
    """Tags grouped for the Viterbi max by their allowed predecessors (``allowed (T_prev, T_next)``
    bool, passed as its bytes, for the cache).

    Returns ``(groups, order)``: ``order (T,)`` lists the tags group by group; each group is
    ``(slice of order, predecessors (K, J))``, the predecessors of its ``J`` tags (indices into
    ``order``), padded by repeating one (a repeat does not change a max). Tags with at most
    :data:`FEW_PREDECESSORS` allowed predecessors form one group, the others another: BILUO and
    BIO over 18 labels take 37 * 37 + 2 * 36 candidates per token instead of 73 * 73. With every
    move allowed there is one group and ``predecessors`` is None (a dense table). A tag that no
    move reaches keeps every predecessor, as :func:`viterbi_reference` does.

    Where the second group's tags all have the same predecessors (BILUO: O, B-X and U-X all
    follow O, L-Y and U-Y), ``order`` puts those in one run (the end of the first group and the
    start of the second) and ``predecessors`` is its slice: the max then reads a view of the
    scores instead of gathering them.
    """
    allowed = numpy.frombuffer(allowed_bytes, dtype=bool).reshape(num_tags, num_tags)
    counts = allowed.sum(axis=0)
    if (counts == num_tags).all():
        return [(slice(0, num_tags), None)], numpy.arange(num_tags)
    allowed = allowed | (counts == 0)  # unreachable tags: every predecessor, at IMPOSSIBLE
    counts = allowed.sum(axis=0)
    few = counts <= FEW_PREDECESSORS
    many = numpy.flatnonzero(~few)
    shared = numpy.zeros(num_tags, dtype=bool)  # the predecessors every tag of the second group has
    if len(many) and (allowed[:, many] == allowed[:, many[:1]]).all():
        shared = allowed[:, many[0]]
    order = numpy.concatenate([numpy.flatnonzero(mask) for mask in (few & ~shared, few & shared, ~few & shared, ~few & ~shared)])
    position = numpy.argsort(order)  # tag -> its index in `order`
    groups, offset = [], 0
    for members, is_second in ((order[: few.sum()], False), (order[few.sum() :], True)):
        if not len(members):
            continue
        if is_second and shared.any():
            first = int((few & ~shared).sum())
            predecessors = slice(first, first + int(shared.sum()))
        else:
            width = counts[members].max()
            predecessors = numpy.empty((width, len(members)), dtype=numpy.intp)
            for column, tag in enumerate(members):
                sources = position[numpy.flatnonzero(allowed[:, tag])]
                predecessors[:, column] = numpy.resize(sources, width)  # pads by repeating
        groups.append((slice(offset, offset + len(members)), predecessors))
        offset += len(members)
    return groups, order


# -- k-best --------------------------------------------------------------------------------


def kbest_reference(
    emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor, end: torch.Tensor, k: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(scores (B, k), tags (B, k, L))``: list Viterbi, the ``k`` best paths best first.

    Here forbidden entries of ``start``, ``transitions`` and ``end`` must be ``-inf`` (not
    IMPOSSIBLE), so a rank is either a valid path or empty: score -inf, tags -1. Tags past a
    sequence's length are -1; an empty sequence has one path (score 0), then -inf ranks.
    """
    batch, length, num_tags = emissions.shape
    emissions = clean_padding(emissions, mask)
    neg_inf = float("-inf")
    # score[b, t, r]: the r-th best prefix score ending in tag t (-inf: no such prefix).
    score = torch.cat(
        [(start + emissions[:, 0]).unsqueeze(2), emissions.new_full((batch, num_tags, k - 1), neg_inf)], dim=2
    )
    # Backpointers are flat (tag * k + rank) indices into the previous token's (T, k) entries.
    same_entry = torch.arange(num_tags * k, device=emissions.device).view(1, num_tags, k).expand(batch, num_tags, k)
    backpointers = []
    for i in range(1, length):
        # (B, T_prev, 1, k) + (T_prev, T_next, 1) -> (B, T_next, T_prev * k)
        candidates = (score.unsqueeze(2) + transitions.unsqueeze(2)).transpose(1, 2)
        best, index = candidates.reshape(batch, num_tags, num_tags * k).topk(k, dim=2)
        is_real = mask[:, i].view(batch, 1, 1)
        score = torch.where(is_real, best + emissions[:, i].unsqueeze(2), score)
        # Padding points back to the same (tag, rank), so the traceback passes through unchanged.
        backpointers.append(torch.where(is_real, index, same_entry))

    best, index = (score + end.view(1, num_tags, 1)).reshape(batch, num_tags * k).topk(k, dim=1)
    path = [torch.div(index, k, rounding_mode="floor")]  # (B, k) tags
    for previous in reversed(backpointers):
        index = previous.reshape(batch, num_tags * k).gather(1, index)
        path.append(torch.div(index, k, rounding_mode="floor"))
    tags = torch.stack(path[::-1], dim=2)  # (B, k, L)
    # A finite score traces back through finite entries only; -inf ranks are empty.
    missing = (best == neg_inf).unsqueeze(2) | ~mask.unsqueeze(1) | ~mask[:, :1].unsqueeze(2)
    tags = tags.masked_fill(missing, -1)
    empty = torch.cat([emissions.new_zeros((batch, 1)), emissions.new_full((batch, k - 1), neg_inf)], dim=1)
    return torch.where(mask[:, :1], best, empty), tags
