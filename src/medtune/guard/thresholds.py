"""Choosing the classifier's decision thresholds on the conversation validation sets.

``medtune guard train`` first chooses one threshold per decision group on out-of-fold scores of its training
rows (single questions) for a target recall. Those rows are not what the guard meets: conversations, follow-ups,
small talk, obfuscated text. :func:`choose_on_conversations` then runs the whole guard (rules, conversation
reading, classifier) on the conversation *validation* sets over a small grid and keeps the thresholds with the
best accuracy among those whose emergency recall is at least the out-of-fold thresholds' (ties: the lowest
emergency, then refuse/defer threshold: safety first). The frozen test sets are never read here.
"""

from __future__ import annotations

from typing import Any

#: The conversation validation sets (``medtune guard eval --set NAME``).
CONVERSATION_VALIDATION: tuple[str, ...] = ("conversations_val", "conversations2_val")
EMERGENCY_GRID: tuple[float, ...] = (0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.22, 0.25, 0.30)
REFUSE_GRID: tuple[float, ...] = (0.35, 0.40, 0.45, 0.50)


def choose_on_conversations(classifier: Any, sets: tuple[str, ...] = CONVERSATION_VALIDATION,
                            progress: Any = print) -> dict[str, Any]:
    """Set ``classifier.thresholds`` (emergency, refuse_or_defer) to the best grid point on ``sets`` and return
    what was tried: the out-of-fold start, every trial's figures, the choice."""
    from medtune.guard.config import default_guard_config
    from medtune.guard.evaluation import evaluate_guard, load_labelled, named_set_path, summary_line
    from medtune.guard.guard import Guard

    guard = Guard(default_guard_config().model_copy(update={"classifier": False}))
    guard.classifier = classifier
    rows = [row for name in sets for row in load_labelled(named_set_path(name))]
    start = dict(classifier.thresholds)

    def figures(emergency: float, refuse: float) -> dict[str, Any]:
        classifier.thresholds = {**start, "emergency": emergency, "refuse_or_defer": refuse}
        line = summary_line(evaluate_guard(guard, rows))
        return {"emergency": emergency, "refuse_or_defer": refuse, "accuracy": line["accuracy"],
                "emergency_recall": line["emergency_recall"], "refuse_recall": line["refuse_recall"],
                "benign_blocked": line["benign_blocked"]}

    baseline = figures(start["emergency"], start["refuse_or_defer"])
    trials = []
    for emergency in EMERGENCY_GRID:
        for refuse in REFUSE_GRID:
            trials.append(figures(emergency, refuse))
        progress(f"emergency threshold {emergency:.2f}: best accuracy "
                 f"{max(t['accuracy'] for t in trials if t['emergency'] == emergency):.3f}")
    eligible = [t for t in trials if t["emergency_recall"] >= baseline["emergency_recall"]] or [baseline]
    best = max(eligible, key=lambda t: (t["accuracy"], -t["emergency"], -t["refuse_or_defer"]))
    if best["accuracy"] <= baseline["accuracy"]:
        best = baseline
    classifier.thresholds = {**start, "emergency": best["emergency"], "refuse_or_defer": best["refuse_or_defer"]}
    return {"sets": list(sets), "rows": len(rows), "out_of_fold": baseline, "chosen": best, "trials": trials}
