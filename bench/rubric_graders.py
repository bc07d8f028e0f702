"""Benchmark: the phrase grader against an LLM judge on the same rubric answers.

Reads the answers of one or more ``medtune eval --tasks rubric:...`` results (results.json keeps every answer),
grades a seeded random sample of their questions with both graders and prints one JSON line per run of the bench:
per result, the rubric score under each grader (bootstrap 95% intervals), the per-criterion agreement of the two
graders and Cohen's kappa, how often each says "met", judge failures and seconds. Without ``--judge-url`` it starts
llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server``) on the offline SmolLM2-135M GGUF as the judge:
enough to show the path on a CPU; a 135M judge is not a good grader, and the agreement says how far it is from the
phrase grader.

    python bench/rubric_graders.py RUN/eval/base RUN/eval/tuned [--task rubric:consumer-health] [--questions 20]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _start_judge(port: int) -> tuple[str, Any]:
    """Start llama.cpp's server on the offline SmolLM2 GGUF; return (base url, process)."""
    from medtune.models import SMOLLM2_ALIAS, builtin_gguf_path
    from medtune.serve.engine import llamacpp_server_command, wait_until_ready

    command = llamacpp_server_command(builtin_gguf_path(SMOLLM2_ALIAS), port=port, n_ctx=2048)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    wait_until_ready(f"{url}/models", process)
    return url, process


def _grade_result(path: str, task: str, sample: int, seed: int, judge: Any) -> dict[str, Any]:
    """Grade one results.json's rubric answers with both graders and compare them."""
    from sklearn.metrics import cohen_kappa_score

    from medtune.evaluate.compare import load_results
    from medtune.evaluate.rubric import grade, load_rubric, resolve_rubric_path

    results = load_results(path)
    if task not in results["tasks"]:
        raise SystemExit(f"{path}: no task {task} (has {', '.join(results['tasks'])}).")
    answers = {s["id"]: s["answer"] for s in results["tasks"][task]["samples"]}
    questions = [q for q in load_rubric(resolve_rubric_path(task.split(":", 1)[1])) if q.id in answers]
    questions = sorted(random.Random(seed).sample(questions, min(sample, len(questions))), key=lambda q: q.id)
    texts = [answers[q.id] for q in questions]
    began = time.perf_counter()
    phrase = grade(questions, texts, "phrase")
    judged = grade(questions, texts, "judge", judge)
    seconds = time.perf_counter() - began
    flat_phrase = [m for row in phrase.met for m in row]
    flat_judge = [m for row in judged.met for m in row]
    agree = sum(a == b for a, b in zip(flat_phrase, flat_judge, strict=True)) / len(flat_phrase)
    kappa = cohen_kappa_score(flat_phrase, flat_judge) if len(set(flat_phrase + flat_judge)) > 1 else None
    return {"result": path, "questions": len(questions), "criteria": len(flat_phrase),
            "phrase_score": round(phrase.score, 4), "phrase_ci": [round(x, 4) for x in phrase.interval],
            "judge_score": round(judged.score, 4), "judge_ci": [round(x, 4) for x in judged.interval],
            "criterion_agreement": round(agree, 4), "cohen_kappa": None if kappa is None else round(float(kappa), 4),
            "phrase_met_rate": round(sum(flat_phrase) / len(flat_phrase), 4),
            "judge_met_rate": round(sum(flat_judge) / len(flat_judge), 4),
            "judge_failures": judged.judge_failures, "seconds": round(seconds, 1)}


def main() -> None:
    """Grade the given results with both graders and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.json files or eval folders with a rubric task")
    parser.add_argument("--task", default="rubric:consumer-health")
    parser.add_argument("--questions", type=int, default=20, help="seeded random sample of questions per result")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--judge-url", default=None, help="an OpenAI-compatible endpoint (default: start llama.cpp "
                        "on the offline SmolLM2 GGUF)")
    parser.add_argument("--judge-model", default=None)
    parser.add_argument("--port", type=int, default=8089)
    args = parser.parse_args()

    from medtune.evaluate.rubric import JudgeGrader

    process = None
    url = args.judge_url
    if url is None:
        url, process = _start_judge(args.port)
    try:
        rows = [_grade_result(path, args.task, args.questions, args.seed, JudgeGrader(url, args.judge_model))
                for path in args.results]
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    print(json.dumps({"bench": "rubric_graders", "task": args.task, "judge": args.judge_model or
                      ("smollm2-135m-instruct (llama.cpp)" if args.judge_url is None else url),
                      "seed": args.seed, "results": rows}))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
