"""Balanced sampling and the leakage-safe split (stratified by source, grouped by question and document)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from medtune.data.clean import dedupe_key
from medtune.data.records import QARecord


def sample_balanced(records: list[QARecord], size: int | None, balance: str, seed: int) -> tuple[list[QARecord],
                                                                                                 list[QARecord]]:
    """Return ``(sampled, not_sampled)``: ``size`` rows, equal or proportional per source, reproducible."""
    if size is None or size >= len(records):
        return list(records), []
    rng = random.Random(seed)
    by_source: dict[str, list[QARecord]] = defaultdict(list)
    for record in records:
        by_source[record.source].append(record)
    available = {source: len(rows) for source, rows in sorted(by_source.items())}
    if balance == "proportional":
        quotas = {s: int(size * n / len(records)) for s, n in available.items()}
    else:
        quotas = {s: 0 for s in available}
        remaining = size
        open_sources = [s for s in available]
        while remaining > 0 and open_sources:  # equal shares, capped by what a source has, remainder passed on
            share = max(1, remaining // len(open_sources))
            for source in list(open_sources):
                take = min(share, available[source] - quotas[source], remaining)
                quotas[source] += take
                remaining -= take
                if quotas[source] >= available[source]:
                    open_sources.remove(source)
                if remaining == 0:
                    break
    shortfall = size - sum(quotas.values())
    for source in sorted(available, key=lambda s: -available[s]):
        extra = min(shortfall, available[source] - quotas[source])
        quotas[source] += extra
        shortfall -= extra
    sampled, dropped = [], []
    for source, rows in sorted(by_source.items()):
        order = list(range(len(rows)))
        rng.shuffle(order)
        chosen = set(order[: quotas[source]])
        for index, row in enumerate(rows):
            (sampled if index in chosen else dropped).append(row)
    return sampled, dropped


def group_ids(records: list[QARecord]) -> list[int]:
    """Connected groups: rows sharing a normalised question or a document id end up in one group."""
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[str, int] = {}
    for index, record in enumerate(records):
        keys = [f"q:{dedupe_key(record.question)}"]
        if record.document_id:
            keys.append(f"d:{record.source}:{record.document_id}")
        for key in keys:
            if key in first_seen:
                parent[find(index)] = find(first_seen[key])
            else:
                first_seen[key] = index
    return [find(i) for i in range(len(records))]


SPLIT_NAMES = ("train", "validation", "test")


def grouped_split(records: list[QARecord], fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
    """Assign whole groups to train/validation/test, per source, to hit the fractions by row count."""
    groups = group_ids(records)
    members: dict[int, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    by_source: dict[str, list[int]] = defaultdict(list)
    for group, rows in members.items():
        majority = Counter(records[i].source for i in rows).most_common(1)[0][0]
        by_source[majority].append(group)
    rng = random.Random(seed)
    assignment: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for source in sorted(by_source):
        source_groups = sorted(by_source[source])
        rng.shuffle(source_groups)
        total = sum(len(members[g]) for g in source_groups)
        targets = [fraction * total for fraction in fractions]
        filled = [0, 0, 0]
        for group in source_groups:
            # the split furthest below its target (relative) takes the group
            deficits = [(targets[i] - filled[i]) / (targets[i] or 1) if targets[i] else -1.0 for i in range(3)]
            choice = max(range(3), key=lambda i: deficits[i])
            filled[choice] += len(members[group])
            assignment[SPLIT_NAMES[choice]].extend(members[group])
    return {name: sorted(rows) for name, rows in assignment.items()}
