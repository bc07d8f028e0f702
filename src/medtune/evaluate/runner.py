"""``evaluate_model``: load a model once, run each task, score it, and write results.json + reports.

Per task the results keep the aggregate metrics *and* the per-example scores (so ``medtune compare`` can bootstrap
paired differences), plus sample answers, timing and the random baseline of multiple-choice tasks. A folder's
results.json keeps the tasks of earlier evaluations into it (each stamped with its settings) that a later one does
not score again.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

from medtune.config import EvalConfig
from medtune.errors import UserError
from medtune.evaluate.answering import answer_questions, speed_and_limit_notes
from medtune.evaluate.compare import metric_intervals
from medtune.evaluate.tasks import ChoiceExample, FreeTextExample, Task, parse_tasks
from medtune.paths import data_dir as default_data_dir
from medtune.paths import medtune_home

SAMPLE_ROWS = 10
#: finished tasks of an evaluation still running (or interrupted); removed when results.json is written.
PARTIAL_RESULTS = "results.partial.json"
#: the settings of an evaluation, recorded with each of its tasks (``evaluated``): a results.json keeps the tasks of
#: earlier evaluations into the same folder, each with the settings it was scored under.
STAMP_KEYS = ("created", "settings", "limit", "sample_seed", "shots", "prompt", "guard", "rag", "rag_k",
              "rag_hide_own_document", "rag_min_score")


def _progress() -> Any:
    """A rich progress bar with ETA (on stderr)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=False)


def model_size_bytes(model: str) -> int:
    """Bytes of weight files on disk: the resolved model folder plus an adapter, if any."""
    from medtune.models import base_and_adapter

    base, adapter = base_and_adapter(model)
    folders = [adapter] if adapter is not None else []
    path = Path(base)
    if path.is_dir():
        folders.append(path)
    return sum(f.stat().st_size for folder in folders for f in folder.iterdir()
               if f.suffix in (".safetensors", ".bin", ".gguf", ".pt"))


def _run_context(model: str, prompt: str = "served", system_prompt: str | None = None) -> dict[str, Any]:
    """Prompt style and the system prompt to score with, from a run folder's run.json (defaults otherwise).

    ``prompt="served"``: the system prompt ask/chat/UI/serve send (:func:`medtune.prompts.served_system_prompt`);
    ``"training"``: the one the run's examples were rendered with (None = the template's default). An explicit
    ``system_prompt`` replaces either (``prompt`` is then recorded as ``custom``).
    """
    from medtune.prompts import served_prompt_for
    from medtune.served_model import served_model

    record = served_model(model)
    served = served_prompt_for(record.trained_system_prompt)
    if prompt == "training" and record.run_dir is None:
        raise UserError(f"--prompt training needs a run folder (with run.json); {model} is not one. "
                        "Use --prompt served for a base model.")
    chosen = served if prompt == "served" else record.trained_system_prompt
    if system_prompt:
        prompt, chosen = "custom", system_prompt
    return {"run_dir": record.run_dir, "style": record.prompt_style, "prompt": prompt, "system_prompt": chosen,
            "passage_header": record.passage_header()}


def _grounded_format(context: dict[str, Any], rag: Any) -> dict[str, Any]:
    """With retrieval, the passage header the prompts used (the run's ``data.grounded.passage_header``)."""
    return {"passage_header": context["passage_header"]} if rag is not None else {}


