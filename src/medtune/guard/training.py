"""``medtune guard train``: fit the intent classifier on labelled prompts, choose thresholds on validation.

Rows (JSONL): ``text`` (or ``prompt``), ``label`` in :data:`~medtune.guard.classifier.CLASSES`, ``family`` (all
paraphrases of one scenario share it; the split never separates a family) and ``kind`` for emergencies.
The validation split (20% of the families) chooses the regularisation strength and one threshold per risk
class; the frozen test set is never read here.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from medtune.errors import UserError
from medtune.guard.classifier import (
    CLASSES,
    EMERGENCY_KINDS,
    GROUPS,
    IntentClassifier,
    flagged_classes,
    group_probability,
)
from medtune.guard.evaluation import jsonl_objects

#: Recall each risk class must keep (rules OR classifier) when its threshold is chosen (emergency: safety first).
TARGET_RECALL = {"emergency": 0.99, "refuse_or_defer": 0.92, "injection": 0.93}


TRAINING_FILES = ("train_emergency.jsonl", "train_other.jsonl", "train_imperative.jsonl", "train_extra.jsonl")
#: Benign small talk, chatty messages, steering follow-ups and ordinary dosing questions (520 rows, 2026-12-08).
#: Not yet in the default set: trained with it, the classifier reads small talk right (benign prompts behind a
#: 150-word preamble blocked 57/60 -> 2/60) but its out-of-fold emergency threshold falls 0.223 -> 0.114 and it
#: over-refers ordinary questions (docs/guard.md). Pass it to `medtune guard train` to try it.
EXTRA_TRAINING_FILES = ("train_smalltalk.jsonl",)


def default_training_files() -> list[Path]:
    """The labelled training files shipped in ``medtune/guard/data`` (the frozen test set is not one)."""
    from importlib import resources

    folder = resources.files("medtune.guard").joinpath("data")
    return [Path(str(folder.joinpath(name))) for name in TRAINING_FILES]


def load_training_rows(paths: list[Path]) -> list[dict[str, Any]]:
    """Read labelled JSONL files; a bad row raises one UserError naming the file and the line."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path}: training file not found; pass JSONL files with 'text' and 'label'.")
        for number, row in jsonl_objects(path.read_text(encoding="utf-8"), str(path)):
            text = row.get("text", row.get("prompt")) if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip() or row.get("label") not in CLASSES:
                raise UserError(f"{path} row {number}: needs 'text' and 'label' in {', '.join(CLASSES)}.")
            if row["label"] == "emergency" and row.get("kind") not in EMERGENCY_KINDS:
                raise UserError(f"{path} row {number}: an emergency needs 'kind' in {', '.join(EMERGENCY_KINDS)}.")
            family = str(row.get("family") or f"{path.stem}:{number}")
            rows.append({"text": text.strip(), "label": row["label"], "kind": row.get("kind"),
                         "family": f"{path.stem}/{family}", "hard_negative": bool(row.get("hard_negative"))})
    if not rows:
        raise UserError("no training rows; pass JSONL files with 'text' and 'label'.")
    return rows


def split_by_family(rows: list[dict[str, Any]], validation: float = 0.2,
                    seed: int = 13) -> tuple[list[int], list[int]]:
    """Indices of train and validation rows; whole families go to one side (sklearn GroupShuffleSplit)."""
    from sklearn.model_selection import GroupShuffleSplit

    splitter = GroupShuffleSplit(n_splits=1, test_size=validation, random_state=seed)
    train, val = next(splitter.split(rows, groups=[r["family"] for r in rows]))
    return sorted(int(i) for i in train), sorted(int(i) for i in val)


def _fit_head(x: Any, y: list[str], c: float) -> Any:
    """A class-balanced multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(x, y)


def choose_threshold(scores: list[float], positive: list[bool], target_recall: float) -> float:
    """The highest threshold whose recall on the positives is at least ``target_recall`` (capped at 0.5)."""
    positives = sorted((s for s, p in zip(scores, positive, strict=True) if p), reverse=True)
    if not positives:
        return 0.5
    needed = max(1, math.ceil(target_recall * len(positives)))
    return float(min(0.5, positives[needed - 1] - 1e-6))


def _group_of(label: str) -> str | None:
    """The decision group of a class (None for benign)."""
    return next((group for group, members in GROUPS.items() if label in members), None)


def class_figures(flagged: list[set[str]], labels: list[str]) -> dict[str, dict[str, float]]:
    """Precision and recall of each decision group (a message may carry several flags, given as classes)."""
    out = {}
    groups = [{_group_of(f) for f in flags} for flags in flagged]
    truth = [_group_of(y) for y in labels]
    for name in GROUPS:
        tp = sum(name in g and t == name for g, t in zip(groups, truth, strict=True))
        predicted = sum(name in g for g in groups)
        support = truth.count(name)
        out[name] = {"precision": round(tp / predicted, 4) if predicted else 1.0,
                     "recall": round(tp / support, 4) if support else 1.0, "support": support}
    benign = [g for g, t in zip(groups, truth, strict=True) if t is None]
    out["benign"] = {"flagged_rate": round(sum(bool(g) for g in benign) / max(1, len(benign)), 4),
                     "support": len(benign)}
    return out


def ngram_vectorizer() -> Any:
    """Word 1-2-grams and character 2-5-grams (within words), TF-IDF with sublinear counts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union

    return make_union(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                      TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True))


