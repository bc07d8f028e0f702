"""Statistics and figures of a prepared folder: sources, focus areas, question types, lengths in chars and tokens."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from medtune.data.prepared import read_manifest


def _read_rows(prepared_dir: Path) -> list[dict[str, Any]]:
    """All rows of the three splits, each with its split name."""
    import json

    rows = []
    for split in ("train", "validation", "test"):
        path = prepared_dir / f"{split}.jsonl"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                rows.append({**json.loads(line), "split": split})
    return rows


def compute_stats(prepared_dir: Path, tokenizer: Any = None) -> dict[str, Any]:
    """Counts by source / focus area / question type / split and length lists (chars, and tokens if a tokenizer)."""
    read_manifest(prepared_dir)
    rows = _read_rows(prepared_dir)
    stats: dict[str, Any] = {
        "rows": len(rows),
        "by_split": Counter(r["split"] for r in rows),
        "by_source": Counter(r["source"] for r in rows),
        "by_focus_area": Counter(r["focus_area"] or "(none)" for r in rows),
        "by_question_type": Counter(r["question_type"] or "(none)" for r in rows),
        "question_chars": [len(r["question"]) for r in rows],
        "answer_chars": [len(r["answer"]) for r in rows],
    }
    if tokenizer is not None:
        stats["question_tokens"] = [len(ids) for ids in tokenizer([r["question"] for r in rows])["input_ids"]]
        stats["answer_tokens"] = [len(ids) for ids in tokenizer([r["answer"] for r in rows])["input_ids"]]
    return stats


def _bar(ax: Any, counts: Counter[str], title: str, top: int = 15) -> None:
    items = counts.most_common(top)[::-1]
    ax.barh([k[:40] for k, _ in items], [v for _, v in items], color="#2f7f8f")
    ax.set_title(title)


def write_figures(stats: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write PNG figures (distributions and length histograms) and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for key, title in (("by_source", "rows by source"), ("by_focus_area", "top focus areas"),
                       ("by_question_type", "question types")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        _bar(ax, stats[key], title)
        fig.tight_layout()
        path = out_dir / f"{key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    for unit in ("chars", "tokens"):
        if f"question_{unit}" not in stats:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, field in zip(axes, ("question", "answer"), strict=True):
            ax.hist(stats[f"{field}_{unit}"], bins=40, color="#c0504d" if field == "answer" else "#4f81bd")
            ax.set_title(f"{field} length ({unit})")
            ax.set_xlabel(unit)
        fig.tight_layout()
        path = out_dir / f"lengths_{unit}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
