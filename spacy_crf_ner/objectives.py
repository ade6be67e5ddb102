"""Training objectives besides the CRF's plain likelihood (:func:`~spacy_crf_ner.layers.crf_loss`):
negative examples (spans known not to be entities) and rehearsal against an earlier model.

Both return ``(loss, d_emissions)`` like ``crf_loss``: the loss summed over the batch and its
gradient with respect to each doc's emissions ``(n_i, T)``; the CRF's own gradients accumulate
in its shim for the next ``finish_update``.
"""
from itertools import product
from typing import List, Sequence, Tuple

import numpy
import torch
from thinc.api import Model, torch2xp
from thinc.types import Floats2d

from .layers import get_crf, pad_emissions
from .tags import span_query

Entity = Tuple[str, int, int]  # (label, start token, end token exclusive)

# Each rejected span multiplies the forward passes of its doc's numerator by (its length + 1):
# past this many, a doc's negative examples would cost more than a training step should.
MAX_NUMERATOR_PASSES = 1024


def negative_examples_loss(
    crf_layer: Model,
    emissions: List[Floats2d],
    gold: Sequence[numpy.ndarray],
    negatives: Sequence[Sequence[Entity]],
    scheme: str,
) -> Tuple[float, List[Floats2d]]:
    """Negative log-likelihood of the gold tags with the rejected spans excluded.

    ``gold[b]`` holds doc b's tag indices (``-1``: unknown), ``negatives[b]`` its rejected
    ``(label, start, end)`` spans. The numerator sums over every path that agrees with the
    gold tags and spells none of the rejected spans, exactly: the paths that do not spell a span
    ``t_0 .. t_{m-1}`` at ``s`` are the disjoint union, over ``k``, of those that spell its first
    ``k`` tags and not tag ``k`` (in BIO, also those that spell it all and continue it with
    ``I-``), each an allowed-tags mask, so the numerator is a log-sum-exp of forward passes,
    one per combination of such pieces, with no subtraction to lose precision in.
    """
    crf = get_crf(crf_layer)
    tags = crf_layer.attrs["tags"]
    padded, mask = pad_emissions(crf_layer, emissions, requires_grad=True)
    batch, length, num_tags = padded.shape
    rows, row_docs = [], []
    for b, (doc_gold, doc_negatives) in enumerate(zip(gold, negatives)):
        allowed_gold = numpy.ones((length, num_tags), dtype=bool)
        known = numpy.flatnonzero(doc_gold >= 0)
        allowed_gold[known] = False
        allowed_gold[known, doc_gold[known]] = True
        pieces = [
            _pieces_not_spelling(span, len(doc_gold), tags, scheme, length) for span in doc_negatives
        ]
        pieces = [p for p in pieces if _may_spell(p, allowed_gold)]
        n_passes = int(numpy.prod([len(p) - 1 for p in pieces]))
        if n_passes > MAX_NUMERATOR_PASSES:
            raise ValueError(
                f"Doc {b} of the batch has {len(doc_negatives)} rejected spans, whose exact "
                f"exclusion needs {n_passes} forward passes (at most {MAX_NUMERATOR_PASSES}): "
                "split the doc or reject fewer overlapping spans in it."
            )
        for combination in product(*[p[1:] for p in pieces]):
            allowed = allowed_gold.copy()
            for piece in combination:
                allowed &= piece
            # A token with no allowed tag: the pieces contradict each other, no path is left.
            if allowed[: len(doc_gold)].any(axis=1).all():
                rows.append(allowed)
                row_docs.append(b)
        if b not in row_docs:
            raise ValueError(
                f"Doc {b} of the batch: its gold annotation spells one of its rejected spans "
                f"{list(doc_negatives)}, so no path agrees with both."
            )
    row_index = torch.tensor(row_docs, dtype=torch.long, device=padded.device)
    row_log_z = crf.log_partition(
        padded[row_index], mask[row_index], torch.from_numpy(numpy.stack(rows)).to(padded.device)
    )
    numerator = torch.stack(
        [torch.logsumexp(row_log_z[row_index == b], dim=0) for b in range(batch)]
    )
    nll = (crf.log_partition(padded, mask) - numerator).sum()
    nll.backward()
    d_padded = torch2xp(padded.grad)
    return float(nll.detach()), [d_padded[i, : len(e)] for i, e in enumerate(emissions)]