def _free_text(task: Task, examples: list[FreeTextExample], model: Any, tokenizer: Any, settings: EvalConfig,
               context: dict[str, Any], rag: Any, progress: Any) -> dict[str, Any]:
    """Generate answers, score them against the references, and summarise speed and limits."""
    from medtune.evaluate.metrics import compute_free_text_scores

    hidden = None
    if rag is not None and context.get("rag_hide_own_document"):
        from medtune.evaluate.grounded import own_documents

        hidden = [own_documents(e.meta) for e in examples]
        if not any(hidden):
            raise UserError(f"{task.name}: --rag-hide-own-document needs examples that carry their MedQuAD "
                            "document (original_id); this task's examples do not.")
    answered = answer_questions(task, [e.question for e in examples], model, tokenizer, settings, context, rag,
                                 progress, hidden)
    answers = answered.texts
    scores = compute_free_text_scores(answers, [e.reference for e in examples],
                                      bertscore_model=settings.bertscore_model)
    per = scores.per_example
    per.update(answered.per_example)
    metrics = scores.means()
    metrics.update({name: sum(v) / len(v) for name, v in answered.per_example.items()
                    if name.startswith("guard_") or name in ("hit_token_limit", "rag_abstained")})
    if answered.grounded is not None:
        from medtune.evaluate.grounded import grounding_scores

        signals = grounding_scores(answers, [e.reference for e in examples], answered.grounded.passages)
        per.update(signals)
        metrics.update({name: sum(values) / len(values) for name, values in signals.items()})
        if metrics["reference_in_index"] > 0:
            scores.notes.append(f"{metrics['reference_in_index']:.0%} of the questions retrieved their own reference "
                                "answer: an open-book test, the scores measure answering from that passage (fair for a "
                                "model that never trained on these test answers: `prepare --grounded` refuses an index "
                                "holding them). --rag-hide-own-document scores the case where the sources lack it.")
    speed_and_limit_notes(answered, settings, metrics, scores.notes)
    samples = [{"id": e.id, "question": e.question, "reference": e.reference, "answer": a}
               for e, a in zip(examples, answers, strict=True)]
    if answered.grounded is not None:  # the sources shown and each citation's verdict, to audit by hand
        from medtune.evaluate.grounded import add_citation_audits

        add_citation_audits(samples, answers, answered.grounded.passages)
    return {
        "kind": task.kind, "n": len(examples), "metrics": metrics, "intervals": metric_intervals(per),
        "per_example": per, "notes": scores.notes, "system_prompt": context["system_prompt"],
        "ids": [e.id for e in examples], "seconds": answered.seconds, "samples": samples, **_grounded_format(context, rag),
    }


def _rubric(task: Task, questions: list[Any], model: Any, tokenizer: Any, settings: EvalConfig,
            context: dict[str, Any], rag: Any, progress: Any) -> dict[str, Any]:
    """Generate answers to the rubric questions and grade them (``settings.rubric_grader``)."""
    from medtune.evaluate.metrics import repeated_ngram_fraction
    from medtune.evaluate.rubric import JudgeGrader, grade

    answered = answer_questions(task, [q.question for q in questions], model, tokenizer, settings, context, rag,
                                 progress)
    judge = JudgeGrader(settings.judge_url, settings.judge_model) if settings.rubric_grader == "judge" and \
        settings.judge_url else None
    bar = progress.add_task(f"{task.name}: grading ({settings.rubric_grader})", total=len(questions))
    result = grade(questions, answered.texts, settings.rubric_grader, judge, lambda: progress.advance(bar))
    per = {"rubric_score": result.scores, **answered.per_example,
           "repeated_3gram_fraction": [repeated_ngram_fraction(a) for a in answered.texts]}
    if answered.grounded is not None:  # with --rag: how often it cites, and how often it says "not covered"
        from medtune.evaluate.grounded import grounding_scores

        per.update(grounding_scores(answered.texts, None, answered.grounded.passages))
    intervals = metric_intervals(per)
    intervals["rubric_score"] = list(result.interval)
    metrics = {"rubric_score": result.score, "judge_failures": float(result.judge_failures),
               **{name: sum(v) / len(v) for name, v in per.items() if name != "rubric_score"}}
    notes: list[str] = [f"grader: {settings.rubric_grader}; rubric_score = mean of (met points / positive points) "
                        "per question, clipped to [0, 1] (HealthBench's aggregate)."]
    speed_and_limit_notes(answered, settings, metrics, notes)
    samples = [{"id": q.id, "question": q.question, "answer": a,
                "reference": "; ".join(f"{c.points:+d} {c.criterion}" for c, m in zip(q.criteria, met, strict=True)
                                       if m) or "(no criterion met)"}
               for q, a, met in zip(questions, answered.texts, result.met, strict=True)]
    if answered.grounded is not None:
        from medtune.evaluate.grounded import add_citation_audits

        add_citation_audits(samples, answered.texts, answered.grounded.passages)
    return {
        "kind": task.kind, "n": len(questions), "metrics": metrics, "intervals": intervals, "per_example": per,
        "tags": result.tag_scores, "grader": settings.rubric_grader, "notes": notes,
        "system_prompt": context["system_prompt"], "ids": [q.id for q in questions], "seconds": answered.seconds,
        "samples": samples, **_grounded_format(context, rag),
    }