#: Head settings tried on validation: (C, embedding weight); weight None = embeddings only, 0 = n-grams only.
GRID: tuple[tuple[float, float | None], ...] = ((4.0, 0.5), (16.0, 0.5), (16.0, 1.0), (16.0, None), (16.0, 0.0))


def _fit_model(texts: list[str], x: Any, y: list[str], rows: list[dict[str, Any]], c: float,
               weight: float | None, encoder: str) -> IntentClassifier:
    """Fit the intent head and the kind head on the given training rows."""
    vectorizer = ngram_vectorizer().fit(texts) if weight is not None else None
    model = IntentClassifier(None, None, {}, encoder, vectorizer=vectorizer,
                             embedding_weight=weight if weight is not None else 1.0)
    features = model.features(texts, x)
    model.head = _fit_head(features, y, c)
    model.classes = [str(k) for k in model.head.classes_]
    emergency = [i for i, label in enumerate(y) if label == "emergency"]
    model.kind_head = _fit_head(features[emergency], [rows[i]["kind"] for i in emergency], c)
    return model


def _out_of_fold(rows: list[dict[str, Any]], texts: list[str], x: Any, c: float, weight: float | None,
                 encoder: str, seed: int, progress: Any, folds: int = 5) -> tuple[dict[str, float], dict[str, Any],
                                                                                  float]:
    """Thresholds and figures from out-of-fold scores (sklearn GroupKFold over families, shuffled by ``seed``)."""
    from sklearn.model_selection import GroupKFold

    scores: list[Any] = [None] * len(rows)
    labels = [r["label"] for r in rows]
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (train, held) in enumerate(splitter.split(texts, groups=[r["family"] for r in rows]), 1):
        model = _fit_model([texts[i] for i in train], x[train], [labels[i] for i in train], [rows[i] for i in train],
                           c, weight, encoder)
        for i, score in zip(held, model.score_parts([[texts[i]] for i in held], x[held]), strict=True):
            scores[i] = score
        progress(f"out-of-fold scores: fold {fold}/{folds}")
    return _thresholds_from_scores(scores, rows)


def rule_flags(text: str) -> set[str]:
    """The risk classes the guard's own rule layer assigns to ``text`` (sanitizer and rules, no classifier): the
    classifier's thresholds are chosen for the recall of rules OR classifier, the way the policy combines them."""
    signals = _rules_only_guard()._signals(text)
    return set(signals.rule_hits) | ({"injection"} if signals.injected else set())


@lru_cache(maxsize=1)
def _rules_only_guard() -> Any:
    """The default guard without its classifier."""
    from medtune.guard.config import default_guard_config
    from medtune.guard.guard import Guard

    return Guard(default_guard_config().model_copy(update={"classifier": False}))


def _thresholds_from_scores(scores: list[Any], rows: list[dict[str, Any]]) -> tuple[dict[str, float],
                                                                                    dict[str, Any], float]:
    """Per-class thresholds for the target recalls of rules OR classifier, figures at those thresholds (rules
    included), emergency-kind accuracy."""
    from sklearn.metrics import roc_auc_score

    labels = [r["label"] for r in rows]
    ruled = [rule_flags(r["text"]) for r in rows]
    thresholds = {}
    for name, members in GROUPS.items():
        positives = [y in members for y in labels]
        by_rule = [bool(set(members) & f) for f in ruled]
        caught = sum(p and r for p, r in zip(positives, by_rule, strict=True))
        rest = [(group_probability(s.probs, name), p and not r)
                for s, p, r in zip(scores, positives, by_rule, strict=True)]
        # the classifier must find enough of the positives the rules miss to reach the target recall overall
        needed = max(0.0, TARGET_RECALL[name] * sum(positives) - caught)
        missing = sum(p for _, p in rest)
        target = min(1.0, needed / missing) if missing else 0.0
        thresholds[name] = choose_threshold([v for v, _ in rest], [p for _, p in rest], target) if target else 0.5
    flagged = [set(flagged_classes(s.probs, thresholds)) | f for s, f in zip(scores, ruled, strict=True)]
    figures = class_figures(flagged, labels)
    for name, members in GROUPS.items():
        figures[name]["auc"] = round(float(roc_auc_score([y in members for y in labels],
                                                         [group_probability(s.probs, name) for s in scores])), 4)
    kinds = [(s.kind, r["kind"]) for s, r in zip(scores, rows, strict=True) if r["label"] == "emergency"]
    return thresholds, figures, round(sum(a == b for a, b in kinds) / max(1, len(kinds)), 4)