def _pieces_not_spelling(
    span: Entity, n_tokens: int, tags: Sequence[str], scheme: str, length: int
) -> List[numpy.ndarray]:
    """``[spelled, piece_0, piece_1, ...]``, ``(length, T)`` bool masks: ``spelled`` allows only
    the paths that spell ``span``; the pieces partition the paths that do not."""
    label, start, end = span
    path, forbidden_next = span_query(label, end - start, scheme, tags)
    full = numpy.ones((length, len(tags)), dtype=bool)
    pieces = []
    for k, tag in enumerate(path):
        piece = full.copy()
        for j in range(k):
            piece[start + j] = False
            piece[start + j, path[j]] = True
        piece[start + k, tag] = False
        pieces.append(piece)
    spelled = full.copy()
    for j, tag in enumerate(path):
        spelled[start + j] = False
        spelled[start + j, tag] = True
    if forbidden_next and end < n_tokens:
        # BIO: B-X I-X followed by I-X spells a longer entity, not this one.
        continued = spelled.copy()
        continued[end] = False
        continued[end, forbidden_next] = True
        pieces.append(continued)
        spelled[end, forbidden_next] = False
    return [spelled] + pieces


def _may_spell(pieces: List[numpy.ndarray], allowed_gold: numpy.ndarray) -> bool:
    """Whether some path agreeing with the gold tags spells the span (if none does, excluding
    it changes nothing)."""
    return bool((pieces[0] & allowed_gold).any(axis=1).all())


def rehearsal_loss(
    crf_layer: Model, emissions: List[Floats2d], old_crf_layer: Model, old_emissions: List[Floats2d]
) -> Tuple[float, List[Floats2d]]:
    """``KL(old || new)`` over tag paths, summed over the docs, and its gradient.

    ``old_emissions`` are the earlier model's ``(n_i, T_old)``; the current model may have more
    tags (labels added since, whose tags come after the old ones). The current model's
    distribution is restricted to the old tags, so rehearsal says nothing about new labels.
    The old path distribution's expected score needs its token and tag-pair marginals, from
    its forward and backward scores.
    """
    crf, old_crf = get_crf(crf_layer), get_crf(old_crf_layer)
    padded, mask = pad_emissions(crf_layer, emissions, requires_grad=True)
    with torch.no_grad():
        # float64: the loss is a difference of path-score sums, near 0 while the models agree.
        old = pad_emissions(old_crf_layer, old_emissions)[0].double()
        old_start, old_transitions, old_end = (s.double() for s in old_crf.constrained_scores())
        alpha, beta, old_log_z = old_crf.forward_backward(old, mask)
        on = mask.unsqueeze(2)
        unary = torch.softmax(alpha + beta, dim=2) * on  # (B, L, T_old)
        # (B, L-1, T_old, T_old): tag i at token t and tag j at token t+1, both real.
        pair_scores = alpha[:, :-1, :, None] + old_transitions + (old + beta)[:, 1:, None, :]
        pair_scores = pair_scores - old_log_z[:, None, None, None]
        pairs = torch.where(on[:, 1:, None, :], pair_scores, -torch.inf).exp()
        lengths = mask.sum(dim=1)
        last = unary[torch.arange(len(lengths)), (lengths - 1).clamp(min=0)]  # (B, T_old)
        n_old = old.shape[2]

    def expected_score(emissions, start, transitions, end):
        """``(B,)`` the expected path score under the old distribution."""
        return (
            (unary * emissions[:, :, :n_old]).sum(dim=(1, 2))
            + (pairs * transitions[:n_old, :n_old]).sum(dim=(1, 2, 3))
            + (unary[:, 0] * start[:n_old]).sum(dim=1)
            + (last * end[:n_old]).sum(dim=1)
        )

    old_tags_only = torch.zeros(padded.shape, dtype=torch.bool, device=padded.device)
    old_tags_only[:, :, :n_old] = True
    new_log_z = crf.log_partition(padded, mask, old_tags_only)
    cross_entropy = new_log_z - expected_score(padded, *crf.constrained_scores())
    with torch.no_grad():
        entropy = old_log_z - expected_score(old, old_start, old_transitions, old_end)
    kl = (cross_entropy - entropy).sum()
    kl.backward()
    d_padded = torch2xp(padded.grad)
    return float(kl.detach()), [d_padded[i, : len(e)] for i, e in enumerate(emissions)]
