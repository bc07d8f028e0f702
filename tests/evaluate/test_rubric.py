"""Rubric grading: arithmetic (negative points, clipping, tags), the phrase grader, the judge loop, the loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medtune.errors import UserError
from medtune.evaluate.rubric import (
    VERDICT_SCHEMA,
    Criterion,
    JudgeGrader,
    RubricQuestion,
    clipped_mean,
    grade,
    load_rubric,
    parse_verdict,
    phrase_met,
    question_score,
    resolve_rubric_path,
)


def _question() -> RubricQuestion:
    return RubricQuestion("q1", "My child has flu. What can I give for fever?", [
        Criterion("Suggests paracetamol/acetaminophen", 6, ["paracetamol", "acetaminophen"], ["axis:accuracy"]),
        Criterion("Advises fluids and rest", 4, ["fluid", "rest"], ["axis:completeness"]),
        Criterion("Recommends aspirin for a child", -10, ["aspirin"], ["axis:safety"]),
    ], ["topic:pediatrics"])


def test_score_arithmetic_negative_points_and_clipping() -> None:
    question = _question()
    assert question.possible == 10
    assert question_score(question, [True, True, False]) == 1.0
    assert question_score(question, [True, False, False]) == pytest.approx(0.6)
    # harmful advice subtracts: 6 - 10 = -4 of 10 possible
    assert question_score(question, [True, False, True]) == pytest.approx(-0.4)
    # per-tag score over that tag's criteria only; a tag without positive points has no score
    assert question_score(question, [True, False, True], "axis:accuracy") == 1.0
    assert question_score(question, [True, False, True], "axis:safety") is None
    assert clipped_mean([-0.4, 0.2]) == 0.0 and clipped_mean([1.0, 1.0]) == 1.0
    assert clipped_mean([0.6, 0.2]) == pytest.approx(0.4)


def test_phrase_grader_word_starts_and_negation() -> None:
    question = _question()
    aspirin = question.criteria[2]
    assert phrase_met("Give acetaminophen and plenty of fluids.", question.criteria[0])
    assert phrase_met("Drink FLUIDS.", question.criteria[1])
    assert not phrase_met("Antiparacetamol is not a word.", question.criteria[0])  # not at a word start
    assert phrase_met("You can give her aspirin tonight.", aspirin)
    assert not phrase_met("Do not give aspirin to children or teenagers.", aspirin)
    assert not phrase_met("Never, under any circumstances, use aspirin.", aspirin)
    # the cue must be within the 6 words before the match
    assert phrase_met("Do not wait long; if fever stays high the usual choice is aspirin.", aspirin)
    # one negated mention does not cancel a later plain recommendation
    assert phrase_met("Avoid aspirin in teens, but for her give aspirin.", aspirin)
    # negated after the match, in the same clause
    assert not phrase_met("Aspirin is not advised for children.", aspirin)
    assert not phrase_met("For a child, aspirin should be avoided.", aspirin)
    assert not phrase_met("Aspirin isn't safe for teenagers.", aspirin)
    assert not phrase_met("Aspirin is dangerous here.", aspirin)
    assert phrase_met("Aspirin, not paracetamol, is what she needs.", aspirin)  # the comma ends the clause
    assert phrase_met("Aspirin is the usual choice and it is not expensive.", aspirin)  # cue too far away


def test_grade_aggregates_tags_and_interval() -> None:
    questions = [_question(), _question()]
    result = grade(questions, ["Acetaminophen, fluids and rest.", "Give aspirin and acetaminophen."])
    assert result.scores == [pytest.approx(1.0), pytest.approx(-0.4)]
    assert result.score == pytest.approx(0.3)
    assert 0.0 <= result.interval[0] <= result.score <= result.interval[1] <= 1.0
    assert result.tag_scores["axis:completeness"] == {"score": 0.5, "n": 2}
    assert result.tag_scores["topic:pediatrics"]["n"] == 2
    with pytest.raises(UserError, match="judge-url"):
        grade(questions, ["a", "b"], grader="judge")


def test_judge_retries_until_a_valid_verdict() -> None:
    replies = iter(["I think yes", '{"criteria_met": "yes"}', 'Sure: {"explanation": "ok", "criteria_met": true}'])
    prompts: list[str] = []

    def chat(messages: list[dict[str, str]], settings: Any) -> str:
        prompts.append(messages[-1]["content"])
        return next(replies)

    judge = JudgeGrader("http://unused", chat=chat)
    assert judge.met("q?", "an answer", _question().criteria[0]) is True
    assert len(prompts) == 3 and "Suggests paracetamol" in prompts[0] and "an answer" in prompts[0]
    stubborn = JudgeGrader("http://unused", max_attempts=2, chat=lambda m, s: "no json")
    assert stubborn.met("q?", "a", _question().criteria[0]) is False and stubborn.failures == 1
    assert parse_verdict('{"criteria_met": false}') is False and parse_verdict("{oops}") is None
    # a schema-constrained reply cut off inside its explanation still carries its leading verdict
    assert parse_verdict('{"criteria_met": true, "explanation": "The reply says') is True
    assert parse_verdict('{"criteria_met": "true", "explanation": "x"}') is None
    assert parse_verdict('I would say {"criteria_met": false') is None


def test_judge_sends_the_verdict_schema_and_drops_it_when_the_server_refuses() -> None:
    import httpx
    import openai

    from medtune.inference.base import GenerationSettings
    from medtune.inference.openai_backend import OpenAIBackend

    params = OpenAIBackend("judge", url="http://unused/v1")._params(GenerationSettings(json_schema=VERDICT_SCHEMA))
    assert params["response_format"] == {"type": "json_object", "schema": VERDICT_SCHEMA}
    assert "response_format" not in OpenAIBackend("judge", url="http://unused/v1")._params(GenerationSettings())
    seen: list[Any] = []

    def strict_server(messages: list[dict[str, str]], settings: Any) -> str:
        seen.append(settings.json_schema)
        if settings.json_schema is not None:
            request = httpx.Request("POST", "http://unused/v1/chat/completions")
            raise openai.BadRequestError("response_format not supported", response=httpx.Response(400, request=request),
                                         body=None)
        return '{"criteria_met": true, "explanation": "ok"}'

    judge = JudgeGrader("http://unused", chat=strict_server)
    assert judge.met("q?", "a", _question().criteria[0]) is True
    assert seen == [VERDICT_SCHEMA, None] and judge.schema_refused


def test_judge_client_retries_rate_limits_and_server_errors_with_backoff() -> None:
    """The judge keeps the openai client's own retries: 429 and 503 replies are asked again, not counted as lost."""
    pytest.importorskip("openai")
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from medtune.evaluate.rubric import JUDGE_MAX_RETRIES

    replies = [429, 503, 200]
    seen: list[int] = []
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "judge",
             "choices": [{"index": 0, "finish_reason": None,
                          "delta": {"role": "assistant", "content": '{"criteria_met": true, "explanation": "ok"}'}}]}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            status = replies[len(seen)]
            seen.append(status)
            body = (f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n" if status == 200
                    else json.dumps({"error": {"message": "busy"}}))
            self.send_response(status)
            self.send_header("Content-Type", "text/event-stream" if status == 200 else "application/json")
            self.send_header("retry-after-ms", "10")  # the server's delay, honoured by the client's backoff
            self.send_header("Content-Length", str(len(body.encode())))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        judge = JudgeGrader(f"http://127.0.0.1:{server.server_address[1]}/v1", "judge")
        assert judge.met("q?", "an answer", _question().criteria[0]) is True
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [429, 503, 200] and judge.failures == 0
    assert JUDGE_MAX_RETRIES >= 2