def _multiple_choice(task: Task, examples: list[ChoiceExample], model: Any, tokenizer: Any, settings: EvalConfig,
                     shots: int, root: Path, context: dict[str, Any], progress: Any) -> dict[str, Any]:
    """Score every answer by log-likelihood in the task's lm-eval format; acc, acc_norm, CIs, per-group accuracy."""
    from medtune.evaluate.generation import build_prompt
    from medtune.evaluate.multiple_choice import ChoiceRequest, choose, mean_stderr, score_requests

    if shots and task.shots_loader is None:
        raise UserError(f"task {task.name}: no local train or dev split to draw few-shot examples from (only the "
                        "scored set is on disk, and shots from it would leak); use --shots 0.")
    pool = task.shots_loader(root) if shots and task.shots_loader else []
    requests = []
    for example in examples:
        text = task.mc_prompt(example, task.select_shots(pool, shots, example))
        continuations = task.continuations(example)
        if settings.mc_chat_template:
            text = build_prompt(text, tokenizer, chat_template=True, style=context["style"],
                                system_prompt=context["system_prompt"])
            continuations = [c.lstrip(" ") for c in continuations]
        requests.append(ChoiceRequest(text, continuations, task.choice_texts(example)))
    bar = progress.add_task(f"{task.name}: scoring", total=len(requests))
    began = time.perf_counter()
    scores = score_requests(model, tokenizer, requests, settings.batch_size, lambda n: progress.advance(bar, n))
    seconds = time.perf_counter() - began
    acc, acc_norm, picked = [], [], []
    for example, request, option_scores in zip(examples, requests, scores, strict=True):
        best, norm = choose(option_scores, request.choice_texts)
        acc.append(float(best == example.gold))
        acc_norm.append(float(norm == example.gold))
        picked.append(best)
    n = len(examples)
    per = {"acc": acc, "acc_norm": acc_norm}
    metrics = {"acc": sum(acc) / n, "acc_stderr": mean_stderr(acc), "acc_norm": sum(acc_norm) / n,
               "acc_norm_stderr": mean_stderr(acc_norm), "random_baseline": task.random_baseline or 0.0}
    return {
        "kind": task.kind, "n": n, "metrics": metrics, "intervals": metric_intervals(per), "per_example": per,
        "groups": _group_accuracy(task, examples, acc), "format": task.format.name,
        "lm_eval_task": task.format.lm_eval_task, "chat_template": settings.mc_chat_template,
        "ids": [e.id for e in examples], "seconds": seconds, "notes": [], "shots": shots, "picked": picked,
        "samples": [{"id": e.id, "question": r.context[-300:], "reference": r.choice_texts[e.gold],
                     "answer": r.choice_texts[p], "scores": s}
                    for e, r, p, s in zip(examples, requests, picked, scores, strict=True)],
    }


def _group_accuracy(task: Task, examples: list[ChoiceExample], acc: list[float]) -> dict[str, dict[str, float]]:
    """Accuracy per ``task.group_by`` value (MMLU subject), with n and stderr; the task's acc is their size-weighted
    mean, lm-eval's group aggregation (``weight_by_size: true``)."""
    if task.group_by is None:
        return {}
    groups: dict[str, list[float]] = {}
    for example, value in zip(examples, acc, strict=True):
        groups.setdefault(str(example.meta.get(task.group_by)), []).append(value)
    from medtune.evaluate.multiple_choice import mean_stderr

    return {name: {"n": len(values), "acc": sum(values) / len(values), "acc_stderr": mean_stderr(values)}
            for name, values in sorted(groups.items())}


def default_out_dir(model: str, context: dict[str, Any]) -> Path:
    """RUN/eval[-rag][-own-hidden][-minT][-guard] for a run folder, else MEDTUNE_HOME/evals/<model><same suffix>-<time>."""
    suffix = ("-rag" if context.get("rag_name") else "") + ("-own-hidden" if context.get("rag_hide_own_document")
                                                             else "") \
        + (f"-min{context['rag_min_score']:.2f}" if context.get("rag_min_score") is not None else "") \
        + ("-guard" if context.get("guard") else "")
    if context["run_dir"] is not None:
        return Path(context["run_dir"]) / f"eval{suffix}"
    stem = Path(model.rstrip("/")).name.replace(".", "_") or "model"
    return medtune_home() / "evals" / f"{stem}{suffix}-{time.strftime('%Y%m%d-%H%M%S')}"


