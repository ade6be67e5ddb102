"""The linear-chain CRF math, in pure PyTorch (no spaCy, no Thinc).

Shapes used throughout (always batch first):

- ``emissions``: ``(B, L, T)`` float, the score of tag ``t`` at token ``l`` of sequence ``b``;
- ``mask``: ``(B, L)`` bool, ``True`` on real tokens. Sequences are left-aligned: the real tokens
  of a sequence of length ``n`` are positions ``0..n-1``. A length of 0 is allowed;
- ``tags``: ``(B, L)`` long, a tag index per token; ``-1`` marks a token whose tag is unknown
  (missing annotation), which the likelihood marginalises over;
- ``allowed_tags``: ``(B, L, T)`` bool, which tags each token may take.

Tag index ``i`` means whatever the caller's tag list says (see ``tags.py``: index 0 is ``O``).
``transitions[i, j]`` scores tag ``j`` following tag ``i``.

Forbidden moves (``O -> I-PER`` and the like) get the score :data:`IMPOSSIBLE` in both the
partition function and Viterbi decoding, so the model's distribution puts (numerically) zero mass
on invalid sequences and decoding can only return valid ones. A large finite number rather than
``-inf`` keeps every gradient finite: ``logsumexp`` over all ``-inf`` has a NaN gradient.
"""
import io
from typing import List, Optional, Tuple

import numpy
import torch
import torchcrf

IMPOSSIBLE = -10000.0


