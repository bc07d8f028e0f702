"""Sampling to ``DataConfig.sample_size`` balanced across sources (equal shares or proportional), from the seed."""

from __future__ import annotations

import random
from typing import Any


def source_quotas(counts: dict[str, int], size: int, balance: str) -> dict[str, int]:
    """How many rows to take per source so the total is ``min(size, sum(counts))``.

    ``equal`` gives every source the same share, capped by what it has (the rest goes to the larger sources);
    ``proportional`` keeps the sources' relative sizes (largest remainders get the leftover rows).
    """
    total = sum(counts.values())
    size = min(size, total)
    if balance == "proportional":
        exact = {name: size * n / total for name, n in counts.items()}
        quotas = {name: int(value) for name, value in exact.items()}
        leftover = size - sum(quotas.values())
        for name in sorted(exact, key=lambda k: (quotas[k] - exact[k], k))[:leftover]:
            quotas[name] += 1
        return quotas
    quotas, remaining = {}, size
    ordered = sorted(counts, key=lambda k: (counts[k], k))
    for position, name in enumerate(ordered):
        share = remaining // (len(ordered) - position)
        extra = 1 if remaining % (len(ordered) - position) and counts[name] > share else 0
        quotas[name] = min(counts[name], share + extra)
        remaining -= quotas[name]
    return quotas


def sample_rows(rows: list[dict[str, Any]], size: int | None, balance: str, seed: int,
                key: str = "source") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return ``(selected, not_selected)``; both keep input order. ``size=None`` selects everything."""
    if size is None or size >= len(rows):
        return list(rows), []
    by_source: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_source.setdefault(row[key], []).append(index)
    quotas = source_quotas({name: len(indices) for name, indices in by_source.items()}, size, balance)
    rng = random.Random(seed)
    chosen: set[int] = set()
    for name in sorted(by_source):
        chosen.update(rng.sample(by_source[name], quotas[name]))
    selected = [row for index, row in enumerate(rows) if index in chosen]
    dropped = [row for index, row in enumerate(rows) if index not in chosen]
    return selected, dropped
