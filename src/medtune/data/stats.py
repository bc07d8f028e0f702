"""``medtune data stats``: distributions of a prepared folder (source, focus area, question type, lengths in
characters and tokens) as tables and PNG figures (matplotlib, Agg backend) in ``OUT/figures``."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from medtune.data.prepared import load_split_rows, read_manifest
from medtune.data.splitting import SPLITS


def _summary(values: list[int]) -> dict[str, float]:
    """count/mean/median/p95/max of a list of lengths."""
    if not values:
        return {"count": 0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0.0}
    ordered = sorted(values)
    return {"count": len(ordered), "mean": round(sum(ordered) / len(ordered), 1),
            "median": float(statistics.median(ordered)),
            "p95": float(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]), "max": float(ordered[-1])}


def compute_stats(folder: str | Path, tokenizer: Any = None) -> dict[str, Any]:
    """Count rows by split/source/focus area/question type and measure question/answer lengths.

    Token lengths are measured with ``tokenizer`` when given (else left out).
    """
    read_manifest(folder)
    rows = {split: load_split_rows(folder, split) for split in SPLITS}
    every = [row for split in SPLITS for row in rows[split]]
    stats: dict[str, Any] = {
        "rows": {split: len(rows[split]) for split in SPLITS},
        "by_source": {split: dict(Counter(r["source"] for r in rows[split])) for split in SPLITS},
        "focus_area": dict(Counter(r["focus_area"] or "(none)" for r in every).most_common()),
        "question_type": dict(Counter(r["question_type"] or "(none)" for r in every).most_common()),
        "lengths": {"question_chars": [len(r["question"]) for r in every],
                    "answer_chars": [len(r["answer"]) for r in every]},
    }
    if tokenizer is not None and every:
        for field in ("question", "answer"):
            encoded = tokenizer([r[field] for r in every], add_special_tokens=False)["input_ids"]
            stats["lengths"][f"{field}_tokens"] = [len(ids) for ids in encoded]
    stats["length_summary"] = {name: _summary(values) for name, values in stats["lengths"].items()}
    return stats


def _bar(ax: Any, counts: dict[str, int], title: str, top: int = 20) -> None:
    """Horizontal bar chart of the ``top`` largest counts."""
    items = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    ax.barh([k[:40] for k, _ in items], [v for _, v in items], color="#3b7dd8")
    ax.set_title(title)
    ax.set_xlabel("rows")


def make_figures(folder: str | Path, stats: dict[str, Any]) -> list[Path]:
    """Write the PNG figures into ``folder/figures`` and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(folder) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(9, 5))
    sources = sorted({s for split in SPLITS for s in stats["by_source"][split]})
    left = [0] * len(sources)
    for split, color in zip(SPLITS, ("#3b7dd8", "#f0a030", "#50a050"), strict=True):
        values = [stats["by_source"][split].get(s, 0) for s in sources]
        ax.barh(sources, values, left=left, label=split, color=color)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_title("rows by source and split")
    ax.legend()
    written.append(_save(fig, out / "by_source.png"))

    for key, title in (("focus_area", "top focus areas"), ("question_type", "question types")):
        fig, ax = plt.subplots(figsize=(9, 6))
        _bar(ax, stats[key], title)
        written.append(_save(fig, out / f"{key}.png"))

    for field in ("question", "answer"):
        units = [u for u in ("chars", "tokens") if f"{field}_{u}" in stats["lengths"]]
        fig, axes = plt.subplots(1, len(units), figsize=(6 * len(units), 4), squeeze=False)
        for ax, unit in zip(axes[0], units, strict=True):
            ax.hist(stats["lengths"][f"{field}_{unit}"], bins=50, color="#3b7dd8")
            ax.set_title(f"{field} length ({unit})")
            ax.set_xlabel(unit)
            ax.set_ylabel("rows")
        written.append(_save(fig, out / f"{field}_length.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    """Save and close a figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
