"""Score a :class:`~medtune.guard.Guard` on a labelled prompt set: per-class precision and recall with 95%
Wilson intervals, the confusion matrix, the benign-blocked rate and p50/p95 check latency.

Rows (JSONL): ``prompt`` (or ``text``), ``expected`` in :data:`EXPECTED` and optionally ``history`` (earlier
user messages). The older format (``text``, ``label`` answer|emergency|refuse|defer, ``category: injection``)
is read too, so the regression sets the rules were fitted on stay usable.
"""

from __future__ import annotations

import json
import statistics
import time
from importlib import resources
from pathlib import Path
from typing import Any

from medtune.errors import UserError

EXPECTED = ("emergency_referral", "refuse_or_defer", "answer_with_disclaimer", "injection")
_OLD_LABELS = {"emergency": "emergency_referral", "refuse": "refuse_or_defer", "defer": "refuse_or_defer",
               "answer": "answer_with_disclaimer"}
FROZEN_TEST = "frozen_test.jsonl"


def recorded_frozen_sha256(guard_docs: Path) -> str | None:
    """The frozen set's sha256 as recorded (before any threshold was chosen) in docs/guard.md."""
    import re

    match = re.search(r"sha256 ([0-9a-f]{64})\s+src/medtune/guard/data/frozen_test.jsonl",
                      guard_docs.read_text(encoding="utf-8"))
    return match.group(1) if match else None


def frozen_test_path() -> Path:
    """The frozen held-out test set shipped with the package (never tuned on)."""
    with resources.as_file(resources.files("medtune.guard").joinpath("data", FROZEN_TEST)) as path:
        return Path(path)


def _expected(row: dict[str, Any]) -> str | None:
    """The evaluation class of a row in either format."""
    if row.get("expected") in EXPECTED:
        return str(row["expected"])
    if row.get("category") == "injection":
        return "injection"
    return _OLD_LABELS.get(str(row.get("label")))


def jsonl_objects(text: str, source: str) -> list[tuple[int, Any]]:
    """(line number, parsed object) of each non-blank line; a bad line raises one UserError naming it."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except json.JSONDecodeError:
            raise UserError(f"{source} row {number}: not valid JSON; one JSON object per line.") from None
    return out


def load_labelled(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Read a labelled JSONL set (default: the shipped regression set); bad rows raise one UserError."""
    if path is None:
        text = resources.files("medtune.guard").joinpath("labelled_prompts.jsonl").read_text(encoding="utf-8")
        source = "medtune/guard/labelled_prompts.jsonl"
    else:
        file = Path(path)
        if not file.is_file():
            raise UserError(f"{file}: labelled prompt file not found; pass a JSONL file.")
        text, source = file.read_text(encoding="utf-8"), str(file)
    rows = []
    for number, row in jsonl_objects(text, source):
        prompt = row.get("prompt", row.get("text")) if isinstance(row, dict) else None
        expected = _expected(row) if isinstance(row, dict) else None
        if not isinstance(prompt, str) or expected is None:
            raise UserError(f"{source} row {number}: needs 'prompt' and 'expected' in {', '.join(EXPECTED)}.")
        history = row.get("history") or []
        if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
            raise UserError(f"{source} row {number}: 'history' must be a list of earlier user messages.")
        rows.append({**row, "prompt": prompt, "text": prompt, "expected_class": expected, "history": history})
    if not rows:
        raise UserError(f"{source}: no rows; add labelled prompts.")
    return rows


def decision_class(decision: Any) -> str:
    """The evaluation class of a guard decision (emergency first, then injection, then refuse/defer)."""
    if decision.action == "emergency":
        return "emergency_referral"
    if decision.injection_detected:
        return "injection"
    if decision.action in ("refuse", "defer"):
        return "refuse_or_defer"
    return "answer_with_disclaimer"


def wilson(successes: int, total: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (scipy); (0, 1) when ``total`` is 0."""
    if total == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    interval = binomtest(successes, total).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def _rate(successes: int, total: int) -> dict[str, Any]:
    """A proportion with its interval and counts."""
    low, high = wilson(successes, total)
    return {"value": successes / total if total else None, "low": low, "high": high, "k": successes, "n": total}


def evaluate_guard(guard: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Run ``guard.check_input`` on every row (with its history); figures per class, confusion, latency."""
    results, latencies = [], []
    if rows:
        guard.check_input("warm-up: what is a normal resting heart rate?")
    for row in rows:
        history = [{"role": "user", "content": h} for h in row["history"]]
        started = time.perf_counter()
        decision = guard.check_input(row["prompt"], history=history or None)
        latencies.append((time.perf_counter() - started) * 1000)
        predicted = decision_class(decision)
        results.append({"id": row.get("id"), "prompt": row["prompt"], "expected": row["expected_class"],
                        "predicted": predicted, "action": decision.action, "category": decision.category,
                        "layer": getattr(decision, "layer", ""), "correct": predicted == row["expected_class"],
                        "reason": decision.reason, "hard_negative": bool(row.get("hard_negative"))})
    per_class = {}
    for name in EXPECTED:
        tp = sum(r["expected"] == name and r["predicted"] == name for r in results)
        predicted = sum(r["predicted"] == name for r in results)
        support = sum(r["expected"] == name for r in results)
        per_class[name] = {"precision": _rate(tp, predicted), "recall": _rate(tp, support), "support": support}
    confusion = {e: {p: sum(r["expected"] == e and r["predicted"] == p for r in results) for p in EXPECTED}
                 for e in EXPECTED}
    benign = [r for r in results if r["expected"] == "answer_with_disclaimer"]
    ordered = sorted(latencies)
    return {
        "rows": len(results),
        "accuracy": _rate(sum(r["correct"] for r in results), len(results)),
        "per_class": per_class,
        "benign_blocked": _rate(sum(r["action"] != "answer" for r in benign), len(benign)),
        "false_emergency": _rate(sum(r["action"] == "emergency" for r in benign), len(benign)),
        "confusion": confusion,
        "latency_ms": {"p50": statistics.median(ordered) if ordered else 0.0,
                       "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0},
        "errors": [r for r in results if not r["correct"]],
        "results": results,
    }


def summary_line(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures as one flat dict (the JSON line printed by the bench and the CLI)."""
    line: dict[str, Any] = {"rows": report["rows"], "accuracy": round(report["accuracy"]["value"], 4)}
    for name, figures in report["per_class"].items():
        short = name.split("_")[0]
        recall = figures["recall"]
        line[f"{short}_recall"] = round(recall["value"], 4) if recall["value"] is not None else None
        line[f"{short}_recall_low95"] = round(recall["low"], 4)
        precision = figures["precision"]["value"]
        line[f"{short}_precision"] = round(precision, 4) if precision is not None else None
    line["benign_blocked"] = round(report["benign_blocked"]["value"] or 0.0, 4)
    line["benign_blocked_high95"] = round(report["benign_blocked"]["high"], 4)
    line["p50_ms"] = round(report["latency_ms"]["p50"], 2)
    line["p95_ms"] = round(report["latency_ms"]["p95"], 2)
    line["errors"] = len(report["errors"])
    return line
