"""``medtune eval``: free-text metrics and multiple-choice benchmarks for a model or a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from medtune.cli._console import console

if TYPE_CHECKING:
    from medtune.config import EvalConfig


RECORDED = "default: a run's recipe eval: section, else"


def eval_settings(model: str, flags: dict[str, Any]) -> EvalConfig:
    """The flags the user gave, else a run folder's recorded recipe ``eval:`` section, else EvalConfig's defaults."""
    from pydantic import ValidationError

    from medtune.config import EvalConfig, describe_validation_error
    from medtune.errors import UserError
    from medtune.runs import RunDir, is_run_dir

    recorded: dict[str, Any] = {}
    where = "eval flags"
    path = Path(model).expanduser()
    if is_run_dir(path):
        run = RunDir(path)
        recorded = run.recorded_recipe().get("eval") or {}
        where = f"{run.recipe} (eval)"
    try:
        base = EvalConfig.model_validate(recorded)
        return EvalConfig.model_validate({**base.model_dump(), **{k: v for k, v in flags.items() if v is not None}})
    except ValidationError as error:
        raise UserError(describe_validation_error(where, error, EvalConfig)) from None


def eval_command(
    model: str = typer.Argument(..., help="Alias, HF folder, .gguf file, or run folder (its adapter is applied)."),
    tasks: str | None = typer.Option(None, "--tasks", help="Comma-separated: medquad-test, medquad-validation, "
                                     "medicationqa, liveqa, medqa, medmcqa, pubmedqa, mmlu-medical (lm-eval formats), "
                                     "medqa-cloze, medmcqa-cloze, mmlu-medical-cloze, rubric:FILE (HealthBench-style "
                                     f"rubric set); {RECORDED} medquad-test."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="A seeded random sample of N examples per task; "
                                     f"{RECORDED} all."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the --limit sample (same seed = same questions); "
                                    f"{RECORDED} 1234."),
    shots: int | None = typer.Option(None, "--shots", min=0, help="Solved examples before each multiple-choice "
                                     "question (from the task's train/dev split; tasks without one refuse shots > 0); "
                                     f"{RECORDED} 0."),
    chat_template: bool | None = typer.Option(None, "--chat-template/--no-chat-template",
                                              help=f"Wrap free-text prompts in the model's chat template; {RECORDED} on."),
    mc_chat_template: bool | None = typer.Option(None, "--mc-chat-template/--no-mc-chat-template", help="Also wrap "
                                                 "multiple-choice prompts (off: lm-eval's plain format, comparable "
                                                 f"with published accuracies); {RECORDED} off."),
    prompt: str | None = typer.Option(None, "--prompt", help="System prompt of free-text questions: served (what "
                                      "ask/chat/UI/serve send) or training (what the run's examples were rendered "
                                      f"with); {RECORDED} served."),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="Score free-text questions under this "
                                             "system prompt instead, e.g. a base model under a tuned run's prompt "
                                             "(recorded in the report)."),
    data: Path | None = typer.Option(None, "--data", help="A `medtune prepare` output (for medquad-test) or the raw "
                                     "dataset root (default MEDTUNE_DATA_DIR)."),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default RUN/eval or MEDTUNE_HOME/evals/...)."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1, help="Answer budget; the report gives "
                                              f"the share of answers that reached it; {RECORDED} 384."),
    temperature: float | None = typer.Option(None, "--temperature", min=0.0, help=f"0 = greedy; {RECORDED} 0."),
    top_p: float | None = typer.Option(None, "--top-p", min=0.0, max=1.0, help=f"{RECORDED} 1.0."),
    num_beams: int | None = typer.Option(None, "--num-beams", min=1, help=f"{RECORDED} 1."),
    repetition_penalty: float | None = typer.Option(None, "--repetition-penalty", min=0.0, help=f"{RECORDED} 1.0."),
    repetition_scope: str | None = typer.Option(None, "--repetition-scope", help="Tokens the penalty counts: answer "
                                                "(the answer so far) or prompt+answer (transformers' default, which "
                                                f"also penalises the end-of-turn token); {RECORDED} answer."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Prompts per generate call / options "
                                          f"per forward; {RECORDED} 8."),
    rag: str | None = typer.Option(None, "--rag", help="Answer free-text questions from this index "
                                   "(`medtune index build ... --name NAME`), citing its passages."),
    rag_k: int = typer.Option(4, "--rag-k", min=1, help="Passages retrieved per question with --rag."),
    rag_min_score: float | None = typer.Option(
        None, "--rag-min-score", min=0.0, max=1.0, help="With --rag, sources-only mode: when no passage reaches this "
        "cosine, reply that the sources do not cover the question (no model call). Choose it with `medtune index "
        "calibrate INDEX PREPARED` on validation; writes RUN/eval-rag-minX."),
    rag_hide_own_document: bool = typer.Option(False, "--rag-hide-own-document", help="With --rag: never retrieve "
                                               "a passage of the question's own MedQuAD document, so the sources "
                                               "do not cover it (scores says_not_covered); writes "
                                               "RUN/eval-rag-own-hidden."),
    engine: str | None = typer.Option(None, "--engine", help="Free-text generation: transformers, or vllm "
                                      "(vLLM's offline batch API; needs a CUDA GPU and pip install vllm)."),
    grader: str | None = typer.Option(None, "--grader", help="Rubric tasks: phrase (offline) or judge (--judge-url)."),
    judge_url: str | None = typer.Option(None, "--judge-url", help="OpenAI-compatible endpoint of the rubric judge, "
                                         "e.g. http://127.0.0.1:8000/v1 (`medtune serve`, llama.cpp server)."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="Model id at --judge-url."),
    guard: bool = typer.Option(False, "--guard", help="Score the served behaviour: questions go through the guard "
                               "(its system prompt, canned replies, output checks, disclaimer); writes RUN/eval-guard."),
    guard_config: str | None = typer.Option(None, "--guard-config", help="Guard YAML file (with --guard)."),
) -> None:
    """Evaluate a model: write results.json, report.md and report.html, and print the headline metrics.

    Settings not given as flags come from the run's recorded recipe (its ``eval:`` section) when MODEL is a run
    folder, so ``medtune eval RUN`` scores what the recipe planned."""
    from rich.table import Table

    from medtune.errors import UserError
    from medtune.evaluate.report import format_with_interval
    from medtune.evaluate.runner import evaluate_model
    from medtune.evaluate.tasks import parse_tasks

    if prompt not in (None, "served", "training"):
        raise UserError(f"--prompt must be served or training, not {prompt!r}.")
    if engine not in (None, "transformers", "vllm"):
        raise UserError(f"--engine must be transformers or vllm, not {engine!r}.")
    if repetition_scope not in (None, "answer", "prompt+answer"):
        raise UserError(f"--repetition-scope must be answer or prompt+answer, not {repetition_scope!r}.")
    if grader not in (None, "phrase", "judge"):
        raise UserError("--grader must be phrase, or judge together with --judge-url URL.")
    settings = eval_settings(model, {
        "tasks": [t.name for t in parse_tasks(tasks)] if tasks is not None else None, "limit": limit, "sample_seed": seed, "shots": shots, "use_chat_template": chat_template,
        "mc_chat_template": mc_chat_template, "prompt": prompt, "system_prompt": system_prompt, "rubric_grader": grader, "judge_url": judge_url,
        "judge_model": judge_model, "engine": engine, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
        "temperature": temperature, "top_p": top_p, "num_beams": num_beams, "repetition_penalty": repetition_penalty,
        "repetition_scope": repetition_scope, "rag_min_score": rag_min_score})
    if settings.rubric_grader == "judge" and not settings.judge_url:
        raise UserError("--grader judge needs --judge-url URL (an OpenAI-compatible endpoint).")
    names = settings.tasks
    retriever = None
    if rag_min_score is not None and not rag:
        raise UserError("--rag-min-score needs --rag NAME (the index whose passage scores it thresholds).")
    if rag_hide_own_document and not rag:
        raise UserError("--rag-hide-own-document needs --rag NAME (the index to retrieve from).")
    if rag:
        from medtune.rag import open_retriever

        retriever = open_retriever(name=rag)
    guard_object = None
    if guard:
        from medtune.guard import Guard

        guard_object = Guard.from_yaml(guard_config) if guard_config else Guard()
    results = evaluate_model(model, names, data_dir=data, settings=settings, out_dir=out,
                             rag=retriever, rag_k=rag_k, guard=guard_object,
                             rag_hide_own_document=rag_hide_own_document)
    table = Table(title=f"medtune eval {model}" + (f" (retrieval: {rag}, k={rag_k})" if rag else ""))
    for column in ("task", "n", "metric", "value [95% CI]"):
        table.add_column(column)
    headline = ("acc", "acc_norm", "random_baseline", "rubric_score", "rougeL", "bertscore_minilm_f1",
                "embedding_cosine", "word_overlap", "reference_unsupported_rate", "repeated_3gram_fraction",
                "reference_repeated_3gram_fraction",
                "hit_token_limit", "rag_abstained", "evidence_found", "cites_source", "citation_precision",
                "citation_precision_reattributed", "citation_reattributed", "says_not_covered",
                "invalid_citation", "reference_in_index",
                "guard_blocked", "guard_referred", "guard_refused", "guard_output_flagged", "guard_output_blocked",
                "tokens_per_s")
    for name, data_ in results["tasks"].items():
        intervals = data_.get("intervals", {})
        for metric in headline:
            if metric in data_["metrics"]:
                table.add_row(name, str(data_["n"]), metric,
                              format_with_interval(data_["metrics"][metric], intervals.get(metric)))
        for tag, figures in data_.get("tags", {}).items():
            if tag.startswith("axis:") or tag in ("emergency", "rare_disease"):
                table.add_row(f"  {tag}", str(figures["n"]), "rubric_score", f"{figures['score']:.4f}")
        for group, figures in data_.get("groups", {}).items():
            table.add_row(f"  {group}", str(figures["n"]), "acc", f"{figures['acc']:.4f} ± {figures['acc_stderr']:.4f}")
    console.print(table)
    console.print(f"reports: {results['out_dir']}/report.html, report.md, results.json")
    if results.get("kept_tasks"):
        console.print(f"kept earlier results for tasks {', '.join(results['kept_tasks'])} in results.json")
    if results.get("replaced_results_of"):
        console.print(f"replaced the earlier results.json there (model {results['replaced_results_of']})")


def register(app: typer.Typer) -> None:
    """Add ``medtune eval``."""
    app.command("eval")(eval_command)