def evaluate_model(model: str, tasks: list[str], *, limit: int | None = None, shots: int | None = None,
                   data_dir: str | Path | None = None, settings: EvalConfig | None = None,
                   out_dir: Path | None = None, rag: Any = None, loaded: tuple[Any, Any] | None = None,
                   rag_k: int = 4, guard: Any = None, rag_hide_own_document: bool = False) -> dict:
    """Evaluate ``model`` (alias, folder, GGUF or run folder) on ``tasks``; write reports; return this evaluation's
    results (results.json also keeps earlier tasks; ``kept_tasks`` names them).

    Args:
        model: anything :func:`medtune.models.load_causal_lm` accepts.
        tasks: registry names (``medtune.evaluate.tasks.TASKS``).
        limit: a seeded random sample of N examples per task (``settings.sample_seed``; default ``settings.limit``).
        shots: k solved examples before each multiple-choice question, drawn from the task's train/dev split
            (default ``settings.shots``; 0 overrides a recipe's shots).
        data_dir: raw dataset root, or a ``medtune prepare`` output (then used by ``medquad-test``).
        settings: decoding and batching (``EvalConfig``).
        out_dir: report folder (default RUN/eval or MEDTUNE_HOME/evals/<model>-<time>). A results.json of the same
            model already there keeps the tasks this evaluation does not score again (:func:`merge_earlier_results`).
        rag: optional retriever (:func:`medtune.rag.open_retriever`); free-text questions are answered from its
            top ``rag_k`` passages with the grounded prompt of ``medtune ask --rag``.
        loaded: an already loaded ``(model, tokenizer)`` pair (tests, callers that hold one).
        guard: a :class:`~medtune.guard.Guard`: free-text questions are answered as served (guard system prompt,
            sanitized question, canned replies for what it blocks, output checks and disclaimer on answers).
        rag_hide_own_document: with ``rag``, never retrieve a chunk of a free-text question's own MedQuAD document
            (the "sources do not cover it" case; the report goes to RUN/eval-rag-own-hidden).
    """
    from medtune.evaluate.report import write_reports

    settings = settings or EvalConfig()
    chosen = parse_tasks(tasks)
    limit = limit if limit is not None else settings.limit
    shots = settings.shots if shots is None else shots
    context = _run_context(model, settings.prompt, settings.system_prompt)
    context["rag_k"] = rag_k
    context["rag_name"] = getattr(rag, "name", "rag") if rag is not None else None
    context["rag_hide_own_document"] = rag is not None and rag_hide_own_document
    context["rag_min_score"] = settings.rag_min_score if rag is not None else None
    context["guard"] = guard
    given = Path(data_dir).expanduser() if data_dir is not None else None
    context["data_dir"] = given
    from medtune.evaluate.tasks.free_text_sets import is_prepared_dir

    root = given if given is not None and not is_prepared_dir(given) else default_data_dir()
    from medtune.evaluate.multiple_choice import sample_examples

    task_examples = {t.name: sample_examples(t.load(root, context), limit, settings.sample_seed, t.name)
                     for t in chosen}
    if settings.engine == "vllm":
        from medtune.evaluate.vllm_engine import VLLMGenerator

        context["vllm"] = VLLMGenerator(model)
    if loaded is None:
        from medtune.models import BUILTIN_MODELS, load_causal_lm, load_tokenizer

        if not Path(model).expanduser().exists() and model not in BUILTIN_MODELS and "/" not in model:
            raise UserError(f"unknown model '{model}'; give an alias ({', '.join(BUILTIN_MODELS)}), an HF folder, "
                            "a .gguf file, a run folder, or a hub id (org/name).")

        tokenizer = load_tokenizer(model)
        lm = load_causal_lm(model, merge_adapter=True)
        size = model_size_bytes(model)
    else:
        lm, tokenizer = loaded
        size = None
    lm.eval()
    results: dict[str, Any] = {
        "model": model, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "settings": settings.model_dump(mode="json"),
        "limit": limit, "sample_seed": settings.sample_seed, "shots": shots, "guard": guard is not None,
        "rag": context["rag_name"], "rag_k": rag_k if rag is not None else None,
        "rag_hide_own_document": context["rag_hide_own_document"], "rag_min_score": context["rag_min_score"],
        "prompt": context["prompt"],
        "tasks": {},
        "model_info": {"parameters": sum(p.numel() for p in lm.parameters()), "size_on_disk_bytes": size},
    }
    out = Path(out_dir) if out_dir is not None else default_out_dir(model, context)
    results["out_dir"] = str(out)
    with _progress() as progress:
        for task in chosen:
            examples = task_examples[task.name]
            if not examples:
                raise UserError(f"task {task.name}: no examples loaded from {root}; check the data folder.")
            if task.kind == "free_text":
                results["tasks"][task.name] = _free_text(task, examples, lm, tokenizer, settings, context, rag,
                                                         progress)
            elif task.kind == "rubric":
                results["tasks"][task.name] = _rubric(task, examples, lm, tokenizer, settings, context, rag, progress)
            else:
                results["tasks"][task.name] = _multiple_choice(task, examples, lm, tokenizer, settings, shots, root,
                                                               context, progress)
            results["tasks"][task.name]["evaluated"] = evaluation_stamp(results)
            _write_partial(results, out, [t.name for t in chosen])
    results["model_info"]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    merged, kept, replaced = merge_earlier_results(results, out)
    write_reports(merged, out)
    (out / PARTIAL_RESULTS).unlink(missing_ok=True)
    # said by `medtune eval`; results.json holds the merged tasks, the returned results only this evaluation's
    results["kept_tasks"] = kept
    results["replaced_results_of"] = replaced
    return results


