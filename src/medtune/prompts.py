"""Prompt styles: how a question (and answer) become model text. Shared by data, train, eval, inference, export.

Styles (a small registry):
  * ``chat-template``: the model's own chat template (``tokenizer.apply_chat_template``); a system prompt is
    folded into the first user turn for templates that reject a system role (Mistral, known trap #6).
  * ``mistral-inst``: the study's literal Mistral format ``<s>[INST] ... [/INST] answer</s>``.
  * ``llama3-header``: the study's literal Llama-3 header format ending each turn with ``<|eot_id|>``.

Text from datasets or users never reaches a tokenizer with chat control strings intact:
:func:`strip_control_strings` removes them first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from medtune.errors import UserError
from medtune.served_model import served_model

Message = dict[str, str]

#: Chat control strings of common templates (ChatML, Llama-2/3, Mistral, Gemma, Phi, generic BOS/EOS).
CONTROL_STRINGS: tuple[str, ...] = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>",
    "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<s>", "</s>", "<start_of_turn>", "<end_of_turn>",
    "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|pad|>", "<unk>",
)
_CONTROL_RE = re.compile("|".join(re.escape(s) for s in sorted(CONTROL_STRINGS, key=len, reverse=True)))
_RESERVED_RE = re.compile(r"<\|reserved_special_token_\d+\|>|<\|[a-z_]+_id\|>")


def strip_control_strings(text: str) -> str:
    """Remove chat control strings (``<|im_start|>``, ``[INST]``, ``</s>`` ...) from untrusted text."""
    cleaned = _RESERVED_RE.sub(" ", _CONTROL_RE.sub(" ", text))
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip()


def has_control_strings(text: str) -> bool:
    """True when ``text`` contains a chat control string."""
    return bool(_CONTROL_RE.search(text) or _RESERVED_RE.search(text))


SERVED = "served"


def training_system_prompt(configured: str | None) -> str | None:
    """The system prompt training examples are rendered with (``data.system_prompt``).

    ``served`` (the default) = the guard's system prompt, i.e. what ask, chat, the UI, serve, eval and the Modelfile
    send, so the tuned behaviour is learned under the prompt it is used under; None or ``""`` = no system message (the
    template's default, e.g. SmolLM2's "You are a helpful AI assistant named SmolLM..."); any other text = itself.
    """
    if configured == SERVED:
        from medtune.guard.config import default_guard_config

        return default_guard_config().system_prompt
    return configured or None


def served_system_prompt(model: str | Any = None) -> str:
    """The system prompt every answer path sends for ``model``: the one a run folder trained with (its run.json
    ``system_prompt``), else the guard's. Runs trained without a system prompt are served with the guard's."""
    return served_prompt_for(served_model(model).trained_system_prompt if model else None)


def served_passage_header(model: str | Any = None) -> str:
    """The passage header (``data.grounded.passage_header``: ``question`` or ``topic``) a run folder's grounded
    training prompts used (:meth:`medtune.served_model.ServedModel.passage_header`), so ``--rag`` serves passages the
    way the run learned them; ``question`` for base models and runs trained without grounded data."""
    return served_model(model).passage_header() if model else "question"


def served_prompt_for(trained: str | None) -> str:
    """The system prompt served for a run trained with ``trained`` (the guard's when it trained without one)."""
    if trained:
        return str(trained)
    from medtune.guard.config import default_guard_config

    return default_guard_config().system_prompt


def build_messages(question: str, system_prompt: str | None = None, answer: str | None = None) -> list[Message]:
    """Return the message list for one turn (system optional, assistant answer optional)."""
    messages: list[Message] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": question})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def fold_system_into_first_user(messages: list[Message]) -> list[Message]:
    """Merge a leading system message into the first user turn (for templates without a system role)."""
    if not messages or messages[0]["role"] != "system":
        return list(messages)
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    for message in rest:
        if message["role"] == "user":
            message["content"] = f"{system}\n\n{message['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]


def template_accepts_system(tokenizer: Any) -> bool:
    """True when the tokenizer's chat template renders a system message (Mistral's raises)."""
    probe = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    try:
        rendered = tokenizer.apply_chat_template(probe, tokenize=False)
    except Exception:  # jinja raise_exception in the template
        return False
    return "S" in rendered


def _apply_template(tokenizer: Any, messages: list[Message], generation_prompt: bool) -> str:
    """Render messages with the tokenizer's chat template, folding the system prompt when needed."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise UserError("the model has no chat template; use prompt_style: mistral-inst or llama3-header.")
    if messages and messages[0]["role"] == "system" and not template_accepts_system(tokenizer):
        messages = fold_system_into_first_user(messages)
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt))


def _mistral_inst(messages: list[Message], generation_prompt: bool) -> str:
    """The study's Mistral format: ``<s>[INST] q [/INST] a</s>`` per turn, system folded into the first."""
    text = "<s>"
    for message in fold_system_into_first_user(messages):
        if message["role"] == "user":
            text += f"[INST] {message['content']} [/INST]"
        else:
            text += f" {message['content']}</s>"
    return text


def _llama3_header(messages: list[Message], generation_prompt: bool) -> str:
    """The study's Llama-3 header format with ``<|eot_id|>`` closing every turn."""
    text = "<|begin_of_text|>"
    for message in messages:
        text += f"<|start_header_id|>{message['role']}<|end_header_id|>\n\n{message['content']}<|eot_id|>"
    if generation_prompt:
        text += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    return text


LiteralStyle = Callable[[list[Message], bool], str]
LITERAL_STYLES: dict[str, LiteralStyle] = {"mistral-inst": _mistral_inst, "llama3-header": _llama3_header}
PROMPT_STYLES: tuple[str, ...] = ("chat-template", *LITERAL_STYLES)


def render_messages(messages: list[Message], style: str, tokenizer: Any = None, generation_prompt: bool = True) -> str:
    """Render a conversation as text in ``style``; ``generation_prompt`` appends the assistant header."""
    if style == "chat-template":
        if tokenizer is None:
            raise UserError("prompt_style chat-template needs the model's tokenizer; name a model.")
        return _apply_template(tokenizer, messages, generation_prompt)
    if style not in LITERAL_STYLES:
        raise UserError(f"prompt_style '{style}' is unknown; choose one of: {', '.join(PROMPT_STYLES)}")
    if style == "mistral-inst" and not generation_prompt and messages[-1]["role"] != "assistant":
        raise UserError("mistral-inst: a conversation must end with an assistant turn when not generating.")
    return LITERAL_STYLES[style](messages, generation_prompt)


def render_example(
    question: str, answer: str, style: str, tokenizer: Any = None, system_prompt: str | None = None
) -> tuple[str, str]:
    """Return ``(prompt, completion)`` text for one QA pair; the completion ends with the end-of-turn token.

    Question and answer are sanitised of control strings first.
    """
    question, answer = strip_control_strings(question), strip_control_strings(answer)
    prompt = render_messages(build_messages(question, system_prompt), style, tokenizer, generation_prompt=True)
    full = render_messages(build_messages(question, system_prompt, answer), style, tokenizer, generation_prompt=False)
    if not full.startswith(prompt):
        raise UserError(f"prompt style '{style}': the rendered prompt is not a prefix of the full conversation; "
                        "this template cannot be split into prompt/completion.")
    return prompt, full[len(prompt):]


def end_of_turn_token(tokenizer: Any, style: str = "chat-template") -> str:
    """Return the token that closes an assistant turn (``<|im_end|>``, ``<|eot_id|>``, ``</s>`` ...)."""
    if style == "mistral-inst":
        return "</s>"
    if style == "llama3-header":
        return "<|eot_id|>"
    _, completion = render_example("q?", "ANSWER", "chat-template", tokenizer)
    tail = completion.split("ANSWER", 1)[1].strip()
    return tail or str(tokenizer.eos_token)
