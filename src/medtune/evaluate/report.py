"""Write an evaluation's results.json, report.md and report.html (matplotlib PNGs embedded as base64)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

HEADLINE_FREE_TEXT = ("rouge1", "rouge2", "rougeL", "token_f1", "word_overlap", "embedding_cosine", "bertscore_minilm_f1",
                      "reference_unsupported_rate", "hit_token_limit", "repeated_3gram_fraction",
                      "reference_repeated_3gram_fraction", "distinct_2")
SHOWN_FREE_TEXT = HEADLINE_FREE_TEXT + ("bleu", "corpus_bleu", "exact_match", "answer_words", "latency_s",
                                        "tokens_per_s")


def figure_png(fig: Any) -> str:
    """Render a matplotlib figure to a base64 PNG string and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def build_figures(results: dict[str, Any]) -> dict[str, str]:
    """Metric bars (free text), per-task accuracy with the random baseline, answer length distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    figures: dict[str, str] = {}
    free = {n: t for n, t in tasks.items() if t["kind"] == "free_text"}
    mc = {n: t for n, t in tasks.items() if t["kind"] == "multiple_choice"}
    if free:
        names = [m for m in HEADLINE_FREE_TEXT if any(m in t["metrics"] for t in free.values())]
        fig, ax = plt.subplots(figsize=(9, 3.5))
        width = 0.8 / len(free)
        for k, (task, data) in enumerate(free.items()):
            ax.bar([i + k * width for i in range(len(names))], [data["metrics"].get(m, 0) for m in names], width,
                   label=task)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=35, ha="right")
        ax.set_ylabel("mean (0-1)")
        ax.set_title("Free-text metrics")
        ax.legend()
        figures["Free-text metrics"] = figure_png(fig)
        fig, ax = plt.subplots(figsize=(7, 3))
        for task, data in free.items():
            ax.hist(data["per_example"]["answer_words"], bins=20, alpha=0.6, label=f"{task} answers")
            ax.hist([len(s["reference"].split()) for s in data["samples"]], bins=20, alpha=0.3,
                    label=f"{task} references", histtype="step")
        ax.set_xlabel("words")
        ax.set_title("Answer length distribution")
        ax.legend()
        figures["Answer lengths"] = figure_png(fig)
    if mc:
        fig, ax = plt.subplots(figsize=(7, 3))
        names = list(mc)
        ax.bar(names, [mc[n]["metrics"]["acc"] for n in names], yerr=[mc[n]["metrics"]["acc_stderr"] for n in names],
               label="acc")
        ax.scatter(names, [mc[n]["metrics"]["random_baseline"] for n in names], color="red", marker="_", s=900,
                   label="random baseline", zorder=3)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title("Multiple-choice accuracy (± standard error)")
        ax.legend()
        figures["Multiple-choice accuracy"] = figure_png(fig)
    return figures


def _fmt(value: Any) -> str:
    """Format a metric value for tables."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_with_interval(value: Any, interval: list[float] | None) -> str:
    """``0.3091 [0.2710, 0.3480]`` (the 95% CI when there is one)."""
    text = _fmt(value)
    return f"{text} [{interval[0]:.4f}, {interval[1]:.4f}]" if interval and isinstance(value, float) else text


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(task, kind, metric, value [95% CI]) rows of the headline table; MMLU-style groups get a row each."""
    rows = []
    for name, data in results["tasks"].items():
        keys = SHOWN_FREE_TEXT if data["kind"] == "free_text" else tuple(data["metrics"])
        intervals = data.get("intervals", {})
        rows += [(name, data["kind"], k, format_with_interval(data["metrics"][k], intervals.get(k)))
                 for k in keys if k in data["metrics"] and not k.endswith("_stderr")]
        rows += [(f"{name}/{group}", data["kind"], "acc", f"{g['acc']:.4f} ± {g['acc_stderr']:.4f} (n={g['n']})")
                 for group, g in data.get("groups", {}).items()]
    return rows


def _retrieval_label(results: dict[str, Any]) -> str:
    """'NAME (k=K)' for an evaluation with retrieval, else 'off'."""
    return f"{results['rag']} (k={results.get('rag_k')})" if results.get("rag") else "off"


def render_markdown(results: dict[str, Any]) -> str:
    """The report as markdown: setup, metrics table, notes and sample answers."""
    info = results["model_info"]
    lines = [f"# Evaluation of `{results['model']}`", "",
             f"created {results['created']}; limit {results['limit']}; shots {results['shots']}; "
             f"chat template {results['settings']['use_chat_template']} (multiple choice: "
             f"{results['settings'].get('mc_chat_template', False)}); prompt {results.get('prompt', 'served')}; "
             f"retrieval {_retrieval_label(results)}; "
             f"parameters {info['parameters']:,}; "
             f"size on disk {info.get('size_on_disk_bytes')} bytes; peak RSS {info.get('peak_rss_mb', 0):.0f} MB", "",
             "| task | kind | metric | value [95% CI] |", "| --- | --- | --- | --- |"]
    lines += [f"| {t} | {k} | {m} | {v} |" for t, k, m, v in summary_rows(results)]
    for name, data in results["tasks"].items():
        lines += ["", f"## {name} (n={data['n']}, {data['seconds']:.1f} s)"]
        lines += [f"- note: {note}" for note in data.get("notes", [])]
        lines += ["", "| question | reference | answer |", "| --- | --- | --- |"]
        for sample in data["samples"][:10]:
            cells = [str(sample[k]).replace("|", "\\|").replace("\n", " ")[:300] for k in ("question", "reference",
                                                                                         "answer")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_html(results: dict[str, Any], figures: dict[str, str]) -> str:
    """Standalone HTML report with embedded PNG figures."""
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(t)}</td><td>{esc(k)}</td><td>{esc(m)}</td><td>{esc(v)}</td></tr>"
                   for t, k, m, v in summary_rows(results))
    parts = [f"<html><head><meta charset='utf-8'><title>medtune eval {esc(results['model'])}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{border:1px solid #ccc;"
             "padding:4px;vertical-align:top}table{border-collapse:collapse}</style></head><body>",
             f"<h1>Evaluation of {esc(results['model'])}</h1>",
             f"<p>{esc(json.dumps(results['model_info']))}</p>",
             f"<table><tr><th>task</th><th>kind</th><th>metric</th><th>value</th></tr>{rows}</table>"]
    for title, png in figures.items():
        parts.append(f"<h2>{esc(title)}</h2><img alt='{esc(title)}' src='data:image/png;base64,{png}'>")
    for name, data in results["tasks"].items():
        parts.append(f"<h2>{esc(name)} samples</h2>")
        parts += [f"<p>note: {esc(n)}</p>" for n in data.get("notes", [])]
        parts.append("<table><tr><th>question</th><th>reference</th><th>answer</th></tr>")
        parts += [f"<tr><td>{esc(str(s['question']))}</td><td>{esc(str(s['reference']))}</td>"
                  f"<td>{esc(str(s['answer']))}</td></tr>" for s in data["samples"][:10]]
        parts.append("</table>")
    return "\n".join(parts) + "</body></html>\n"


def write_reports(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write results.json, report.md and report.html into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(results, indent=2))
    paths["md"].write_text(render_markdown(results))
    paths["html"].write_text(render_html(results, build_figures(results)))
    return paths
