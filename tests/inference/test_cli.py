"""`medtune ask` end to end on the tiny model (typer's CliRunner)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medtune.cli import get_app

pytest.importorskip("medtune.guard")


def test_ask_streams_and_shows_timing(tiny_model_dir) -> None:
    result = CliRunner().invoke(get_app(), ["ask", "What is asthma?", "--model", str(tiny_model_dir),
                                            "--temperature", "0", "--max-new-tokens", "6", "--no-guard"])
    assert result.exit_code == 0, result.output
    assert " s · first token " in result.output and "tokens" in result.output


def test_ask_emergency_gets_the_canned_reply(tiny_model_dir) -> None:
    from medtune.guard import Guard

    question = "I have crushing chest pain spreading to my left arm and I can't breathe right now"
    result = CliRunner().invoke(get_app(), ["ask", question, "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    expected = Guard().check_input(question).response
    assert expected.split()[0] in result.output and "guard: emergency" in result.output
    assert result.output.count(expected.splitlines()[0]) == 1   # streamed once, not printed again after it


def test_chat_answers_a_short_follow_up_and_prints_a_canned_reply_once(tiny_model_dir) -> None:
    session = "What is hypertension?\ngo on\nI have crushing chest pain and my left arm is numb right now\n/exit\n"
    result = CliRunner().invoke(get_app(), ["chat", "--model", str(tiny_model_dir), "--temperature", "0",
                                            "--max-new-tokens", "4"], input=session)
    assert result.exit_code == 0, result.output
    assert result.output.count("guard: emergency") == 1          # the red flag, not the follow-up
    assert result.output.count("This may be a medical emergency") == 1


def test_unknown_backend_exits_2(tiny_model_dir) -> None:
    from medtune.errors import UserError

    result = CliRunner().invoke(get_app(), ["ask", "q", "--backend", "nope", "--no-guard"])
    assert isinstance(result.exception, UserError) and "nope" in str(result.exception)
