"""Reciprocal rank fusion (Cormack et al. 2009) of several ranked lists."""

from __future__ import annotations

from collections.abc import Sequence

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = RRF_K,
                           weights: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(d) = sum_i w_i / (k + rank_i(d)), ranks from 1; best first.

    The fused score is divided by its maximum possible value (every list ranks d first), so it lies in (0, 1].
    """
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, doc in enumerate(ranking, 1):
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
    best = sum(weights) / (k + 1)
    return sorted(((d, s / best) for d, s in scores.items()), key=lambda item: (-item[1], item[0]))
