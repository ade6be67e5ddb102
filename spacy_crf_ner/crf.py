"""The linear-chain CRF, in pure PyTorch (no spaCy, no Thinc): :class:`ConstrainedCRF`, with
torchcrf's contract. Its methods pick a kernel from ``crf_kernels``, where each algorithm has a
plain log-space reference and the fast version beside it.

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
import contextlib
import io
import threading
from typing import Iterator, List, Optional, Tuple

import torch
import torchcrf

from .crf_kernels import (
    IMPOSSIBLE,
    Posteriors,
    forward_backward_matmul,
    forward_backward_numpy,
    kbest_reference,
    log_partition_matmul,
    log_partition_reference,
    marginals,
    path_scores,
    span_log_probs,
    span_log_probs_numpy,
    viterbi_numpy,
    viterbi_reference,
)


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

    def _scores_for(self, emissions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`constrained_scores` in the emissions' dtype (float64 emissions: float64 maths)."""
        return tuple(score.to(emissions.dtype) for score in self.constrained_scores())

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
        over sequences, or ``token_mean`` over real tokens). Padding (and its tags) is never
        read: it may hold anything, inf and NaN included.
        """
        if reduction not in ("none", "sum", "mean", "token_mean"):
            raise ValueError(f"invalid reduction: {reduction}")
        mask = self._check_mask(emissions, mask)
        known = (tags >= 0) & mask  # (B, L)
        if emissions.shape[1] == 0:
            llh = emissions.new_zeros(len(emissions))
        elif bool(torch.equal(known, mask)):
            # Fully known gold: the numerator is the score of one path.
            gold_score = path_scores(emissions, tags.clamp(min=0), mask, *self._scores_for(emissions))
            llh = gold_score - self.log_partition(emissions, mask)  # (B,)
        else:
            # The numerator sums the paths that agree with the known tags. It and the partition
            # function run as one batch of 2B sequences: half the per-token calls.
            allowed_gold = torch.ones_like(emissions, dtype=torch.bool)  # (B, L, T)
            allowed_gold[known] = torch.nn.functional.one_hot(tags[known], self.num_tags).bool()
            both = self.log_partition(
                torch.cat([emissions, emissions]),
                torch.cat([mask, mask]),
                torch.cat([torch.ones_like(allowed_gold), allowed_gold]),
            )  # (2B,)
            llh = both[len(emissions) :] - both[: len(emissions)]
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
        mask = self._check_mask(emissions, mask)
        batch, length, _ = emissions.shape
        if length == 0:
            return emissions.new_zeros(batch)
        scores = self._scores_for(emissions)
        if allowed_tags is not None and bool(((allowed_tags.sum(2) == 1) | ~mask).all()):
            # One allowed tag per real token (fully known gold): one path has all its tags
            # allowed; every other one has an IMPOSSIBLE emission, so adds nothing to the sum.
            return path_scores(emissions, allowed_tags.to(torch.int8).argmax(2), mask, *scores)
        if emissions.is_cpu:
            return log_partition_matmul(emissions, mask, *scores, allowed_tags)
        # The matrix-product kernel syncs with the host once per token to find underflowing
        # sums; on an accelerator that costs more than the log-space steps it saves.
        if allowed_tags is not None:
            emissions = emissions.masked_fill(~allowed_tags, IMPOSSIBLE)
        return log_partition_reference(emissions, mask, *scores)

    # -- decoding ----------------------------------------------------------------------------

    def viterbi(
        self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Best valid path per sequence: ``(scores (B,), tags (B, L))``.

        Tags past a sequence's length are ``-1``; an empty sequence scores 0. With autograd on,
        the scores carry the gradient of the best paths' scores.
        """
        mask = self._check_mask(emissions, mask)
        batch, length, _ = emissions.shape
        if length == 0:
            return emissions.new_zeros(batch), torch.empty((batch, 0), dtype=torch.long, device=emissions.device)
        scores = self._scores_for(emissions)
        if not emissions.is_cpu or emissions.dtype not in (torch.float32, torch.float64):
            return viterbi_reference(emissions, mask, *scores)
        # On CPU NumPy's per-call cost is a fraction of torch's, which is most of the time here.
        best, tags = viterbi_numpy(
            emissions.detach().numpy(), mask.sum(1).numpy(), *(s.detach().numpy() for s in scores)
        )
        best, tags = torch.from_numpy(best), torch.from_numpy(tags)
        if torch.is_grad_enabled() and emissions.requires_grad:  # the same values, with the paths' gradient
            differentiable = path_scores(emissions, tags.clamp(min=0), mask, *scores)
            best = differentiable + (best - differentiable).detach()
        return best, tags

    def decode(self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None) -> List[List[int]]:
        """torchcrf's contract: the best path of each sequence as a list of tag indices."""
        mask = self._check_mask(emissions, mask)
        _, tags = self.viterbi(emissions, mask)
        lengths = mask.sum(dim=1).tolist()
        return [row[:n] for row, n in zip(tags.tolist(), lengths)]

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
        mask = self._check_mask(emissions, mask)
        batch, length, _ = emissions.shape
        if length == 0:
            scores = torch.cat([emissions.new_zeros((batch, 1)), emissions.new_full((batch, k - 1), float("-inf"))], 1)
            return scores, torch.full((batch, k, 0), -1, dtype=torch.long, device=emissions.device)
        scores = (
            score.masked_fill(~allowed, float("-inf")).to(emissions.dtype)
            for score, allowed in (
                (self.start_transitions, self.allowed_start),
                (self.transitions, self.allowed_transitions),
                (self.end_transitions, self.allowed_end),
            )
        )
        return kbest_reference(emissions, mask, *scores, k)

    # -- posteriors --------------------------------------------------------------------------

    def posteriors(self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Posteriors:
        """Forward and backward scores normalised per token (:class:`~.crf_kernels.Posteriors`),
        constrained like :meth:`log_partition`: what :meth:`marginals` and :meth:`span_log_probs`
        build their probabilities from, exact on any length."""
        mask = self._check_mask(emissions, mask)
        batch, length, num_tags = emissions.shape
        if length == 0:
            empty = emissions.new_zeros((batch, 0, num_tags))
            return Posteriors(empty, empty.clone(), emissions.new_zeros((batch, 1)))
        # Matrix-product kernels on every device: their per-token normalisers are what keep the
        # probabilities exact (the log-space reference subtracts one log Z of ~1e5 at the end).
        # Without gradients on CPU, the NumPy one: its per-call cost is a fraction of torch's.
        scores = self._scores_for(emissions)
        if emissions.is_cpu and not torch.is_grad_enabled():
            arrays = forward_backward_numpy(
                emissions.detach().double().numpy(), mask.sum(1).numpy(), *(s.detach().double().numpy() for s in scores)
            )
            return Posteriors(*(torch.from_numpy(array).to(emissions.dtype) for array in arrays))
        return forward_backward_matmul(emissions, mask, *scores)

    def forward_backward(
        self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward and backward log-scores, without the per-token normalisation of :meth:`posteriors`.

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

        Padded positions hold 0 in ``alpha`` and ``beta``. These scores grow with the length, and
        in float32 a difference of two of them loses precision: take probabilities from
        :meth:`marginals` and :meth:`span_log_probs`.
        """
        mask = self._check_mask(emissions, mask)
        alpha, beta, log_norms = self.posteriors(emissions, mask)
        level = log_norms.cumsum(dim=1)  # (B, L + 1): the normalisers so far
        is_real = mask.unsqueeze(2)
        forward = (alpha + level[:, :-1].unsqueeze(2)).masked_fill(~is_real, 0.0)
        backward = (beta + (level[:, -1:] - level[:, :-1]).unsqueeze(2)).masked_fill(~is_real, 0.0)
        return forward, backward, level[:, -1]

    def marginals(self, emissions: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, L, T)`` posterior probability of each tag at each token.

        Each real token's row sums to 1; padded rows are 0. This is the gradient of
        ``log_partition(emissions, mask).sum()`` with respect to ``emissions``.
        """
        mask = self._check_mask(emissions, mask)
        return marginals(self.posteriors(emissions, mask), mask)

    def span_log_probs(
        self,
        emissions: torch.Tensor,
        mask: Optional[torch.Tensor],
        batch_index: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        span_tags: torch.Tensor,
        forbidden_next: Optional[torch.Tensor] = None,
        posteriors: Optional[Posteriors] = None,
    ) -> torch.Tensor:
        """``(N,)`` log-probability that the CRF puts each queried tag segment exactly there.

        Query ``n`` asks for the tags ``span_tags[n, :m]`` (``m = ends[n] - starts[n]``) on tokens
        ``starts[n] .. ends[n] - 1`` of sequence ``batch_index[n]``, and, if token ``ends[n]`` is
        real, for that token to take none of the tags in ``forbidden_next[n]``. The result is the
        log of the probability mass of every valid path that does so (differentiable). A query
        over a whole sequence gives the probability of that path.

        This is generic in tag indices; ``tags.span_query`` / ``tags.span_queries`` spell an entity
        for a scheme. For BILUO an entity is ``B-X I-X.. L-X`` or ``U-X`` and nothing is forbidden
        after it; for BIO it is ``B-X I-X..`` and ``I-X`` is forbidden next, since otherwise the
        entity would go on.

        emissions: ``(B, L, T)``; mask: ``(B, L)`` bool or None.
        batch_index, starts, ends: ``(N,)`` long, with ``0 <= starts < ends <= length``.
        span_tags: ``(N, M)`` long tag indices, ``M >= max(ends - starts)``; entries past a
            span's length are ignored (pad with -1).
        forbidden_next: ``(N, T)`` bool, or None for nothing forbidden.
        posteriors: the output of :meth:`posteriors` on the same emissions and mask, to share
            one forward-backward pass between calls.
        """
        mask = self._check_mask(emissions, mask)
        if span_tags.dim() != 2:
            raise ValueError(f"span_tags must be (N, M), got shape {tuple(span_tags.shape)}")
        num_queries, width = span_tags.shape
        if num_queries == 0:
            return emissions.new_zeros(0)
        # Without gradients on CPU, the NumPy kernel: its per-call cost is a fraction of torch's.
        use_numpy = emissions.is_cpu and not torch.is_grad_enabled()
        lengths = mask.sum(dim=1)
        if use_numpy:
            lengths, batch_index, starts, ends, span_tags = (x.numpy() for x in (lengths, batch_index, starts, ends, span_tags))
        span_length = ends - starts
        # One host sync per call: a bad query would otherwise silently read padding.
        if bool(((span_length < 1) | (starts < 0) | (ends > lengths[batch_index]) | (span_length > width)).any()):
            raise ValueError("span queries need 0 <= start < end <= length and end - start <= span_tags.shape[1]")
        if posteriors is None:
            posteriors = self.posteriors(emissions, mask)
        elif not isinstance(posteriors, Posteriors):
            raise TypeError(f"posteriors must come from ConstrainedCRF.posteriors(), got {type(posteriors).__name__}")
        scores = self._scores_for(emissions)
        if not use_numpy:
            return span_log_probs(emissions, mask, *scores, posteriors, batch_index, starts, ends, span_tags, forbidden_next)
        log_probs = span_log_probs_numpy(
            emissions.detach().numpy(),
            lengths,
            *(score.detach().numpy() for score in scores),
            tuple(array.detach().numpy() for array in posteriors),
            batch_index,
            starts,
            ends,
            span_tags,
            None if forbidden_next is None else forbidden_next.bool().numpy(),
        )
        return torch.from_numpy(log_probs)

    # -- helpers -----------------------------------------------------------------------------

    def _check_mask(self, emissions: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``mask`` as bool, or all True; errors name the shape at fault."""
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


# torch.set_num_threads is process-wide: these make the scoped limit below safe to nest and to
# enter from several threads at once.
_thread_limit_lock = threading.Lock()
_thread_limit_depth = 0
_threads_outside = 1


@contextlib.contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block, and restore the caller's setting after.

    The CRF's tensors are tiny: splitting them over threads gains nothing, and when other work
    holds the cores each hand-off waits for a busy core (10x slower per op on a loaded machine,
    in every ``n_process`` worker alike). The setting is process-wide, so while any thread is
    inside such a block, torch ops elsewhere in the process also run on one thread (slower,
    never wrong); nested and concurrent blocks restore the caller's count when the last leaves.
    """
    global _thread_limit_depth, _threads_outside
    with _thread_limit_lock:
        if _thread_limit_depth == 0:
            _threads_outside = torch.get_num_threads()
            if _threads_outside != 1:
                torch.set_num_threads(1)
        _thread_limit_depth += 1
    try:
        yield
    finally:
        with _thread_limit_lock:
            _thread_limit_depth -= 1
            if _thread_limit_depth == 0 and _threads_outside != 1:
                torch.set_num_threads(_threads_outside)
