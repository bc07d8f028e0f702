"""The Ollama TEMPLATE derived from a chat template renders conversations exactly like the HF template."""

from __future__ import annotations

import copy

import pytest

from medtune.errors import UserError
from medtune.export.modelfile import build_modelfile, detect_family
from medtune.models import load_tokenizer
from medtune.prompts import render_messages
from medtune.tiny_models import LLAMA3_TEMPLATE, MISTRAL_TEMPLATE

from .gotemplate import render

CONVERSATION = [
    {"role": "system", "content": "You are a careful medical assistant."},
    {"role": "user", "content": "What is hypertension?"},
    {"role": "assistant", "content": "High blood pressure."},
    {"role": "user", "content": "How is it treated?"},
]


@pytest.fixture(scope="module")
def smol_tokenizer():
    return load_tokenizer("smollm2-135m-instruct")


def _with_template(tokenizer, template: str, bos: str, eos: str):
    clone = copy.deepcopy(tokenizer)
    clone.chat_template = template
    clone.bos_token, clone.eos_token = bos, eos
    return clone


def _go_render(template: str) -> str:
    """Render like Ollama: the SYSTEM becomes the first message and $.System."""
    messages = [{"Role": m["role"], "Content": m["content"]} for m in CONVERSATION]
    return render(template, {"Messages": messages, "System": CONVERSATION[0]["content"]})


@pytest.mark.parametrize("kind", ["chatml", "llama3", "mistral"])
def test_template_matches_hf_rendering(smol_tokenizer, kind: str) -> None:
    if kind == "chatml":
        tokenizer, bos = smol_tokenizer, ""
    elif kind == "llama3":
        tokenizer, bos = _with_template(smol_tokenizer, LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"), \
            "<|begin_of_text|>"
    else:
        tokenizer, bos = _with_template(smol_tokenizer, MISTRAL_TEMPLATE, "<s>", "</s>"), "<s>"
    family = detect_family(tokenizer)
    assert family.name == kind
    expected = render_messages(CONVERSATION, "chat-template", tokenizer, generation_prompt=True)
    expected = expected.removeprefix(bos)  # llama.cpp / Ollama add BOS themselves
    assert _go_render(family.template) == expected


def test_modelfile_content(smol_tokenizer, tmp_path) -> None:
    text = build_modelfile(tmp_path / "m.gguf", smol_tokenizer, "Be careful.", temperature=0.2, num_ctx=4096)
    assert f"FROM {tmp_path / 'm.gguf'}\n" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "<|im_start|>"' in text
    assert 'SYSTEM """Be careful."""' in text
    assert "PARAMETER temperature 0.2" in text and "PARAMETER num_ctx 4096" in text
    assert 'TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}' in text


def test_unknown_template_is_a_user_error(smol_tokenizer) -> None:
    odd = _with_template(smol_tokenizer, "{% for m in messages %}### {{ m['content'] }}\n{% endfor %}", "", "")
    with pytest.raises(UserError, match="not ChatML"):
        detect_family(odd)
