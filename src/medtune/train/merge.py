"""``medtune merge``: fold a run's LoRA adapter into a 16-bit copy of its base (never a 4-bit base).

QLoRA runs trained on an nf4/int8 base: the base is reloaded unquantized here (known trap #4), so the merged
weights are exact.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from medtune.runs import RunDir


def merge_dtype(name: str = "auto") -> Any:
    """The merge precision: bf16 (fp16 on CUDA without bf16); ``float32`` on request."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def merge_run(run: RunDir, out_dir: Path | None = None, dtype: str = "auto") -> Path:
    """Merge ``run``'s adapter into its (unquantized) base; write an HF folder with tokenizer + chat template.

    Records the folder as ``merged_dir`` in run.json and returns it.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from medtune.errors import UserError
    from medtune.models import load_tokenizer, resolve_model_path
    from medtune.train.trainer import update_run_info

    info = run.info()
    if not (run.adapter / "adapter_config.json").is_file():
        raise UserError(f"{run.root}: no adapter/ (the run did not finish); train it first.")
    base = info.get("base_model")
    if not base:
        raise UserError(f"{run.run_json}: no base_model recorded; this is not a medtune run folder.")
    out = out_dir or run.root / "merged"
    source = resolve_model_path(base, info.get("gguf_file"))
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=merge_dtype(dtype))
    if run.tokenizer.is_dir():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(run.tokenizer))
    else:
        tokenizer = load_tokenizer(base, info.get("gguf_file"))
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    merged = PeftModel.from_pretrained(model, str(run.adapter)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if run.chat_template.is_file():
        shutil.copy(run.chat_template, out / "chat_template.jinja")
    update_run_info(run, {"merged_dir": str(out)})
    return out
