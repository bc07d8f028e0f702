"""Score a :class:`~medtune.guard.Guard` on a labelled prompt set: per-class precision and recall with 95%
Wilson intervals, the confusion matrix, the benign-blocked rate and p50/p95 check latency.

Rows (JSONL), three formats:

- ``prompt`` (or ``text``), ``expected`` in :data:`EXPECTED` and optionally ``history`` (earlier user messages);
- conversations (issue 31): ``messages`` (``{"role": "user"|"assistant", "content": ...}``, the last one a user
  turn), ``expected`` in :data:`EXPECTED_ALL` and ``family``. The last message is the question; every earlier
  message, the assistant's (client-written) turns included, is passed to the guard as history;
- the older ``text``, ``label`` answer|emergency|refuse|defer, ``category: injection`` rows, so the regression
  sets the rules were fitted on stay usable.

``answer_with_emergency_line`` (education about emergencies) is scored as an answer: a decision that answers,
with or without an emergency line, is correct, and an emergency referral counts as a benign prompt blocked. That
class, its confusion row/column and per-family figures appear only for sets that use them, so the figures
printed for the older sets are unchanged.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from medtune.errors import UserError

EXPECTED = ("emergency_referral", "refuse_or_defer", "answer_with_disclaimer", "injection")
#: Every class a row may expect: :data:`EXPECTED` plus education about emergencies (answer, emergency line first).
EXPECTED_ALL = (*EXPECTED, "answer_with_emergency_line")
#: Classes in which the right decision is to answer; an answer of either kind is correct for both.
ANSWER_CLASSES = ("answer_with_disclaimer", "answer_with_emergency_line")
SHORT_NAMES = {"emergency_referral": "emergency", "refuse_or_defer": "refuse", "answer_with_disclaimer": "answer",
               "injection": "injection", "answer_with_emergency_line": "answer_line"}
ROLES = ("user", "assistant")
_OLD_LABELS = {"emergency": "emergency_referral", "refuse": "refuse_or_defer", "defer": "refuse_or_defer",
               "answer": "answer_with_disclaimer"}
FROZEN_TEST = "frozen_test.jsonl"
#: Named sets shipped in ``medtune/guard/data`` (``medtune guard eval --set NAME``).
NAMED_SETS = {"frozen": FROZEN_TEST, "conversations": "conversations_test.jsonl",
              "conversations_val": "conversations_val.jsonl", "conversations2": "conversations_test2.jsonl",
              "conversations2_val": "conversations_val2.jsonl", "ordinary_val": "ordinary_val.jsonl"}


def recorded_frozen_sha256(guard_docs: Path, name: str = FROZEN_TEST) -> str | None:
    """A frozen set's sha256 as recorded (before any threshold was chosen) in docs/guard.md."""
    import re

    match = re.search(r"sha256 ([0-9a-f]{64})\s+src/medtune/guard/data/" + re.escape(name),
                      guard_docs.read_text(encoding="utf-8"))
    return match.group(1) if match else None


def data_path(name: str) -> Path:
    """A file shipped in ``medtune/guard/data``."""
    with resources.as_file(resources.files("medtune.guard").joinpath("data", name)) as path:
        return Path(path)


def frozen_test_path() -> Path:
    """The frozen held-out test set shipped with the package (never tuned on)."""
    return data_path(FROZEN_TEST)


def named_set_path(name: str) -> Path:
    """The shipped set called ``name`` (:data:`NAMED_SETS`); an unknown name raises one UserError."""
    if name not in NAMED_SETS:
        raise UserError(f"--set {name}: unknown set; use one of {', '.join(NAMED_SETS)} or pass a JSONL file.")
    return data_path(NAMED_SETS[name])


def _expected(row: dict[str, Any]) -> str | None:
    """The evaluation class of a row in either format."""
    if row.get("expected") in EXPECTED_ALL:
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
        if isinstance(row, dict) and "messages" in row:
            rows.append(_conversation_row(row, source, number))
            continue
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


def _conversation_row(row: dict[str, Any], source: str, number: int) -> dict[str, Any]:
    """A ``messages`` row: the last (user) message is the prompt, every earlier message the history."""
    messages = row["messages"]
    where = f"{source} row {number}"
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages):
        raise UserError(f"{where}: 'messages' must be a non-empty list of {{\"role\": user|assistant, "
                        "\"content\": text}.")
    if messages[-1]["role"] != "user":
        raise UserError(f"{where}: the last message must be a user turn (the one the guard decides on).")
    expected = row.get("expected")
    if expected not in EXPECTED_ALL:
        raise UserError(f"{where}: needs 'expected' in {', '.join(EXPECTED_ALL)}.")
    prompt = messages[-1]["content"]
    turns = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
    return {**row, "prompt": prompt, "text": prompt, "expected_class": expected, "turns": turns,
            "history": [t["content"] for t in turns if t["role"] == "user"]}