class ConstrainedCRF(torchcrf.CRF):
    """A ``torchcrf.CRF`` with forbidden transitions and partially known gold tags.

    It keeps pytorch-crf's parameters (``start_transitions (T,)``, ``end_transitions (T,)``,
    ``transitions (T, T)``) and its ``forward()`` / ``decode()`` contract, always batch first.
    With every transition allowed and every tag known, ``forward`` and ``decode`` give exactly
    what ``torchcrf.CRF`` gives on the same parameters.

    num_tags: T, the number of tags.
    allowed_start: ``(T,)`` bool, tags a sequence may start with (default: all).
    allowed_transitions: ``(T, T)`` bool, ``[i, j]`` is True if tag ``j`` may follow tag ``i``.
    allowed_end: ``(T,)`` bool, tags a sequence may end with.

    The three masks are persistent buffers, so a state dict fully describes the model
    (see :meth:`from_state_bytes`).
    """

    def __init__(
        self,
        num_tags: int,
        allowed_start: Optional[torch.Tensor] = None,
        allowed_transitions: Optional[torch.Tensor] = None,
        allowed_end: Optional[torch.Tensor] = None,
    ) -> None:
        super().__init__(num_tags, batch_first=True)

        def as_mask(value: Optional[torch.Tensor], shape: Tuple[int, ...]) -> torch.Tensor:
            if value is None:
                return torch.ones(shape, dtype=torch.bool)
            value = torch.as_tensor(value, dtype=torch.bool)
            if value.shape != shape:
                raise ValueError(f"constraint mask has shape {tuple(value.shape)}, expected {shape}")
            return value.clone()

        self.register_buffer("allowed_start", as_mask(allowed_start, (num_tags,)))
        self.register_buffer("allowed_transitions", as_mask(allowed_transitions, (num_tags, num_tags)))
        self.register_buffer("allowed_end", as_mask(allowed_end, (num_tags,)))

    def __repr__(self) -> str:
        forbidden = int((~self.allowed_transitions).sum())
        return f"{self.__class__.__name__}(num_tags={self.num_tags}, forbidden_transitions={forbidden})"

    @classmethod
    def from_state_bytes(cls, state_bytes: bytes, device: Optional[torch.device] = None) -> "ConstrainedCRF":
        """Rebuild a CRF, sized and constrained, from bytes written by ``torch.save(state_dict())``."""
        state = torch.load(io.BytesIO(state_bytes), map_location=device or "cpu")
        crf = cls(state["transitions"].shape[0])
        crf.load_state_dict(state)
        return crf.to(device) if device is not None else crf

    # -- scores with the constraints applied -------------------------------------------------

    def constrained_scores(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(start (T,), transitions (T, T), end (T,))`` with forbidden entries at IMPOSSIBLE."""
        impossible = torch.tensor(IMPOSSIBLE, dtype=self.transitions.dtype, device=self.transitions.device)
        return (
            torch.where(self.allowed_start, self.start_transitions, impossible),
            torch.where(self.allowed_transitions, self.transitions, impossible),
            torch.where(self.allowed_end, self.end_transitions, impossible),
        )

    # -- likelihood --------------------------------------------------------------------------

    def forward(
        self,
        emissions: torch.Tensor,
        tags: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        reduction: str = "sum",
    ) -> torch.Tensor:
        """Log-likelihood of ``tags (B, L)`` given ``emissions (B, L, T)``, as in torchcrf.

        A tag of ``-1`` is unknown: the numerator sums over every valid path that agrees with the
        known tags. Returns ``(B,)`` for ``reduction="none"``, else a scalar (``sum``, ``mean``
        over sequences, or ``token_mean`` over real tokens).
        """
        if reduction not in ("none", "sum", "mean", "token_mean"):
            raise ValueError(f"invalid reduction: {reduction}")
        mask = self._mask(emissions, mask)
        known = tags >= 0
        allowed_gold = torch.ones_like(emissions, dtype=torch.bool)
        allowed_gold[known] = torch.nn.functional.one_hot(tags[known], self.num_tags).bool()
        llh = self.log_partition(emissions, mask, allowed_gold) - self.log_partition(emissions, mask)
        if reduction == "none":
            return llh
        if reduction == "sum":
            return llh.sum()
        if reduction == "mean":
            return llh.mean()
        return llh.sum() / mask.sum().clamp(min=1)

    def log_partition(
        self,
        emissions: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        allowed_tags: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``(B,)`` log of the summed exp-score of every valid path (forward algorithm).

        With ``allowed_tags (B, L, T)``, only paths whose tags are all allowed are summed: the
        same function gives the partition function (no ``allowed_tags``) and the numerator of
        the likelihood (gold tags, with unknown tokens allowing every tag). An empty sequence
        has one path, the empty one, with score 0.
        """
        mask = self._mask(emissions, mask)
        batch, length, _ = emissions.shape
        if length == 0:
            return emissions.new_zeros(batch)
        start, transitions, end = self.constrained_scores()
        if allowed_tags is not None:
            if bool(((allowed_tags.sum(2) == 1) | ~mask).all()):
                # One allowed tag per real token (fully known gold): one path has all its tags
                # allowed; every other one has an IMPOSSIBLE emission, so adds nothing to the sum.
                tags = allowed_tags.to(torch.int8).argmax(2)
                log_z = self._path_score(emissions, tags, mask, start, transitions, end)
                return torch.where(mask[:, 0], log_z, torch.zeros_like(log_z))
            emissions = emissions.masked_fill(~allowed_tags, IMPOSSIBLE)
        # Partly known gold under constraints: after a known tag, the tags it may not precede
        # underflow in the fast steps, so go careful at once.
        careful = allowed_tags is not None and not bool(self.allowed_transitions.all())
        alpha = self._forward_scores(emissions, mask, start, transitions, careful=careful)
        if alpha is None:  # some fast step underflowed: redo, with exact steps where needed
            alpha = self._forward_scores(emissions, mask, start, transitions, careful=True)
        log_z = torch.logsumexp(alpha + end, dim=1)
        return torch.where(mask[:, 0], log_z, torch.zeros_like(log_z))

    @staticmethod
    def _path_score(
        emissions: torch.Tensor,
        tags: torch.Tensor,
        mask: torch.Tensor,
        start: torch.Tensor,
        transitions: torch.Tensor,
        end: torch.Tensor,
    ) -> torch.Tensor:
        """``(B,)`` score of the paths ``tags (B, L)`` (any tag index where ``mask`` is False).

        As in the forward algorithm, padding is skipped: a transition links consecutive real
        tokens, and nothing padding holds reaches the score or its gradient.
        """
        positions = torch.arange(tags.shape[1], device=tags.device)
        latest = torch.where(mask, positions, 0).cummax(dim=1).values  # last real token so far
        tags = tags.gather(1, latest)
        emitted = torch.where(mask, emissions.gather(2, tags.unsqueeze(2)).squeeze(2), 0.0)
        moved = torch.where(mask[:, 1:], transitions[tags[:, :-1], tags[:, 1:]], 0.0)
        return start[tags[:, 0]] + emitted.sum(1) + moved.sum(1) + end[tags[:, -1]]

    @staticmethod
    def _forward_scores(
        emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor, careful: bool
    ) -> Optional[torch.Tensor]:
        """``(B, T)`` forward scores at each sequence's last real token (the forward algorithm).

        A step is a matrix product in probability space, shifted by the best score so far (per
        sequence) and the best transition into each tag: ``log(exp(alpha - top) @
        exp(transitions - shift)) + top + shift``, many times faster than a logsumexp over a
        ``(B, T, T)`` tensor. Every factor is at most 1, and a sum of at least ``tiny / eps``
        loses nothing that matters; a smaller one had its terms underflow (a tag reachable only
        from far less likely tags, or only by forbidden moves). Then the result is None, unless
        ``careful``: then those entries take the exact (log-space) step, so the result is exact
        (to rounding) for any emissions.
        """
        info = torch.finfo(emissions.dtype)
        floor = info.tiny / info.eps
        shift = transitions.detach().amax(dim=0)
        weights = torch.exp(transitions - shift)  # forbidden moves: exactly 0
        steps = (emissions + shift).unbind(1)  # unbind: one backward node, not one per token
        on = mask.unsqueeze(2).unbind(1)
        alpha = start + emissions[:, 0]
        totals = []
        for i in range(1, len(steps)):
            top = alpha.detach().amax(dim=1, keepdim=True)
            total = torch.exp(alpha - top) @ weights
            under = total.detach() < floor if careful else None
            # On CPU a host sync per token is cheap and spares exact steps; elsewhere, no syncs.
            if careful and (not total.is_cpu or bool(under.any())):
                if total.is_cpu:
                    rows = under.any(dim=1).nonzero().squeeze(1)
                else:
                    rows = torch.arange(len(total), device=total.device)
                exact = ConstrainedCRF._logsumexp_previous(alpha[rows], transitions) - shift
                exact = torch.zeros_like(total).index_copy(0, rows, exact)
                step = torch.where(under, exact, torch.log(torch.where(under, 1.0, total)) + top)
            else:
                totals.append(total.detach())
                step = torch.log(total) + top
            alpha = torch.where(on[i], step + steps[i], alpha)
        if not careful and totals and bool((torch.stack(totals) < floor).any()):  # one host sync
            return None
        return alpha

    @staticmethod
    def _logsumexp_previous(alpha: torch.Tensor, transitions: torch.Tensor) -> torch.Tensor:
        """``(B, T_next)`` logsumexp over the previous tag of ``alpha (B, T_prev) + transitions``.

        Like torch.logsumexp, but the shifted terms are clamped at -80: on CPU, exp is many times
        slower below about -87 (IMPOSSIBLE terms), and the clamp adds at most T * exp(-80) to
        a sum of at least 1 (the max's own term).
        """
        scores = alpha.unsqueeze(2) + transitions
        top = scores.detach().amax(dim=1, keepdim=True)
        return torch.log(torch.exp((scores - top).clamp(min=-80.0)).sum(dim=1)) + top.squeeze(1)

    # -- decoding ----------------------------------------------------------------------------

    def viterbi(
        self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Best valid path per sequence, batched over sequences and tags.

        Returns ``(scores (B,), tags (B, L))``. Tags past a sequence's length are ``-1``; an
        empty sequence scores 0. On CPU with left-aligned sequences it runs in NumPy (see
        :meth:`_viterbi_numpy`); elsewhere the traceback is tensor operations only (no
        ``.item()``). With autograd on, the scores carry the gradient of the best paths' scores.
        """
        mask = self._mask(emissions, mask)
        batch, length, num_tags = emissions.shape
        if length == 0:
            return emissions.new_zeros(batch), torch.empty((batch, 0), dtype=torch.long, device=emissions.device)
        start, transitions, end = self.constrained_scores()
        if emissions.device.type == "cpu" and emissions.dtype in (torch.float32, torch.float64):
            on = mask.numpy()
            if not (on[:, 1:] > on[:, :-1]).any():  # left-aligned
                array = emissions.detach().numpy()
                params = [x.detach().numpy().astype(array.dtype, copy=False) for x in (start, transitions, end)]
                best, tags = self._viterbi_numpy(array, on.sum(1), *params)
                scores, tags = torch.from_numpy(best), torch.from_numpy(tags)
                if torch.is_grad_enabled():  # the same values, with the best paths' gradient
                    path_scores = self._path_score(emissions, tags.clamp(min=0), mask, start, transitions, end)
                    path_scores = torch.where(mask[:, 0], path_scores, torch.zeros_like(path_scores))
                    scores = path_scores + (scores - path_scores).detach()
                return scores, tags
        stay = torch.arange(num_tags, device=emissions.device).expand(batch, num_tags)
        score = start + emissions[:, 0]
        backpointers = []
        for i in range(1, length):
            best, prev = (score.unsqueeze(2) + transitions).max(dim=1)  # (B, T_next)
            on = mask[:, i].unsqueeze(1)
            score = torch.where(on, best + emissions[:, i], score)
            # Padding points back to the same tag, so the traceback passes through unchanged.
            backpointers.append(torch.where(on, prev, stay))
        best_score, last = (score + end).max(dim=1)
        path = [last]
        for prev in reversed(backpointers):
            last = prev.gather(1, last.unsqueeze(1)).squeeze(1)
            path.append(last)
        tags = torch.stack(path[::-1], dim=1)
        tags = tags.masked_fill(~mask, -1)
        return torch.where(mask[:, 0], best_score, torch.zeros_like(best_score)), tags

    @staticmethod
    def _viterbi_numpy(
        emissions: numpy.ndarray,
        lengths: numpy.ndarray,
        start: numpy.ndarray,
        transitions: numpy.ndarray,
        end: numpy.ndarray,
    ) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """:meth:`viterbi` on arrays, for left-aligned sequences of ``lengths (B,)``.

        The forward pass keeps only the best scores: per token, a max over a ``(T_prev, T_next,
        B)`` table. The traceback recomputes one argmax per token, for the chosen tags only.
        On such small arrays the per-call cost is most of the time, and NumPy's is a fraction of
        torch's; torch's broadcasting add is the faster one on big tables.
        """
        batch, length, num_tags = emissions.shape
        steps = numpy.ascontiguousarray(emissions.transpose(1, 2, 0))  # (L, T, B)
        scores = numpy.empty_like(steps)  # (L, T, B): the best score of a path ending in each tag
        moves = numpy.repeat(transitions[:, :, None], batch, axis=2)  # (T_prev, T_next, B)
        table = numpy.empty_like(moves)
        if num_tags > 16:
            add, into, out = torch.add, torch.from_numpy(moves), torch.from_numpy(table)
            before = torch.from_numpy(scores).unsqueeze(2).unbind(0)  # (T_prev, 1, B) each
        else:
            add, into, out, before = numpy.add, moves, table, list(scores[:, :, None, :])
        maximum = numpy.maximum.reduce
        scores[0] = start[:, None] + steps[0]
        score_rows, step_rows = list(scores), list(steps)  # views made once, not per use
        with numpy.errstate(invalid="ignore", over="ignore"):  # padding may hold anything
            for i in range(1, length):
                add(before[i - 1], into, out=out)
                row = score_rows[i]
                maximum(table, 0, None, row)  # positional arguments: parsed faster
                row += step_rows[i]
        rows = numpy.arange(batch)
        last = numpy.maximum(lengths - 1, 0)
        final = scores[last, :, rows] + end  # (B, T)
        tag = final.argmax(1)
        best = numpy.where(lengths > 0, final[rows, tag], 0).astype(scores.dtype)

        back = numpy.ascontiguousarray(scores.transpose(0, 2, 1))  # (L, B, T_prev)
        inbound = numpy.ascontiguousarray(transitions.T)  # (T_next, T_prev)
        work = numpy.empty((batch, num_tags), scores.dtype)
        path = numpy.zeros((length, batch), numpy.intp)
        path[last, rows] = tag
        ends = {}
        for row, n in enumerate(last.tolist()):
            ends.setdefault(n, []).append(row)
        back_rows, path_rows = list(back), list(path)
        with numpy.errstate(invalid="ignore", over="ignore"):
            for i in range(length - 1, 0, -1):
                # Past a sequence's end this traces garbage, until its last token restarts it.
                numpy.add(back_rows[i - 1], inbound.take(path_rows[i], 0), work)
                work.argmax(1, path_rows[i - 1])
                if i - 1 in ends:
                    ending = ends[i - 1]
                    path[i - 1, ending] = tag[ending]
        tags = numpy.where(numpy.arange(length) < lengths[:, None], path.T, -1)
        return best, tags.astype(numpy.int64, copy=False)

    def decode(self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None) -> List[List[int]]:
        """torchcrf's contract: the best path of each sequence as a list of tag indices."""
        mask = self._mask(emissions, mask)
        _, tags = self.viterbi(emissions, mask)
        lengths = mask.sum(dim=1).tolist()
        return [row[:n] for row, n in zip(tags.tolist(), lengths)]

    # -- posteriors --------------------------------------------------------------------------

    def forward_backward(
        self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward and backward log-scores, constrained exactly like :meth:`log_partition`.

        emissions: ``(B, L, T)``; mask: ``(B, L)`` bool, left-aligned (default: all real).

        Returns ``(alpha (B, L, T), beta (B, L, T), log_z (B,))`` where, for a sequence of
        length ``n`` and a real token ``i < n``:

        - ``alpha[b, i, t]`` is the log of the summed exp-score of every path prefix over tokens
          ``0..i`` that ends in tag ``t``: start score, transitions and the emissions of
          tokens ``0..i``;
        - ``beta[b, i, t]`` is the same for every path suffix over tokens ``i+1..n-1`` that
          follows tag ``t`` at token ``i``: transitions, emissions of ``i+1..n-1`` and the end
          score (so ``beta[b, n-1] == end``);
        - ``log_z[b]`` is :meth:`log_partition` (0 for an empty sequence), and equals
          ``logsumexp_t(alpha[b, i, t] + beta[b, i, t])`` at every real token ``i``.

        Padded positions hold 0 in ``alpha`` and ``beta``: finite filler that means nothing.
        """
        mask = self._mask(emissions, mask)
        batch, length, num_tags = emissions.shape
        if length == 0:
            empty = emissions.new_zeros((batch, 0, num_tags))
            return empty, empty.clone(), emissions.new_zeros(batch)
        on = mask.unsqueeze(2)
        # Whatever padding holds (even inf) must reach neither the real positions nor the gradients.
        emissions = emissions.masked_fill(~on, 0.0)
        start, transitions, end = self.constrained_scores()

        alphas = [start + emissions[:, 0]]
        for i in range(1, length):
            # (B, T_prev, 1) + (T_prev, T_next) -> sum out T_prev
            step = self._logsumexp_previous(alphas[-1], transitions) + emissions[:, i]
            # Padding carries the last real alpha forward, so alphas[-1] ends up at token n-1.
            alphas.append(torch.where(mask[:, i].unsqueeze(1), step, alphas[-1]))

        end_row = end.expand(batch, num_tags)
        betas = [end_row]
        for i in range(length - 2, -1, -1):
            # (T_prev, T_next) + (B, 1, T_next) -> sum out T_next
            step = self._logsumexp_previous(emissions[:, i + 1] + betas[-1], transitions.t())
            # Left alignment: token i is its sequence's last real token iff token i+1 is padding.
            betas.append(torch.where(mask[:, i + 1].unsqueeze(1), step, end_row))

        log_z = torch.logsumexp(alphas[-1] + end, dim=1)
        log_z = torch.where(mask[:, 0], log_z, torch.zeros_like(log_z))
        alpha = torch.stack(alphas, dim=1).masked_fill(~on, 0.0)
        beta = torch.stack(betas[::-1], dim=1).masked_fill(~on, 0.0)
        return alpha, beta, log_z

    def marginals(self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, L, T)`` posterior probability of each tag at each token.

        Each real token's row sums to 1; padded rows are 0. This is the gradient of
        ``log_partition(emissions, mask).sum()`` with respect to ``emissions``.
        """
        mask = self._mask(emissions, mask)
        alpha, beta, _ = self.forward_backward(emissions, mask)
        # Normalising each token over its tags instead of subtracting log_z is the same maths
        # (every path takes exactly one tag per token), but it cancels the rounding error of the
        # absolute score level, which float32 loses on long sequences with large emissions.
        return torch.softmax(alpha + beta, dim=2) * mask.unsqueeze(2).to(alpha.dtype)

    def span_log_probs(
        self,
        emissions: torch.Tensor,
        mask: Optional[torch.Tensor],
        batch_index: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        span_tags: torch.Tensor,
        forbidden_next: Optional[torch.Tensor] = None,
        posteriors: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """``(N,)`` log-probability that the CRF puts each queried tag segment exactly there.

        Query ``n`` asks for the tags ``span_tags[n, :m]`` (``m = ends[n] - starts[n]``) on tokens
        ``starts[n] .. ends[n] - 1`` of sequence ``batch_index[n]``, and, if token ``ends[n]`` is
        real, for that token to take none of the tags in ``forbidden_next[n]``. The result is the
        log of the probability mass of every valid path that does so (differentiable).

        This is generic in tag indices; ``tags.span_query`` / ``tags.span_queries`` spell an entity
        for a scheme. For BILUO an entity is ``B-X I-X.. L-X`` or ``U-X`` and nothing is forbidden
        after it; for BIO it is ``B-X I-X..`` and ``I-X`` is forbidden next, since otherwise the
        entity would go on.

        emissions: ``(B, L, T)``; mask: ``(B, L)`` bool or None.
        batch_index, starts, ends: ``(N,)`` long, with ``0 <= starts < ends <= length``.
        span_tags: ``(N, M)`` long tag indices, ``M >= max(ends - starts)``; entries past a
            span's length are ignored (pad with -1).
        forbidden_next: ``(N, T)`` bool, or None for nothing forbidden.
        posteriors: the output of :meth:`forward_backward` on the same emissions and mask, to
            share one forward-backward pass between calls.
        """
        mask = self._mask(emissions, mask)
        if span_tags.dim() != 2:
            raise ValueError(f"span_tags must be (N, M), got shape {tuple(span_tags.shape)}")
        num_queries, width = span_tags.shape
        if num_queries == 0:
            return emissions.new_zeros(0)
        length = emissions.shape[1]
        span_length = ends - starts
        seq_length = mask.sum(dim=1)[batch_index]
        # One host sync per call: a bad query would otherwise silently read padding.
        if bool(((span_length < 1) | (starts < 0) | (ends > seq_length) | (span_length > width)).any()):
            raise ValueError("span queries need 0 <= start < end <= length and end - start <= span_tags.shape[1]")
        alpha, beta, log_z = posteriors if posteriors is not None else self.forward_backward(emissions, mask)
        emissions = emissions.masked_fill(~mask.unsqueeze(2), 0.0)
        start, transitions, end = self.constrained_scores()

        inside = torch.arange(width, device=emissions.device) < span_length.unsqueeze(1)  # (N, M)
        path = torch.where(inside, span_tags, torch.zeros_like(span_tags))
        positions = (starts.unsqueeze(1) + torch.arange(width, device=emissions.device)).clamp(max=length - 1)
        rows = batch_index.unsqueeze(1).expand(-1, width)
        emitted = emissions[rows, positions, path].masked_fill(~inside, 0.0).sum(dim=1)
        moved = transitions[path[:, :-1], path[:, 1:]].masked_fill(~inside[:, 1:], 0.0).sum(dim=1)
        first = path[:, 0]
        last = path.gather(1, (span_length - 1).unsqueeze(1)).squeeze(1)

        # Into the span: every prefix ending at token start-1, or the start score.
        before = alpha[batch_index, (starts - 1).clamp(min=0)]  # (N, T_prev)
        enter = torch.logsumexp(before + transitions[:, first].t(), dim=1)
        enter = torch.where(starts == 0, start[first], enter)

        # Out of it: every suffix from token `end` on, whose first tag is not forbidden, or the
        # end score. Forbidding by emission mirrors log_partition's allowed_tags.
        after = ends.clamp(max=length - 1)
        next_emissions = emissions[batch_index, after]  # (N, T_next)
        if forbidden_next is not None:
            next_emissions = next_emissions.masked_fill(forbidden_next.bool(), IMPOSSIBLE)
        leave = torch.logsumexp(transitions[last] + next_emissions + beta[batch_index, after], dim=1)
        leave = torch.where(ends == seq_length, end[last], leave)
        return enter + emitted + moved + leave - log_z[batch_index]

    # -- k-best decoding ---------------------------------------------------------------------

    def kbest(
        self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None, k: int = 5
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` best valid paths per sequence, best first (list Viterbi).

        Returns ``(scores (B, k), tags (B, k, L))``. Tags past a sequence's length are -1. A
        sequence with fewer than ``k`` valid paths gets score ``-inf`` and tags -1 in the
        missing ranks; an empty sequence has one path (score 0, no tags), then ``-inf`` ranks.

        Unlike :meth:`viterbi`, forbidden moves are ``-inf`` here, not IMPOSSIBLE, so a rank is
        either a valid path or empty: when no valid path exists at all (only possible with
        hand-made constraints), ``viterbi`` returns an invalid path but ``kbest`` none.
        Otherwise ``kbest(k=1)`` is ``viterbi`` (up to the order of exactly tied paths).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        mask = self._mask(emissions, mask)
        batch, length, num_tags = emissions.shape
        device = emissions.device
        neg_inf = float("-inf")
        empty_scores = torch.cat(
            [emissions.new_zeros((batch, 1)), emissions.new_full((batch, k - 1), neg_inf)], dim=1
        )
        if length == 0:
            return empty_scores, torch.full((batch, k, 0), -1, dtype=torch.long, device=device)
        start = self.start_transitions.masked_fill(~self.allowed_start, neg_inf)
        transitions = self.transitions.masked_fill(~self.allowed_transitions, neg_inf)
        end = self.end_transitions.masked_fill(~self.allowed_end, neg_inf)

        # score[b, t, r]: the r-th best prefix score ending in tag t (-inf: no such prefix).
        score = torch.cat(
            [(start + emissions[:, 0]).unsqueeze(2), emissions.new_full((batch, num_tags, k - 1), neg_inf)], dim=2
        )
        # Backpointers are flat (tag * k + rank) indices into the previous token's (T, k) entries.
        stay = torch.arange(num_tags * k, device=device).view(1, num_tags, k).expand(batch, num_tags, k)
        backpointers = []
        for i in range(1, length):
            # (B, T_prev, 1, k) + (T_prev, T_next, 1) -> (B, T_next, T_prev * k)
            candidates = (score.unsqueeze(2) + transitions.unsqueeze(2)).transpose(1, 2)
            best, index = candidates.reshape(batch, num_tags, num_tags * k).topk(k, dim=2)
            on = mask[:, i].view(batch, 1, 1)
            score = torch.where(on, best + emissions[:, i].unsqueeze(2), score)
            # Padding points back to the same (tag, rank), so the traceback passes through unchanged.
            backpointers.append(torch.where(on, index, stay))

        best, index = (score + end.view(1, num_tags, 1)).reshape(batch, num_tags * k).topk(k, dim=1)
        path = [torch.div(index, k, rounding_mode="floor")]  # (B, k) tags
        for prev in reversed(backpointers):
            index = prev.reshape(batch, num_tags * k).gather(1, index)
            path.append(torch.div(index, k, rounding_mode="floor"))
        tags = torch.stack(path[::-1], dim=2)  # (B, k, L)
        # A finite score traces back through finite entries only; -inf ranks are empty.
        missing = (best == neg_inf).unsqueeze(2) | ~mask.unsqueeze(1) | ~mask[:, :1].unsqueeze(2)
        tags = tags.masked_fill(missing, -1)
        scores = torch.where(mask[:, :1], best, empty_scores)
        return scores, tags

    # -- helpers -----------------------------------------------------------------------------

    def _mask(self, emissions: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(
                f"emissions must have shape (batch, length, {self.num_tags}), got {tuple(emissions.shape)}"
            )
        if mask is None:
            return torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, emissions {tuple(emissions.shape)}")
        return mask.bool()


def lengths_to_mask(lengths: torch.Tensor, max_length: Optional[int] = None) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, L)`` bool mask of left-aligned sequences."""
    max_length = int(lengths.max()) if max_length is None and len(lengths) else (max_length or 0)
    return torch.arange(max_length, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