def train_classifier(paths: list[Path], out_dir: Path, seed: int = 13,
                     encoder: str = "all-minilm-l6-v2", progress: Any = print,
                     choose_on: tuple[str, ...] = ()) -> dict[str, Any]:
    """Choose the head settings on a family-grouped validation split, the thresholds on out-of-fold scores of
    every row (5 family-grouped folds), fit the final heads on all rows; save the artefact and its model card.
    The cost minimised on validation: 3 x the share of benign prompts flagged plus the precision lost by each
    decision group, at thresholds that keep each group's target recall. With ``choose_on`` (conversation
    validation sets), the emergency and refuse/defer thresholds are then chosen on them
    (:func:`medtune.guard.thresholds.choose_on_conversations`)."""
    rows = load_training_rows(paths)
    train_idx, val_idx = split_by_family(rows, seed=seed)
    progress(f"{len(rows)} rows, {len({r['family'] for r in rows})} families: "
             f"{len(train_idx)} train / {len(val_idx)} validation rows (split by family)")
    from medtune.embeddings import embed
    from medtune.guard.classifier import MAX_SEGMENTS, SEQ_LENGTH, segments

    started = time.perf_counter()
    texts = [r["text"].casefold() for r in rows]
    x = embed(texts, encoder, max_seq_length=SEQ_LENGTH)
    train_texts, y_train = [texts[i] for i in train_idx], [rows[i]["label"] for i in train_idx]
    train_rows = [rows[i] for i in train_idx]
    val_rows = [rows[i] for i in val_idx]
    val_parts = [segments(texts[i]) for i in val_idx]
    val_vectors = embed([p for parts in val_parts for p in parts], encoder, max_seq_length=SEQ_LENGTH)
    whole = ([[texts[i]] for i in val_idx], x[val_idx])
    trials, best = [], None
    for c, weight in GRID:
        model = _fit_model(train_texts, x[train_idx], y_train, train_rows, c, weight, encoder)
        for max_segments, (parts, vectors) in ((1, whole), (MAX_SEGMENTS, (val_parts, val_vectors))):
            thresholds, figures, kind_accuracy = _thresholds_from_scores(model.score_parts(parts, vectors), val_rows)
            cost = figures["benign"]["flagged_rate"] * 3 + sum(1 - figures[n]["precision"] for n in GROUPS)
            features = "embedding only" if weight is None else "n-grams only" if weight == 0 else \
                f"embedding x{weight:g} + n-grams"
            reading = "whole message" if max_segments == 1 else "max over message and sentences"
            trials.append({"C": c, "features": features, "reading": reading, "cost": round(cost, 4),
                           "benign_flagged": figures["benign"]["flagged_rate"],
                           "auc": {n: figures[n]["auc"] for n in GROUPS}})
            progress(f"C={c:g} {features}, {reading}: cost {cost:.3f}, benign flagged "
                     f"{figures['benign']['flagged_rate']:.3f}, "
                     + ", ".join(f"{n} P={figures[n]['precision']:.2f} AUC={figures[n]['auc']:.3f}"
                                 for n in GROUPS))
            if best is None or cost < best[0]:
                best = (cost, c, weight, f"{features} ({reading})", max_segments)
    assert best is not None
    _, c, weight, features, max_segments = best
    # thresholds from out-of-fold scores of every row (5 family-grouped folds), then one fit on all rows
    thresholds, figures, kind_accuracy = _out_of_fold(rows, texts, x, c, weight, encoder, seed, progress)
    model = _fit_model(texts, x, [r["label"] for r in rows], rows, c, weight, encoder)
    model.thresholds = thresholds
    model.max_segments = max_segments
    conversations = None
    if choose_on:
        from medtune.guard.thresholds import choose_on_conversations

        conversations = choose_on_conversations(model, choose_on, progress)
        thresholds = model.thresholds
    model.card = _card(rows, train_idx, val_idx, f"LogisticRegression(C={c:g}, class_weight=balanced) on "
                       f"{features}", thresholds, figures, kind_accuracy, encoder, seed,
                       time.perf_counter() - started, trials)
    if conversations is not None:
        model.card["thresholds_on_conversations"] = conversations
    artefact = model.save(out_dir)
    (out_dir / "card.json").write_text(json.dumps(model.card, indent=2) + "\n", encoding="utf-8")
    (out_dir / "CARD.md").write_text(card_markdown(model.card), encoding="utf-8")
    return {"artefact": str(artefact), "card": model.card}


