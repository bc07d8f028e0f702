"""Free-text generation through vLLM's offline batch API (``medtune eval --engine vllm``, GPU machines).

Teams that outgrow one process use vLLM's continuous batching rather than a loop of ours: the same prompts medtune
renders (served system prompt, chat template) go to ``vllm.LLM.generate`` with the eval decoding settings; a run
folder's LoRA adapter is applied with a ``LoRARequest`` (the base weights stay unmerged, as in ``medtune eval``).
The switch is the one of ``medtune serve --engine vllm``: vLLM installed and a CUDA GPU present, else a UserError.
"""

from __future__ import annotations

from typing import Any

from medtune.config import EvalConfig
from medtune.errors import UserError
from medtune.evaluate.generation import Generation


def require_vllm() -> None:
    """Refuse ``--engine vllm`` with the fix in the message when vLLM or a CUDA GPU is missing."""
    from medtune.serve.engine import vllm_available

    if not vllm_available():
        raise UserError("--engine vllm needs the vllm package and a CUDA GPU (pip install vllm); this machine lacks "
                        "one of them. Use --engine transformers (the default).")


def sampling_kwargs(settings: EvalConfig, stop_ids: list[int]) -> dict[str, Any]:
    """The eval decoding settings as ``vllm.SamplingParams`` keyword arguments (greedy at temperature 0).

    vLLM's repetition penalty counts the prompt too, so a penalty with ``repetition_scope: answer`` is refused
    rather than silently scored under other decoding than transformers would use.
    """
    if settings.repetition_penalty != 1.0 and settings.repetition_scope != "prompt+answer":
        raise UserError("--engine vllm: vLLM's repetition penalty also counts the prompt; pass --repetition-scope "
                        "prompt+answer (or --repetition-penalty 1.0) to score with it.")
    return {"temperature": settings.temperature, "top_p": settings.top_p if settings.temperature > 0 else 1.0,
            "max_tokens": settings.max_new_tokens, "repetition_penalty": settings.repetition_penalty,
            "stop_token_ids": list(stop_ids), "skip_special_tokens": True}


def engine_paths(model: str) -> tuple[str, str | None]:
    """``(base model path, adapter folder or None)`` for a model name, HF folder or run folder."""
    from medtune.models import base_and_adapter

    base, adapter = base_and_adapter(model)
    return base, str(adapter) if adapter is not None else None


class VLLMGenerator:
    """One ``vllm.LLM`` per evaluation, generating every free-text task's prompts in one call each."""

    def __init__(self, model: str, max_lora_rank: int = 64) -> None:
        """Start the engine for ``model`` (LoRA enabled when it is a run folder)."""
        require_vllm()
        from vllm import LLM

        self.base, self.adapter = engine_paths(model)
        self.llm = LLM(model=self.base, enable_lora=self.adapter is not None, max_lora_rank=max_lora_rank)

    def generate(self, prompts: list[str], settings: EvalConfig, stop_ids: list[int]) -> list[Generation]:
        """Generate answers for ``prompts`` (order kept); hit_limit = vLLM's finish_reason ``length``."""
        import time

        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        lora = LoRARequest("medtune-adapter", 1, self.adapter) if self.adapter else None
        began = time.perf_counter()
        outputs = self.llm.generate(prompts, SamplingParams(**sampling_kwargs(settings, stop_ids)),
                                    lora_request=lora)
        share = (time.perf_counter() - began) / max(1, len(prompts))
        return [Generation(text=o.outputs[0].text.strip(), new_tokens=len(o.outputs[0].token_ids),
                           hit_limit=o.outputs[0].finish_reason == "length", seconds=share) for o in outputs]
