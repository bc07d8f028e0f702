"""Leakage-safe split: train/validation/test stratified by source and GROUPED, so one normalised question (and one
MedQuAD document, whose answers repeat across question types) never appears in two splits."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from medtune.data.cleaning import normalized_key

SPLITS: tuple[str, ...] = ("train", "validation", "test")


def _find(parent: dict[str, str], key: str) -> str:
    """Union-find root with path halving."""
    while parent[key] != key:
        parent[key] = parent[parent[key]]
        key = parent[key]
    return key


def assign_groups(rows: list[dict[str, Any]]) -> list[str]:
    """Give every row a group id: rows sharing a normalised question or a provenance ``group`` are one group."""
    parent: dict[str, str] = {}
    row_keys: list[list[str]] = []
    for row in rows:
        keys = ["q:" + (row.get("_qkey") or normalized_key(row["question"]))]
        if row.get("group"):
            keys.append("g:" + row["group"])
        row_keys.append(keys)
        for key in keys:
            parent.setdefault(key, key)
        root_a, root_b = _find(parent, keys[0]), _find(parent, keys[-1])
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    return ["g" + hashlib.sha1(_find(parent, keys[0]).encode()).hexdigest()[:12] for keys in row_keys]


def split_rows(rows: list[dict[str, Any]], fractions: tuple[float, float, float],
               seed: int) -> dict[str, list[dict[str, Any]]]:
    """Split rows into train/validation/test; sets each row's ``group`` to its leakage group id.

    Within each source, whole groups are shuffled (seeded) and each goes to the split furthest below its target
    share, so the split sizes follow ``fractions`` closely even with large groups.
    """
    groups = assign_groups(rows)
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        rows[index]["group"] = group
        members.setdefault(group, []).append(index)
    by_source: dict[str, list[str]] = {}
    for group, indices in members.items():
        by_source.setdefault(rows[indices[0]]["source"], []).append(group)
    rng = random.Random(seed)
    assignment: dict[str, str] = {}
    for source in sorted(by_source):
        source_groups = sorted(by_source[source])
        rng.shuffle(source_groups)
        total = sum(len(members[g]) for g in source_groups)
        filled = dict.fromkeys(SPLITS, 0)
        for group in source_groups:
            name = max(SPLITS, key=lambda s: (fractions[SPLITS.index(s)] * total - filled[s],
                                              -SPLITS.index(s)))
            assignment[group] = name
            filled[name] += len(members[group])
    result: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for index, row in enumerate(rows):
        result[assignment[groups[index]]].append(row)
    return result
