"""``medtune merge``: fold a LoRA adapter (run folder or adapter folder) into a copy of its unquantized base.

This is the one merge of medtune: ``medtune export`` and ``medtune serve --engine vllm`` call it too.

* Precision: ``auto`` follows the run. fp32 runs merge in fp32 (small LoRA updates would round away in
  16-bit); other runs, QLoRA included, merge into a 16-bit copy of the base (bf16; fp16 on GPUs without bf16).
  The base is loaded by the device policy (:mod:`medtune.devices`): on the GPU when there is one.
* Never into a 4-bit base (known trap #4): a QLoRA run's base is reloaded unquantized. The merged weights then
  differ from what the run learned: the adapter was trained against the NF4-dequantized weights and is added to
  the original 16-bit ones.
* The report (``merge.json`` in the output folder, ``merge`` in run.json) states the largest absolute logit
  difference between the merged model and the adapter model as eval and chat load it (a QLoRA run's nf4 base on
  a GPU) on a few served prompts: the merge's own error, measured.
"""

from __future__ import annotations

import gc
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medtune.errors import UserError
from medtune.runs import RunDir, is_run_dir

#: Questions whose served prompts the merged and the adapter model are compared on.
MERGE_CHECK_QUESTIONS = [
    "What are the symptoms of type 2 diabetes?",
    "How is high blood pressure treated?",
    "What causes iron deficiency anemia?",
]


@dataclass
class MergeReport:
    """What ``medtune merge`` wrote and how far the merged model is from the adapter model."""

    out_dir: str
    source: str
    dtype: str
    device: str
    trained_quantization: str
    reference: str  # the adapter model the merged one was compared with
    prompts: int
    max_abs_logit_diff: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON)."""
        return asdict(self)


def merge_dtype(source: Path, requested: str = "auto") -> str:
    """The merge precision: ``auto`` follows the run (fp32 for fp32 runs; 16-bit for QLoRA runs and, on a GPU,
    for runs without a recorded dtype); an explicit dtype is kept (bf16 -> fp16 on GPUs without bf16)."""
    from medtune.devices import half_dtype, resolve_dtype
    from medtune.models import trained_precision

    if requested == "auto":
        dtype, quantization = trained_precision(source)
        requested = half_dtype() if dtype == "auto" and quantization != "none" else dtype
    return resolve_dtype(requested)


def prompt_logits(model: Any, prompts: list[list[int]]) -> list[Any]:
    """The fp32 CPU logits of ``model`` at every position of each prompt (token ids)."""
    import torch

    out = []
    with torch.inference_mode():
        for ids in prompts:
            logits = model(input_ids=torch.tensor([ids], device=model.device)).logits
            out.append(logits[0].float().cpu())
    return out


def max_abs_difference(expected: list[Any], got: list[Any]) -> float:
    """The largest absolute element-wise difference between two lists of same-shaped tensors."""
    return max(float((a - b).abs().max()) for a, b in zip(expected, got, strict=True))


def _release_gpu_memory() -> None:
    """Collect dropped models and return their GPU memory to the device."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _describe(model: Any, trained_quantization: str) -> str:
    """One line naming the loaded adapter model's base precision, dtype and device."""
    quantized = getattr(model, "hf_quantizer", None) is not None
    base = f"{trained_quantization} base" if quantized else "unquantized base"
    return f"adapter model on its {base}, {str(model.dtype).removeprefix('torch.')}, {model.device}"


def _save_tokenizer(source: Path, out: Path) -> None:
    """Write the run's tokenizer (else the adapter folder's, else the base's) and its chat template to ``out``."""
    from medtune.models import load_tokenizer

    load_tokenizer(str(source)).save_pretrained(out)
    if RunDir(source).chat_template.is_file():
        shutil.copy(RunDir(source).chat_template, out / "chat_template.jinja")


def adapter_model_logits(source: Path, questions: list[str]) -> tuple[list[list[int]], list[Any], str]:
    """Load the adapter model as eval and chat do and return ``(served prompt ids, their logits, description)``."""
    from medtune.inference.transformers_backend import TransformersBackend, served_prompt_ids
    from medtune.models import load_causal_lm, load_tokenizer, trained_precision

    model = load_causal_lm(str(source)).eval()
    backend = TransformersBackend(str(source), model_obj=model, tokenizer=load_tokenizer(str(source)))
    prompts = served_prompt_ids(backend, questions)
    return prompts, prompt_logits(model, prompts), _describe(model, trained_precision(source)[1])


def merge_adapter(source: Path, out_dir: Path | None = None, dtype: str = "auto",
                  questions: list[str] | None = None) -> MergeReport:
    """Merge the adapter of ``source`` (run or adapter folder) into its unquantized base and measure the merge.

    Writes an HF folder (weights, tokenizer, chat template, ``merge.json``) to ``out_dir`` (default
    ``source/merged``); a run folder records it as ``merged_dir`` and the report as ``merge`` in run.json.

    Raises:
        UserError: when ``source`` holds no adapter.
    """
    from medtune.models import is_adapter_dir, load_causal_lm, trained_precision

    if not is_adapter_dir(source):
        raise UserError(f"{source}: no adapter (adapter_config.json) here; train the run to the end first.")
    out = out_dir or source / "merged"
    prompts, expected, reference = adapter_model_logits(source, questions or MERGE_CHECK_QUESTIONS)
    _release_gpu_memory()
    precision = merge_dtype(source, dtype)
    merged = load_causal_lm(str(source), dtype=precision, quantization="none", merge_adapter=True)
    report = MergeReport(out_dir=str(out), source=str(source), dtype=precision, device=str(merged.device),
                         trained_quantization=trained_precision(source)[1], reference=reference,
                         prompts=len(prompts),
                         max_abs_logit_diff=max_abs_difference(expected, prompt_logits(merged.eval(), prompts)))
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    del merged
    _release_gpu_memory()
    _save_tokenizer(source, out)
    (out / "merge.json").write_text(json.dumps(report.to_dict(), indent=2))
    if is_run_dir(source):
        from medtune.train.trainer import update_run_info

        update_run_info(RunDir(source), {"merged_dir": str(out), "merge": report.to_dict()})
    return report


def merge_run(run: RunDir, out_dir: Path | None = None, dtype: str = "auto") -> Path:
    """Merge ``run``'s adapter (see :func:`merge_adapter`) and return the merged folder."""
    if not (run.adapter / "adapter_config.json").is_file():
        raise UserError(f"{run.root}: no adapter/ (the run did not finish); train it first.")
    return Path(merge_adapter(run.root, out_dir, dtype).out_dir)