def evaluation_stamp(results: dict[str, Any]) -> dict[str, Any]:
    """When and under which settings an evaluation ran (its ``STAMP_KEYS``), recorded with each of its tasks."""
    return {key: results[key] for key in STAMP_KEYS if key in results}


def _same_model(a: Any, b: Any) -> bool:
    """True when two recorded ``model`` values name the same model (the same string, or the same folder)."""
    if a == b:
        return True
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    first, second = Path(a).expanduser(), Path(b).expanduser()
    return first.exists() and second.exists() and first.resolve() == second.resolve()


def merge_earlier_results(results: dict[str, Any], out: Path) -> tuple[dict[str, Any], list[str], str | None]:
    """The results.json to write into ``out``: this evaluation's, plus each task of the results.json already there
    (of the same model) that it did not evaluate again, so a second ``medtune eval RUN --tasks ...`` keeps the first
    one's tasks and ``medtune compare RUN`` still finds them. A task evaluated again replaces its earlier entry; each
    task carries the settings it was scored under (``evaluated``; entries older than that stamp get their file's).

    Returns the merged results, the names of the tasks kept from before, and the model of an earlier results.json
    that is replaced whole because it scored another model (``--out`` reused; None otherwise).
    """
    path = out / "results.json"
    try:
        earlier = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return results, [], None  # an unreadable file has nothing to keep
    tasks = earlier.get("tasks") if isinstance(earlier, dict) else None
    if not isinstance(tasks, dict):
        return results, [], None
    if not _same_model(earlier.get("model"), results["model"]):
        return results, [], str(earlier.get("model"))
    kept = [name for name in tasks if name not in results["tasks"]]
    if not kept:
        return results, [], None
    stamp = evaluation_stamp(earlier)
    merged_tasks = {name: results["tasks"].get(name) or {"evaluated": stamp, **tasks[name]} for name in tasks}
    merged_tasks.update(results["tasks"])
    return {**results, "tasks": merged_tasks}, kept, None


def _write_partial(results: dict[str, Any], out: Path, task_names: list[str]) -> None:
    """Keep the finished tasks in OUT/results.partial.json while later tasks run, so an interrupted or failed
    evaluation loses only the task it was in; results.json (and a previous complete one) is written only at the end."""
    partial = {**results, "complete": False,
               "tasks_pending": [name for name in task_names if name not in results["tasks"]]}
    out.mkdir(parents=True, exist_ok=True)
    (out / PARTIAL_RESULTS).write_text(json.dumps(partial, indent=2))
