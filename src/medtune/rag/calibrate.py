"""``medtune index calibrate``: choose the sources-only threshold (``--rag-min-score``) on a validation split.

For every question of a prepared split whose MedQuAD document is in the index, the best retrieved passage's cosine
is measured twice: with the question's own document in the index ("covered") and with it hidden ("not covered",
the case ``eval --rag-hide-own-document`` scores). A threshold between them decides when a sources-only answer
path says "the sources do not cover this question" instead of letting the model answer. The chosen threshold
maximises balanced accuracy (mean of covered-kept and hidden-abstained rates); ties go to the lower threshold,
which keeps more answers. Run it on the validation split: a threshold chosen on the test split is not a result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medtune.errors import UserError

#: candidate thresholds: cosine 0.30 .. 0.95 in steps of 0.01
CANDIDATES = tuple(round(0.30 + 0.01 * step, 2) for step in range(66))


@dataclass
class Calibration:
    """Best-passage cosines with the own document shown and hidden, and the chosen threshold."""

    index: str
    prepared: str
    split: str
    questions: int
    own_document_retrieved: float           # share of questions whose own document is in the top k when shown
    auc: float                               # ROC AUC of the best cosine for covered vs hidden
    threshold: float
    covered_kept: float                      # covered questions whose best passage reaches the threshold
    hidden_abstained: float                  # hidden-document questions under it
    table: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON)."""
        return asdict(self)


def choose_threshold(covered: list[float], hidden: list[float],
                     candidates: tuple[float, ...] = CANDIDATES) -> tuple[float, list[dict[str, float]]]:
    """Threshold with the best balanced accuracy (ties: the lowest) and the per-candidate table."""
    if not covered or not hidden:
        raise UserError("calibration needs questions both with and without their own document.")
    table = []
    for threshold in candidates:
        kept = sum(score >= threshold for score in covered) / len(covered)
        abstained = sum(score < threshold for score in hidden) / len(hidden)
        table.append({"threshold": threshold, "covered_kept": kept, "hidden_abstained": abstained,
                      "balanced_accuracy": (kept + abstained) / 2})
    best = max(table, key=lambda row: (round(row["balanced_accuracy"], 9), -row["threshold"]))
    return best["threshold"], table


def calibrate_min_score(index: str, prepared: str | Path, split: str = "validation", k: int = 4,
                        progress: bool = True) -> Calibration:
    """Measure covered vs hidden best-passage cosines on ``prepared``'s ``split`` and choose the threshold."""
    import json

    from sklearn.metrics import roc_auc_score
    from tqdm.auto import tqdm

    from medtune.evaluate.grounded import own_documents
    from medtune.rag.retriever import Retriever

    if split == "test":
        raise UserError("calibrate on the validation (or train) split: a threshold chosen on the test split makes "
                        "the test score a tuned figure.")
    file = Path(prepared).expanduser() / f"{split}.jsonl"
    if not file.is_file():
        raise UserError(f"{file}: not found; pass a folder written by `medtune prepare` and a split it has.")
    rows = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise UserError(f"{file}:{number}: not JSON ({error}); re-run `medtune prepare`.") from error
    retriever = Retriever(index)
    indexed = {str(chunk["document_id"]) for chunk in retriever.chunks}
    covered, hidden, found = [], [], 0
    usable = [(row, own_documents(row) & indexed) for row in rows]
    usable = [(row, own) for row, own in usable if own]
    if not usable:
        raise UserError(f"{file}: none of its {len(rows)} questions has its MedQuAD document in index {index!r}; "
                        "calibrate with the prepared data the index was built from.")
    for row, own in tqdm(usable, desc="calibrating", unit=" questions", disable=not progress):
        shown = retriever.retrieve(str(row["question"]), k)
        without = retriever.retrieve(str(row["question"]), k, exclude_documents=own)
        found += any(p.document_id in own for p in shown)
        covered.append(max((p.score for p in shown), default=0.0))
        hidden.append(max((p.score for p in without), default=0.0))
    threshold, table = choose_threshold(covered, hidden)
    chosen = next(row for row in table if row["threshold"] == threshold)
    auc = float(roc_auc_score([1] * len(covered) + [0] * len(hidden), covered + hidden))
    return Calibration(index=index, prepared=str(prepared), split=split, questions=len(usable),
                       own_document_retrieved=found / len(usable), auc=auc, threshold=threshold,
                       covered_kept=chosen["covered_kept"], hidden_abstained=chosen["hidden_abstained"], table=table)
