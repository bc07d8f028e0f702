"""One prompt from training to serving: a question renders to the same text, up to the answer, in the training
data (prepare), in eval, in ask/chat/UI (the Assistant's messages through the backend's template) and in the
exported Modelfile (Ollama's Go template with its SYSTEM)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from medtune.data.pipeline import format_rows
from medtune.evaluate.generation import build_prompt
from medtune.evaluate.runner import _run_context
from medtune.export.modelfile import build_modelfile, detect_family
from medtune.guard import Guard
from medtune.guard.config import default_guard_config
from medtune.inference.assistant import Assistant
from medtune.models import load_tokenizer
from medtune.prompts import render_messages, served_system_prompt, training_system_prompt

from .gotemplate import render

QUESTION = "What are the early signs of glaucoma?"


class _TemplateBackend:
    """A backend stand-in that renders messages with the tokenizer's chat template (as TransformersBackend does)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def info(self) -> Any:
        from medtune.inference.base import ModelInfo

        return ModelInfo(backend="test", model="smol", context_window=8192)

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return len(self.tokenizer(render_messages(messages, "chat-template", self.tokenizer))["input_ids"])


@pytest.fixture(scope="module")
def smol() -> Any:
    return load_tokenizer("smollm2-135m-instruct")


def _run_folder(tmp_path: Path, system_prompt: str | None) -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "run.json").write_text(json.dumps({"prompt_style": "chat-template", "system_prompt": system_prompt}))
    return run


@pytest.mark.parametrize("setting", ["served", "You are a terse clinic helper."])
def test_train_eval_ask_and_modelfile_render_the_same_prompt(smol: Any, tmp_path: Path, setting: str) -> None:
    trained_with = training_system_prompt(setting)
    rows = [{"question": QUESTION, "answer": "Often none; later, loss of side vision.", "source": "x", "original_id": "1"}]
    format_rows(rows, "chat-template", smol, trained_with, progress=False)
    train_prompt = rows[0]["prompt"]
    run = _run_folder(tmp_path, trained_with)

    context = _run_context(str(run))
    eval_prompt = build_prompt(QUESTION, smol, style=context["style"], system_prompt=context["system_prompt"])

    assistant = Assistant(_TemplateBackend(smol), Guard(default_guard_config().model_copy(update={"classifier": False})),
                          system_prompt=served_system_prompt(run))
    ask_prompt = render_messages(assistant.build_messages(QUESTION, []), "chat-template", smol)

    modelfile = build_modelfile(tmp_path / "m.gguf", smol, served_system_prompt(run))
    template = re.search(r'TEMPLATE """(.*?)"""', modelfile, re.S).group(1)  # type: ignore[union-attr]
    system = re.search(r'SYSTEM """(.*?)"""', modelfile, re.S).group(1)  # type: ignore[union-attr]
    assert detect_family(smol).name == "chatml"
    ollama_prompt = render(template, {"System": system, "Messages": [{"Role": "system", "Content": system},
                                                                      {"Role": "user", "Content": QUESTION}]})

    assert train_prompt == eval_prompt == ask_prompt == ollama_prompt
    assert trained_with in train_prompt


def test_served_prompt_defaults_to_the_guards(tmp_path: Path) -> None:
    guard_prompt = default_guard_config().system_prompt
    assert training_system_prompt("served") == guard_prompt
    assert training_system_prompt(None) is None and training_system_prompt("") is None
    assert served_system_prompt(None) == guard_prompt
    # a run trained without a system prompt (the template's default) is still served with the guard's
    assert served_system_prompt(_run_folder(tmp_path, None)) == guard_prompt
    assert served_system_prompt(_run_folder(tmp_path, "Custom.")) == "Custom."


def test_guarded_server_sends_the_runs_trained_prompt(tmp_path: Path) -> None:
    from medtune.serve.engine import served_guard
    from medtune.serve.requests import guarded_messages

    guard = served_guard(str(_run_folder(tmp_path, "You are a terse clinic helper.")))
    sent, decision, _ = guarded_messages(guard, [{"role": "system", "content": "client prompt"},
                                                 {"role": "user", "content": "Hi"}])
    assert sent[0] == {"role": "system", "content": "You are a terse clinic helper."} and decision.action == "answer"
    assert "client prompt" not in str(sent)
    assert served_guard("smollm2-135m-instruct").system_prompt == default_guard_config().system_prompt
