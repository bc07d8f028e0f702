"""Optional model moderators for GPU users (``moderators:`` in the guard config): Llama Guard 3 and Llama
Prompt Guard 2, loaded with transformers from a hub id or a local folder.

Each moderator turns a message into medtune intent classes (``self_harm``, ``misuse``, ``injection``).
Llama Guard's hazard taxonomy is mapped for a medical assistant: S6 "specialized advice" flags *all* medical
advice, which is this assistant's job, so it is ignored; S11 suicide & self-harm is kept; violent and
non-violent crimes and weapons (S1, S2, S9) count as misuse/harming someone. Off by default (empty list).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from medtune.errors import UserError

#: Llama Guard 3 hazard category -> medtune intent class (None: ignored by the medical policy).
LLAMA_GUARD_CATEGORIES: dict[str, str | None] = {
    "S1": "misuse", "S2": "misuse", "S3": None, "S4": None, "S5": None, "S6": None, "S7": None, "S8": None,
    "S9": "misuse", "S10": None, "S11": "self_harm", "S12": None, "S13": None, "S14": None,
}


class Moderator(Protocol):
    """Anything with a ``name`` and ``flags(text) -> intent classes``."""

    name: str

    def flags(self, text: str) -> list[str]:
        """The medtune intent classes this moderator assigns to ``text``."""
        ...


def parse_llama_guard(output: str) -> list[str]:
    """Map a Llama Guard verdict ("safe" or "unsafe\\nS6,S11") to medtune classes (S6 ignored)."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if not lines or lines[0].lower() != "unsafe":
        return []
    codes = re.findall(r"S\d+", " ".join(lines[1:]))
    mapped = [LLAMA_GUARD_CATEGORIES.get(code) for code in codes]
    return sorted({m for m in mapped if m})


def _device(requested: str) -> str:
    """``auto``: CUDA when present, else CPU."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class LlamaGuard:
    """Llama Guard 3 (1B or 8B) as a prompt classifier, through its own chat template."""

    def __init__(self, model: str, device: str = "auto", loaded: tuple[Any, Any] | None = None) -> None:
        """Load ``model`` (hub id or folder) or use ``loaded`` = (tokenizer, model)."""
        self.name = f"llama_guard({model})"
        self.device = _device(device)
        if loaded is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from medtune.models import select_dtype

            try:
                tokenizer = AutoTokenizer.from_pretrained(model)
                # ignore: transformers decorates PreTrainedModel.to with functools.wraps(Module.to), which mypy
                # reads as an unbound function (expecting the model as its first argument)
                lm = AutoModelForCausalLM.from_pretrained(model, dtype=select_dtype("auto")).to(self.device)  # type: ignore[arg-type]
            except OSError as error:
                raise UserError(f"guard moderator {model}: cannot load it ({error}); pass a local folder "
                                "or a hub id you have access to.") from None
            loaded = (tokenizer, lm)
        # a transformers tokenizer and causal LM, or stand-ins with the same methods (``loaded``)
        self.tokenizer: Any = loaded[0]
        self.model: Any = loaded[1]

    def flags(self, text: str) -> list[str]:
        """Classify the user message; return the mapped medtune classes."""
        chat = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        inputs = self.tokenizer.apply_chat_template(chat, return_tensors="pt", return_dict=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        output = self.model.generate(**inputs, max_new_tokens=12, do_sample=False)
        prompt_length = inputs["input_ids"].shape[-1]
        return parse_llama_guard(self.tokenizer.decode(output[0][prompt_length:], skip_special_tokens=True))


class PromptGuard:
    """Llama Prompt Guard 2 (22M or 86M): a sequence classifier whose last label is 'malicious'."""

    def __init__(self, model: str, threshold: float = 0.5, device: str = "auto",
                 loaded: tuple[Any, Any] | None = None) -> None:
        """Load ``model`` (hub id or folder) or use ``loaded`` = (tokenizer, model)."""
        self.name = f"prompt_guard({model})"
        self.threshold = threshold
        self.device = _device(device)
        if loaded is None:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(model)
                classifier = AutoModelForSequenceClassification.from_pretrained(model).to(self.device)
            except OSError as error:
                raise UserError(f"guard moderator {model}: cannot load it ({error}); pass a local folder "
                                "or a hub id you have access to.") from None
            loaded = (tokenizer, classifier)
        # a transformers tokenizer and sequence classifier, or stand-ins with the same methods (``loaded``)
        self.tokenizer: Any = loaded[0]
        self.model: Any = loaded[1]

    def malicious_probability(self, text: str) -> float:
        """Probability of the model's last ('malicious') label."""
        import torch

        inputs = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=512)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.no_grad():
            logits = self.model(**inputs).logits
        return float(torch.softmax(logits, dim=-1)[0, -1])

    def flags(self, text: str) -> list[str]:
        """``["injection"]`` when the malicious probability passes the threshold."""
        return ["injection"] if self.malicious_probability(text) >= self.threshold else []


def build_moderators(configs: list[Any]) -> list[Moderator]:
    """Moderators from the guard config's ``moderators`` list (empty list: none loaded)."""
    out: list[Moderator] = []
    for config in configs:
        if config.type == "llama_guard":
            out.append(LlamaGuard(config.model, config.device))
        elif config.type == "prompt_guard":
            out.append(PromptGuard(config.model, config.threshold, config.device))
        else:
            raise UserError(f"guard moderators: unknown type {config.type!r}; use llama_guard or prompt_guard.")
    return out