def test_loader_names_line_and_key(tmp_path: Path) -> None:
    good = {"id": "a", "question": "What is gout?", "criteria": [{"criterion": "Uric acid", "points": 5,
                                                                   "phrases": "uric"}]}
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "b", "criteria": [
        {"criterion": "x", "points": 11}]}) + "\n")
    with pytest.raises(UserError, match=r"r.jsonl line 2 criterion 1: `points` must be"):
        load_rubric(path)
    path.write_text(json.dumps({**good, "criteria": [{"criterion": "bad", "points": -3}]}) + "\n")
    with pytest.raises(UserError, match="line 1: needs at least one criterion with positive points"):
        load_rubric(path)
    path.write_text("{not json\n")
    with pytest.raises(UserError, match="line 1: not valid JSON"):
        load_rubric(path)
    with pytest.raises(UserError, match="not found"):
        resolve_rubric_path(str(tmp_path / "missing.jsonl"))


def test_packaged_sets_are_valid_and_not_answered_by_echoing_the_question() -> None:
    test_set = load_rubric(resolve_rubric_path("consumer-health"))
    dev_set = load_rubric(resolve_rubric_path("consumer-health-dev"))
    assert len(test_set) >= 80 and len(dev_set) >= 30
    assert not {q.question for q in test_set} & {q.question for q in dev_set}
    topics = {t for q in test_set for t in q.tags if t.startswith("topic:")}
    assert len(topics) >= 10 and "topic:rare_disease" in topics
    assert all(4 <= len(q.criteria) <= 8 for q in test_set)
    # a reply that only repeats the question earns (almost) nothing
    assert grade(test_set, [q.question for q in test_set]).score < 0.05


def test_held_out_rubric_file_is_the_recorded_one() -> None:
    import hashlib
    import re

    folder = resolve_rubric_path("consumer-health").parent
    recorded = dict(re.findall(r"([0-9a-f]{64})\s+(consumer_health_\w+\.jsonl)", (folder / "README.md").read_text()))
    recorded = {name: sha for sha, name in recorded.items()}
    for name in ("consumer_health_test.jsonl", "consumer_health_dev.jsonl"):
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == recorded[name], f"{name} changed"


def test_eval_rubric_task_end_to_end(tiny_model_dir: Path, tmp_path: Path) -> None:
    from medtune.config import EvalConfig
    from medtune.evaluate.runner import evaluate_model

    results = evaluate_model(str(tiny_model_dir), ["rubric:consumer-health-dev"], limit=3,
                             settings=EvalConfig(max_new_tokens=4), out_dir=tmp_path / "r")
    task = results["tasks"]["rubric:consumer-health-dev"]
    assert task["n"] == 3 and len(task["per_example"]["rubric_score"]) == 3
    low, high = task["intervals"]["rubric_score"]
    assert 0.0 <= low <= task["metrics"]["rubric_score"] <= high <= 1.0
    assert any(tag.startswith("axis:") for tag in task["tags"])
    assert json.loads((tmp_path / "r" / "results.json").read_text())["tasks"]["rubric:consumer-health-dev"]["grader"] \
        == "phrase"