def _card(rows: list[dict[str, Any]], train_idx: list[int], val_idx: list[int], head: str,
          thresholds: dict[str, float], figures: dict[str, Any], kind_accuracy: float | None, encoder: str,
          seed: int, seconds: float, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The model card's facts."""
    import sklearn

    return {
        "date": time.strftime("%Y-%m-%d"), "encoder": encoder, "head": head, "sklearn": sklearn.__version__,
        "seed": seed, "trials_on_validation": trials,
        "rows": len(rows), "families": len({r["family"] for r in rows}),
        "train_rows": len(train_idx), "validation_rows": len(val_idx),
        "per_class_rows": dict(Counter(r["label"] for r in rows)),
        "emergency_kinds": dict(Counter(r["kind"] for r in rows if r["label"] == "emergency")),
        "thresholds": {k: round(v, 4) for k, v in thresholds.items()},
        "target_recall_on_validation": TARGET_RECALL,
        "validation": figures, "validation_kind_accuracy": kind_accuracy,
        "train_seconds": round(seconds, 1),
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The model card as Markdown."""
    lines = [
        "# medtune guard intent classifier", "",
        f"Built {card['date']} by `medtune guard train` (seed {card['seed']}, scikit-learn {card['sklearn']}).",
        f"Encoder: `{card['encoder']}` (sentence embeddings); head: {card['head']}; second head for the "
        "emergency kind.", "",
        f"Data: {card['rows']} labelled prompts written for medtune in {card['families']} scenario families; "
        f"{card['train_rows']} train / {card['validation_rows']} validation rows, split by family.",
        "Per class: " + ", ".join(f"{k} {v}" for k, v in sorted(card["per_class_rows"].items())) + ".", "",
        "Thresholds, one per decision group on the summed probability of its classes (chosen on out-of-fold scores "
        "of all rows, 5 family-grouped folds, so that rules OR classifier reach the target recall; the frozen test "
        "set was never used; figures below include the rules):", "",
        "| group | threshold | target recall | out-of-fold precision | out-of-fold recall | support |",
        "|---|---|---|---|---|---|",
    ]
    for name, threshold in card["thresholds"].items():
        fig = card["validation"][name]
        lines.append(f"| {name} | {threshold:.3f} | {card['target_recall_on_validation'][name]} | "
                     f"{fig['precision']:.3f} | {fig['recall']:.3f} | {fig['support']} |")
    if conv := card.get("thresholds_on_conversations"):
        start, chosen = conv["out_of_fold"], conv["chosen"]
        lines += ["", f"Emergency and refuse/defer thresholds then chosen on the conversation validation sets "
                  f"({', '.join(conv['sets'])}; {conv['rows']} rows; whole guard, best accuracy among thresholds "
                  "that keep the out-of-fold emergency recall):", "",
                  "| thresholds | emergency | refuse/defer | accuracy | emergency recall | refuse/defer recall "
                  "| benign blocked |", "|---|---|---|---|---|---|---|"]
        for name, row in (("out of fold", start), ("chosen", chosen)):
            lines.append(f"| {name} | {row['emergency']:.3f} | {row['refuse_or_defer']:.3f} | {row['accuracy']:.3f} "
                         f"| {row['emergency_recall']:.3f} | {row['refuse_recall']:.3f} | "
                         f"{row['benign_blocked']:.3f} |")
    lines += ["", "Head settings tried (validation; the lowest cost was kept):", "",
              "| C | features | reading | cost | benign flagged | AUC emergency | AUC refuse or defer "
              "| AUC injection |", "|---|---|---|---|---|---|---|---|"]
    for trial in card["trials_on_validation"]:
        auc = trial["auc"]
        lines.append(f"| {trial['C']:g} | {trial['features']} | {trial['reading']} | {trial['cost']:.3f} | {trial['benign_flagged']:.3f} | "
                     f"{auc['emergency']:.3f} | {auc['refuse_or_defer']:.3f} | "
                     f"{auc['injection']:.3f} |")
    lines += ["", f"Benign prompts flagged by any class (out of fold): {card['validation']['benign']['flagged_rate']:.3f} "
              f"of {card['validation']['benign']['support']}.",
              f"Emergency-kind accuracy (out of fold): {card['validation_kind_accuracy']}.", "",
              "Headline figures on the frozen test set: docs/guard.md and `python bench/guard_eval.py`.", ""]
    return "\n".join(lines)
