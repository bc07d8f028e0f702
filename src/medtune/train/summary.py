"""``summary.json`` and ``loss_curve.png`` of a run, computed from ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Return the records of a ``metrics.jsonl`` file (empty list when missing)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summarize(
    records: list[dict[str, Any]],
    *,
    steps: int,
    seconds: float,
    tokens: int,
    session_tokens: int,
    peak_memory_bytes: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the summary: train loss stats, val loss per epoch, steps, seconds, tokens/s, memory.

    ``tokens`` counts every session of the run; ``seconds`` and ``session_tokens`` only the last session
    (a resumed run starts from a checkpoint), so tokens/s is the last session's rate.
    """
    losses = [r["loss"] for r in records if r.get("type") == "train"]
    evals = [r for r in records if r.get("type") == "eval"]
    per_epoch: dict[str, float] = {}
    for record in evals:
        epoch = record["epoch"]
        if abs(epoch - round(epoch)) < 1e-3 and round(epoch) >= 1:
            per_epoch[str(round(epoch))] = record["val_loss"]
    return {
        "initial_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "min_loss": min(losses) if losses else None,
        "mean_loss": sum(losses) / len(losses) if losses else None,
        "val_loss_per_epoch": per_epoch,
        "final_val_loss": evals[-1]["val_loss"] if evals else None,
        "val_losses": [{"step": r["step"], "epoch": r["epoch"], "val_loss": r["val_loss"]} for r in evals],
        "steps": steps,
        "seconds": round(seconds, 2),
        "tokens": tokens,
        "session_tokens": session_tokens,
        "tokens_per_s": round(session_tokens / seconds, 2) if seconds > 0 else None,
        "peak_memory_bytes": peak_memory_bytes,
        **(extra or {}),
    }


def plot_loss_curve(records: list[dict[str, Any]], out: Path, title: str = "") -> Path:
    """Draw training loss (per logged step) and validation loss (markers) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if r.get("type") == "train"]
    evals = [(r["step"], r["val_loss"]) for r in records if r.get("type") == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o--", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (answer tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def peak_memory_bytes() -> int:
    """Peak memory of this process: CUDA max allocated when on GPU, else the peak resident set size."""
    import resource

    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
