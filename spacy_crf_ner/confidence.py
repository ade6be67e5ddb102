"""Entity confidences and alternatives from the CRF's exact posteriors.

The probability of an entity is the probability mass the CRF puts on every valid tag path that
spells exactly that labelled span (``ConstrainedCRF.span_log_probs``). Above-threshold
candidates are found exactly, not sampled: a span can only have probability ``p`` if every one
of its tokens has the span's tag with marginal probability at least ``p``, so only runs of
such tokens are scored.

Every probability here is computed in float64 from per-token normalised posteriors
(``ConstrainedCRF.posteriors``): exact to ~1e-10 on documents of any length, so that a
probability rounds to at most 1 in the float32 it is reported in, without a clamp.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc, Span

from .crf import ConstrainedCRF
from .crf_kernels import Posteriors, marginals
from .tags import span_queries, to_spans

Entity = Tuple[str, int, int]  # (label, start token, end token exclusive)


class Analysis(NamedTuple):
    """One of the k best analyses of a doc: its path score, its probability under the CRF,
    its tags and the entities they spell."""

    score: float
    probability: float
    tags: List[str]
    ents: List[Span]


@torch.no_grad()
def entity_probabilities(
    crf: ConstrainedCRF,
    emissions: torch.Tensor,
    mask: torch.Tensor,
    entities: Sequence[Sequence[Entity]],
    tags: Sequence[str],
    scheme: str,
    posteriors: Optional[Posteriors] = None,
) -> List[numpy.ndarray]:
    """The probability of each doc's entities. ``emissions (B, L, T)``, ``mask (B, L)``;
    ``entities[b]`` lists doc b's entities; returns one float32 array per doc, in order.
    ``posteriors``: ``crf.posteriors(emissions.double(), mask)``, if already computed."""
    counts = [len(doc_ents) for doc_ents in entities]
    flat = [ent for doc_ents in entities for ent in doc_ents]
    if not flat:
        return [numpy.zeros((0,), dtype="float32") for _ in entities]
    paths, forbidden = span_queries(flat, tags, scheme)  # (N, M), (N, T)
    bounds = numpy.array([(start, end) for _, start, end in flat], dtype=numpy.int64)  # (N, 2)
    batch_index = numpy.repeat(numpy.arange(len(entities)), counts)  # (N,)
    log_probs = crf.span_log_probs(
        emissions.double(),
        mask,
        *(torch.from_numpy(array).to(emissions.device) for array in (batch_index, bounds[:, 0], bounds[:, 1], paths, forbidden)),
        posteriors=posteriors,
    )
    probs = log_probs.exp().cpu().numpy().astype("float32")
    ends = numpy.cumsum(counts).tolist()
    return [probs[end - count : end] for count, end in zip(counts, ends)]


def candidate_entities(marginals: numpy.ndarray, tags: Sequence[str], scheme: str, threshold: float) -> List[Entity]:
    """Every labelled span of one doc that could have probability >= ``threshold``, given its
    token-tag marginals ``(n_tokens, T)``: each token must carry the span's tag with at least
    that probability (a necessary condition; the exact probability is computed afterwards)."""
    index = {tag: i for i, tag in enumerate(tags)}
    likely = marginals >= threshold
    single, last = ("U", "L") if scheme == "BILUO" else ("B", "I")
    found: List[Entity] = []
    for label in sorted({tag[2:] for tag in tags if tag != "O"}):
        begin, inside = index[f"B-{label}"], index[f"I-{label}"]
        for start in range(len(marginals)):
            if likely[start, index[f"{single}-{label}"]]:
                found.append((label, start, start + 1))
            if not likely[start, begin]:
                continue
            # Tokens start+1 .. end-2 are inside (I-X), token end-1 closes the span.
            for end in range(start + 2, len(marginals) + 1):
                if likely[end - 1, index[f"{last}-{label}"]]:
                    found.append((label, start, end))
                if not likely[end - 1, inside]:
                    break
    return found


@torch.no_grad()
def likely_entities(
    crf: ConstrainedCRF,
    emissions: torch.Tensor,
    mask: torch.Tensor,
    entities: Sequence[Sequence[Entity]],
    tags: Sequence[str],
    scheme: str,
    threshold: float,
) -> Tuple[List[List[Entity]], List[numpy.ndarray]]:
    """Each doc's entities followed by every other labelled span with probability at least
    ``threshold``, and all their probabilities."""
    posteriors = crf.posteriors(emissions.double(), mask)
    tag_marginals = marginals(posteriors, mask).cpu().numpy()  # (B, L, T)
    lengths = mask.sum(dim=1).tolist()
    spans = []
    for doc_marginals, n, doc_ents in zip(tag_marginals, lengths, entities):
        candidates = candidate_entities(doc_marginals[:n], tags, scheme, threshold)
        spans.append(list(doc_ents) + [c for c in candidates if c not in doc_ents])
    probs = entity_probabilities(crf, emissions, mask, spans, tags, scheme, posteriors)
    kept_spans, kept_probs = [], []
    for doc_ents, doc_spans, doc_probs in zip(entities, spans, probs):
        # The best path's entities stay whatever their probability.
        keep = numpy.arange(len(doc_spans)) < len(doc_ents)
        keep |= doc_probs >= threshold
        kept_spans.append([span for span, k in zip(doc_spans, keep) if k])
        kept_probs.append(doc_probs[keep])
    return kept_spans, kept_probs


@torch.no_grad()
def kbest_analyses(
    crf: ConstrainedCRF, emissions: torch.Tensor, mask: torch.Tensor, docs: Sequence[Doc], tags: Sequence[str], scheme: str, k: int
) -> List[List[Analysis]]:
    """The ``k`` best analyses of each doc, best first (fewer if fewer valid paths exist)."""
    scores, paths = crf.kbest(emissions, mask, k)
    lengths = mask.sum(dim=1)
    # A path's probability is that of one "span" over its whole sequence (an empty doc's one
    # path has probability 1).
    found = torch.isfinite(scores) & (lengths > 0).unsqueeze(1)  # (B, k)
    batch_index, rank = found.nonzero(as_tuple=True)
    log_probs = torch.zeros(scores.shape, dtype=torch.float64, device=scores.device)
    log_probs[batch_index, rank] = crf.span_log_probs(
        emissions.double(),
        mask,
        batch_index,
        torch.zeros_like(batch_index),
        lengths[batch_index],
        paths[batch_index, rank],
    )
    probs = log_probs.exp().cpu().numpy().astype("float32")
    scores, paths = scores.cpu().numpy(), paths.cpu().numpy()
    out = []
    for b, doc in enumerate(docs):
        analyses = []
        for r in range(k):
            if not numpy.isfinite(scores[b, r]):
                break
            doc_tags = [tags[i] for i in paths[b, r, : len(doc)]]
            analyses.append(Analysis(float(scores[b, r]), float(probs[b, r]), doc_tags, to_spans(doc, doc_tags, scheme)))
        out.append(analyses)
    return out