def decision_class(decision: Any) -> str:
    """The evaluation class of a guard decision (emergency first, then injection, then refuse/defer).

    An answer is ``answer_with_emergency_line`` when the decision says it carries an emergency line (a truthy
    ``emergency_line`` attribute, or a category starting with ``answer:emergency_line``); the guard of
    2026-12-07 has neither, so its answers are all ``answer_with_disclaimer``.
    """
    if decision.action == "emergency":
        return "emergency_referral"
    if decision.injection_detected:
        return "injection"
    if decision.action in ("refuse", "defer"):
        return "refuse_or_defer"
    if getattr(decision, "emergency_line", None) or str(decision.category).startswith("answer:emergency_line"):
        return "answer_with_emergency_line"
    return "answer_with_disclaimer"


def is_correct(expected: str, predicted: str) -> bool:
    """Equal classes, or an answer of either kind where an answer is expected."""
    return predicted == expected or (expected in ANSWER_CLASSES and predicted in ANSWER_CLASSES)


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
    """Check every row's last message in its conversation (:func:`medtune.guard.conversation.check_conversation`,
    as the Assistant and the server do); figures per class, confusion, latency.

    The history is the row's ``turns`` (every earlier message, assistant turns included) or, for the older
    formats, its earlier user messages. Rows with a ``family`` also get per-family accuracy.
    """
    from medtune.guard.conversation import check_conversation

    results, latencies = [], []
    if rows:
        guard.check_input("warm-up: what is a normal resting heart rate?")
    for row in rows:
        history = row.get("turns") or [{"role": "user", "content": h} for h in row["history"]]
        started = time.perf_counter()
        # the conversation check the Assistant and the server run: every turn, client-written replies screened
        decision = check_conversation(guard, [*history, {"role": "user", "content": row["prompt"]}]).decision
        latencies.append((time.perf_counter() - started) * 1000)
        predicted = decision_class(decision)
        results.append({"id": row.get("id"), "prompt": row["prompt"], "expected": row["expected_class"],
                        "predicted": predicted, "action": decision.action, "category": decision.category,
                        "layer": getattr(decision, "layer", ""),
                        "correct": is_correct(row["expected_class"], predicted),
                        "reason": decision.reason, "hard_negative": bool(row.get("hard_negative")),
                        "family": row.get("family")})
    used = {r["expected"] for r in results} | {r["predicted"] for r in results}
    classes = [name for name in EXPECTED_ALL if name in EXPECTED or name in used]
    per_class = {}
    for name in classes:
        tp = sum(r["expected"] == name and r["correct"] for r in results)
        predicted_hits = sum(r["predicted"] == name and r["correct"] for r in results)
        predicted = sum(r["predicted"] == name for r in results)
        support = sum(r["expected"] == name for r in results)
        per_class[name] = {"precision": _rate(predicted_hits, predicted), "recall": _rate(tp, support),
                           "support": support}
    confusion = {e: {p: sum(r["expected"] == e and r["predicted"] == p for r in results) for p in classes}
                 for e in classes}
    benign = [r for r in results if r["expected"] in ANSWER_CLASSES]
    ordered = sorted(latencies)
    report = {
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
    if any(r["family"] for r in results):
        report["per_family"] = per_family(results)
    return report


def per_family(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Accuracy (95% Wilson) of each family, in first-seen order, with its expected classes.

    ``risk_not_answered``: of the family's emergency, refuse/defer and injection rows, the share that any
    non-answer decision kept from the model (a referral where a refusal was expected still protects the user).
    """
    families: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        families.setdefault(str(r["family"] or "-"), []).append(r)
    out = {}
    for name, group in families.items():
        risk = [r for r in group if r["expected"] not in ANSWER_CLASSES]
        out[name] = {"accuracy": _rate(sum(r["correct"] for r in group), len(group)),
                     "risk_not_answered": _rate(sum(r["predicted"] not in ANSWER_CLASSES for r in risk), len(risk)),
                     "expected": dict(Counter(r["expected"] for r in group))}
    return out


def summary_line(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures as one flat dict (the JSON line printed by the bench and the CLI)."""
    line: dict[str, Any] = {"rows": report["rows"], "accuracy": round(report["accuracy"]["value"], 4)}
    for name, figures in report["per_class"].items():
        short = SHORT_NAMES.get(name, name.split("_")[0])
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
    if "per_family" in report:
        line["family_accuracy"] = {name: round(f["accuracy"]["value"], 4) for name, f in report["per_family"].items()}
        line["family_accuracy_low95"] = {name: round(f["accuracy"]["low"], 4)
                                         for name, f in report["per_family"].items()}
    return line
