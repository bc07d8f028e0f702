"""``medtune compare``: results side by side with paired bootstrap 95% confidence intervals on each difference.

Every results.json keeps per-example scores with example ids; for each task and metric present in the baseline
(the first result) and another result, the examples both share are paired and resampled with replacement.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medtune.errors import UserError

SKIPPED = {"latency_s", "new_tokens", "reference_repeated_3gram_fraction"}  # not a property of the model


@dataclass
class Difference:
    """Mean of a metric for the baseline and the other model, their difference and its bootstrap 95% CI."""

    task: str
    metric: str
    model: str
    n: int
    baseline: float
    other: float
    diff: float
    ci_low: float
    ci_high: float

    @property
    def significant(self) -> bool:
        """True when the 95% CI excludes zero."""
        return self.ci_low > 0 or self.ci_high < 0

    @property
    def verdict(self) -> str:
        """``significant`` or ``not significant`` (the CI crosses zero), for tables."""
        return "significant" if self.significant else "not significant"


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results.json file, or the results.json inside a folder (e.g. RUN/eval or RUN)."""
    p = Path(path).expanduser()
    candidates = [p] if p.is_file() else [p / "results.json", p / "eval" / "results.json"]
    for candidate in candidates:
        if candidate.is_file():
            data = json.loads(candidate.read_text())
            if "tasks" not in data:
                raise UserError(f"{candidate}: not a medtune results.json (no 'tasks'); pass `medtune eval` output.")
            data.setdefault("label", str(p) + (f" [rag: {data['rag']}]" if data.get("rag") else "")
                            + (" (unfinished)" if data.get("complete") is False else ""))
            return data
    unfinished = [c.with_name("results.partial.json") for c in candidates]
    unfinished = [c for c in unfinished if c.is_file()]
    if unfinished:
        raise UserError(f"{path}: no results.json, only {unfinished[0]} (an evaluation that has not finished or was "
                        "interrupted); pass that file to compare the tasks it finished.")
    raise UserError(f"{path}: no results.json found; pass a results.json file or a `medtune eval` output folder.")


def paired_bootstrap(a: list[float], b: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile CI of mean(b - a) over paired examples resampled with replacement."""
    return bootstrap_interval([y - x for x, y in zip(a, b, strict=True)], resamples, seed)


def bootstrap_interval(values: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap CI of the mean of ``values`` (resampled with replacement; (v, v) for one value)."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def metric_intervals(per_example: dict[str, list[float]], resamples: int = 2000) -> dict[str, list[float]]:
    """``{metric: [low, high]}``: the bootstrap 95% CI of every per-example metric's mean."""
    return {name: list(bootstrap_interval(values, resamples)) for name, values in per_example.items() if values}


def compare_results(results: list[dict[str, Any]], resamples: int = 2000) -> list[Difference]:
    """Differences of every other result against the first one, per shared task and metric."""
    if len(results) < 2:
        raise UserError("compare needs at least two results (A B ...).")
    base = results[0]
    out = []
    for other in results[1:]:
        for task, data in base["tasks"].items():
            if task not in other["tasks"]:
                continue
            o = other["tasks"][task]
            index = {i: n for n, i in enumerate(o["ids"])}
            pairs = [(n, index[i]) for n, i in enumerate(data["ids"]) if i in index]
            for metric, values in data["per_example"].items():
                if metric in SKIPPED or metric not in o["per_example"] or not pairs:
                    continue
                a = [values[x] for x, _ in pairs]
                b = [o["per_example"][metric][y] for _, y in pairs]
                low, high = paired_bootstrap(a, b, resamples)
                mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
                out.append(Difference(task, metric, other["label"], len(pairs), mean_a, mean_b, mean_b - mean_a,
                                      low, high))
    if not out:
        raise UserError("the results share no task with matching example ids; evaluate them on the same tasks.")
    return out


def render_markdown(results: list[dict[str, Any]], diffs: list[Difference]) -> str:
    """Markdown table: task, metric, n, baseline, other, difference and its 95% CI (* = CI excludes 0)."""
    lines = [f"# Comparison against `{results[0]['label']}` (model {results[0]['model']})", "",
             "| task | metric | model | n | baseline | other | diff | 95% CI | |", "| --- | --- | --- | --- | --- | --- | "
             "--- | --- | --- |"]
    lines += [f"| {d.task} | {d.metric} | {d.model} | {d.n} | {d.baseline:.4f} | {d.other:.4f} | {d.diff:+.4f} | "
              f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}] | {d.verdict} |" for d in diffs]
    return "\n".join(lines) + "\n\nsignificant: the paired bootstrap 95% CI excludes zero.\n"


def difference_figure(diffs: list[Difference]) -> str:
    """Horizontal bars of each difference with its CI, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medtune.evaluate.report import figure_png

    shown = [d for d in diffs if d.metric not in {"answer_words", "bleu", "tokens_per_s"}][:40]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(shown) + 1.2))
    labels = [f"{d.task}/{d.metric} ({Path(d.model).name})" for d in shown]
    ax.errorbar([d.diff for d in shown], range(len(shown)), fmt="o",
                xerr=[[d.diff - d.ci_low for d in shown], [d.ci_high - d.diff for d in shown]])
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(shown)), labels)
    ax.set_xlabel("difference vs baseline (95% paired bootstrap CI)")
    return figure_png(fig)


def write_comparison(results: list[dict[str, Any]], out_dir: Path, resamples: int = 2000) -> list[Difference]:
    """Compute the differences and write comparison.json, comparison.md and comparison.html."""
    diffs = compare_results(results, resamples)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.json").write_text(json.dumps(
        {"inputs": [r["label"] for r in results], "differences": [asdict(d) for d in diffs]}, indent=2))
    markdown = render_markdown(results, diffs)
    (out_dir / "comparison.md").write_text(markdown)
    body = "".join(f"<tr><td>{html.escape(d.task)}</td><td>{html.escape(d.metric)}</td><td>{html.escape(d.model)}</td>"
                   f"<td>{d.n}</td><td>{d.baseline:.4f}</td><td>{d.other:.4f}</td><td>{d.diff:+.4f}</td>"
                   f"<td>[{d.ci_low:+.4f}, {d.ci_high:+.4f}] {d.verdict}</td></tr>"
                   for d in diffs)
    (out_dir / "comparison.html").write_text(
        "<html><head><meta charset='utf-8'><title>medtune compare</title></head><body>"
        f"<h1>Comparison against {html.escape(results[0]['label'])}</h1><table border='1'><tr><th>task</th>"
        "<th>metric</th><th>model</th><th>n</th><th>baseline</th><th>other</th><th>diff</th><th>95% CI</th></tr>"
        f"{body}</table><img alt='differences' src='data:image/png;base64,{difference_figure(diffs)}'>"
        "</body></html>\n")
    return diffs
