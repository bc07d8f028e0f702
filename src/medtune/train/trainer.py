"""``medtune train``: LoRA / QLoRA supervised fine-tuning of a recipe with TRL's SFTTrainer and PEFT.

One call of :func:`train_recipe` creates (or resumes) a run folder (layout in :mod:`medtune.runs`),
trains on the recipe's prepared data with the loss on answer tokens only, and writes adapter, tokenizer,
chat template, metrics.jsonl, summary.json and loss_curve.png.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from medtune.config import Recipe
from medtune.devices import require_bitsandbytes
from medtune.errors import UserError
from medtune.runs import RunDir, new_run_dir, write_text_atomic
from medtune.train.batching import batching, training_attention
from medtune.train.lora import save_adapter
from medtune.train.optimizer import needs_bitsandbytes, resolve_optimizer
from medtune.train.resume import (
    CHECKPOINTS,
    ResumePoint,
    find_resume_point,
    recipe_hash,
    session_marker,
    truncate_metrics,
)


def data_hash(recipe: Recipe) -> str:
    """Short hash of the data section plus the model (the prompt text depends on its tokenizer)."""
    payload = json.dumps(
        {"data": recipe.data.model_dump(mode="json"), "model": recipe.model.name}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def prepared_dir_for(recipe: Recipe) -> Path:
    """Where ``medtune train`` keeps the recipe's prepared data: ``MEDTUNE_HOME/prepared/<name>-<hash>``."""
    from medtune.paths import medtune_home

    return medtune_home() / "prepared" / f"{recipe.name}-{data_hash(recipe)}"


def ensure_prepared(recipe: Recipe) -> Path:
    """Return the recipe's prepared data folder; runs ``prepare`` once when ``data.prepared`` is unset."""
    if recipe.data.prepared:
        path = Path(recipe.data.prepared).expanduser()
        if not (path / "manifest.json").is_file():
            raise UserError(
                f"data.prepared: {path} is not a `medtune prepare` output (no manifest.json); "
                "run `medtune prepare` or remove the key."
            )
        return path
    out = prepared_dir_for(recipe)
    from medtune.train.preference import PREFERENCES

    # a distilled folder prepared before preference pairs were written is prepared again (the samples are cached)
    needs_pairs = recipe.train.objective == "dpo" and recipe.data.distill.enabled
    if (out / "manifest.json").is_file() and not (needs_pairs and not (out / PREFERENCES).is_file()):
        return out
    if not recipe.data.sources:
        raise UserError(
            f"recipe {recipe.name}: data.sources is empty and data.prepared is not set; add a source."
        )
    from medtune.data.pipeline import prepare

    prepare(recipe.data, out, recipe.model.name)
    return out


def load_splits(prepared: Path) -> tuple[Any, Any | None]:
    """Return ``(train, validation)`` datasets of a prepared folder."""
    from medtune.data.prepared import load_prepared

    splits = load_prepared(prepared)
    validation = splits["validation"] if "validation" in splits and len(splits["validation"]) else None
    return splits["train"], validation


def with_max_steps(recipe: Recipe, max_steps: int | None) -> Recipe:
    """``recipe`` with ``train.max_steps`` overridden (``--max-steps``), so the run records what it trains."""
    if max_steps is None:
        return recipe
    return recipe.model_copy(update={"train": recipe.train.model_copy(update={"max_steps": max_steps})})


def shared_training_args(
    recipe: Recipe, out_dir: Path, *, max_steps: int | None, has_eval: bool, cuda: bool
) -> dict[str, Any]:
    """The Trainer arguments SFT and DPO share, from the recipe's train/model sections."""
    train = recipe.train
    steps = max_steps if max_steps is not None else train.max_steps
    eval_strategy = "no" if not has_eval else ("steps" if train.eval_steps else "epoch")
    warmup: float = train.warmup_steps if train.warmup_steps else train.warmup_ratio
    dtype = recipe.model.dtype
    half = cuda and dtype != "float32"
    from medtune.models import select_dtype

    torch_dtype = str(select_dtype(dtype)).removeprefix("torch.")
    return {
        "output_dir": str(out_dir),
        "num_train_epochs": train.epochs,
        "max_steps": steps,
        "per_device_train_batch_size": train.batch_size,
        "per_device_eval_batch_size": train.batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "learning_rate": train.learning_rate,
        "lr_scheduler_type": train.lr_scheduler,
        "warmup_steps": warmup,
        "weight_decay": train.weight_decay,
        "max_grad_norm": train.max_grad_norm,
        "neftune_noise_alpha": train.neftune_noise_alpha,
        "optim": resolve_optimizer(train.optimizer, recipe.model.quantization, cuda=cuda),
        "activation_checkpointing": train.gradient_checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if train.gradient_checkpointing else None,
        "bf16": half and torch_dtype == "bfloat16",
        "fp16": half and torch_dtype == "float16",
        "logging_steps": train.logging_steps,
        "eval_strategy": eval_strategy,
        "eval_steps": train.eval_steps,
        "save_strategy": "steps" if train.save_steps else "epoch",
        "save_steps": train.save_steps or 500,
        "save_total_limit": train.save_total_limit,
        "seed": train.seed,
        "data_seed": train.seed,
        "include_num_input_tokens_seen": "non_padding",
        # without it, TrainingArguments rebuilds accelerate's state for GPUs and a multi-process CPU launch
        # (accelerate launch / torchrun, gloo) silently trains each process on its own
        "use_cpu": not cuda,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def build_sft_config(
    recipe: Recipe, out_dir: Path, *, max_steps: int | None, has_eval: bool, cuda: bool
) -> Any:
    """Translate the recipe's train/model sections into TRL's ``SFTConfig``."""
    from trl import SFTConfig

    train = recipe.train
    return SFTConfig(
        **shared_training_args(recipe, out_dir, max_steps=max_steps, has_eval=has_eval, cuda=cuda),
        # rows are already length-filtered by tokenize_split; TRL enforces max_length only when it packs
        max_length=recipe.model.max_seq_length if train.packing or not train.padding_free else None,
        packing=train.packing,
        packing_strategy="bfd",
        padding_free=train.padding_free or train.packing,
    )


def load_model_for_training(recipe: Recipe, cuda: bool = False) -> tuple[Any, Any]:
    """Load base model + tokenizer (attention per :func:`medtune.train.batching.training_attention`), prepare a
    quantized base for k-bit training and wrap it with LoRA."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    from medtune.models import load_causal_lm, load_tokenizer, require_cuda_for
    from medtune.train.lora import peft_lora_config, warn_vocabulary_resize

    require_cuda_for(recipe.model.quantization)
    trust = recipe.model.trust_remote_code
    tokenizer = load_tokenizer(recipe.model.name, recipe.model.gguf_file, trust_remote_code=trust)
    model = load_causal_lm(
        recipe.model.name,
        dtype=recipe.model.dtype,
        quantization=recipe.model.quantization,
        gguf_file=recipe.model.gguf_file,
        attn_implementation=training_attention(recipe, cuda),
        apply_adapter=False,
        trust_remote_code=trust,
    )
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        warn_vocabulary_resize(model, rows, len(tokenizer), recipe.model.name)
        model.resize_token_embeddings(len(tokenizer))
    if recipe.model.quantization != "none":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=recipe.train.gradient_checkpointing
        )
    model.config.use_cache = False
    torch.manual_seed(recipe.train.seed)
    return get_peft_model(model, peft_lora_config(recipe.lora)), tokenizer


def _write_run_files(run: RunDir, recipe: Recipe, tokenizer: Any, prepared: Path | None) -> None:
    """Write recipe.yaml, chat_template.jinja, data_manifest.json and the initial run.json."""
    from medtune.models import select_dtype

    resolved = recipe.model_dump(mode="json")
    run.recipe.write_text(yaml.safe_dump(resolved, sort_keys=False))
    template = getattr(tokenizer, "chat_template", None)
    if template:
        run.chat_template.write_text(template if isinstance(template, str) else json.dumps(template))
    manifest: dict[str, Any] = {}
    if prepared is not None and (prepared / "manifest.json").is_file():
        shutil.copy(prepared / "manifest.json", run.data_manifest)
        manifest = json.loads(run.data_manifest.read_text())
    info = {
        "base_model": recipe.model.name,
        "gguf_file": recipe.model.gguf_file,
        "recipe": recipe.name,
        "recipe_hash": recipe_hash(resolved),
        "trust_remote_code": recipe.model.trust_remote_code,
        "prompt_style": manifest.get("prompt_style", recipe.data.prompt_style),
        # the text the examples were rendered with (prepare's manifest); unknown (null) for splits passed in directly
        "system_prompt": manifest.get("system_prompt"),
        "prepared_dir": str(prepared) if prepared else None,
        "quantization": recipe.model.quantization,
        "dtype": str(select_dtype(recipe.model.dtype)).removeprefix("torch."),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "status": "running",
    }
    update_run_info(run, info)


def update_run_info(run: RunDir, values: dict[str, Any]) -> dict[str, Any]:
    """Merge ``values`` into run.json and return the result."""
    info = {**run.info(), **values}
    write_text_atomic(run.run_json, json.dumps(info, indent=2))
    return info


def _shared_run_dir(state: Any, recipe: Recipe, tokenizer: Any, prepared: Path | None) -> RunDir:
    """Create the run folder on the main process and share its path with the other processes."""
    root = None
    if state.is_main_process:
        run = new_run_dir(recipe.train.run_name or recipe.name)
        _write_run_files(run, recipe, tokenizer, prepared)
        root = str(run.root)
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        root = broadcast_object_list([root])[0]
    return RunDir(Path(str(root)))


def train_recipe(
    recipe: Recipe,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    splits: tuple[Any, Any | None] | None = None,
) -> RunDir:
    """Train ``recipe``; ``splits`` (train, validation) of prompt/completion rows bypasses prepared data.

    ``max_steps`` overrides ``train.max_steps`` (and is recorded in the run's recipe). ``resume`` continues
    the newest run of the recipe when it was interrupted, from its last complete checkpoint (refused
    otherwise: see :func:`medtune.train.resume.find_resume_point`). Returns the run folder.
    """
    import torch
    from accelerate import PartialState

    from medtune.models import require_cuda_for

    recipe = with_max_steps(recipe, max_steps)
    cuda = torch.cuda.is_available()
    optimizer = resolve_optimizer(recipe.train.optimizer, recipe.model.quantization, cuda=cuda)
    require_cuda_for(recipe.model.quantization)
    if cuda and recipe.model.quantization != "none":  # one error line, not transformers' ImportError traceback
        require_bitsandbytes(f"model.quantization: {recipe.model.quantization}")
    if cuda and needs_bitsandbytes(optimizer):
        require_bitsandbytes(f"train.optimizer: {optimizer}")
    state = PartialState(cpu=not cuda)  # one process, or each process of torchrun / accelerate launch
    point = find_resume_point(recipe, check_live=state.is_main_process) if resume else None
    prepared = None
    if splits is None:
        with state.main_process_first():
            prepared = ensure_prepared(recipe)
        splits = load_splits(prepared)
    model, tokenizer = load_model_for_training(recipe, cuda)
    run = point.run if point else _shared_run_dir(state, recipe, tokenizer, prepared)
    trainer, stats = _build_trainer(recipe, run, model, tokenizer, splits, cuda)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if state.is_main_process:
        if point:
            truncate_metrics(run.metrics, point.step)
        from medtune.train.answer_loss import loss_head

        update_run_info(run, {"status": "running", "trainable_params": trainable, "batching": batching(recipe),
                              "attention": model.config._attn_implementation,
                              "loss_head": "trl-dpo" if recipe.train.objective == "dpo" else loss_head(cuda),
                              **session_marker()})
    start = time.perf_counter()
    try:
        output = trainer.train(resume_from_checkpoint=str(point.checkpoint) if point else None)
    except BaseException:
        if state.is_main_process:
            update_run_info(run, {"status": "failed"})
        raise
    seconds = time.perf_counter() - start
    save_adapter(trainer, run.adapter, run.tokenizer, tokenizer)
    if trainer.is_world_process_zero():
        extra = {
            "train_runtime": output.metrics.get("train_runtime"),
            "trainable_params": trainable,
            "train_rows": stats.rows,
            "train_kept": stats.kept,
            "dropped": stats.dropped,
            "answer_tokens": stats.label_tokens,
            "processes": state.num_processes,
        }
        _finish_run(run, recipe, trainer, seconds, point, extra)
    return run


def _build_trainer(
    recipe: Recipe, run: RunDir, model: Any, tokenizer: Any, splits: tuple[Any, Any | None], cuda: bool
) -> tuple[Any, Any]:
    """Tokenize the splits (answer-only labels) and return ``(SFTTrainer, train split stats)``; with
    ``train.objective: dpo``, a DPOTrainer over the prepared folder's preference pairs instead."""
    from trl import SFTTrainer

    from medtune.prompts import end_of_turn_token
    from medtune.train.answer_loss import AnswerHeadSFTTrainer, loss_head
    from medtune.train.callbacks import EpochEvalCallback, MetricsCallback, RichProgressCallback
    from medtune.train.dataset import tokenize_split

    end_token = end_of_turn_token(tokenizer, run.info().get("prompt_style") or recipe.data.prompt_style)
    callbacks: list[Any] = [MetricsCallback(run.metrics), RichProgressCallback()]
    if recipe.train.objective == "dpo":
        from medtune.train.preference import build_dpo_trainer

        prepared = run.info().get("prepared_dir")
        trainer, stats = build_dpo_trainer(recipe, run.root / CHECKPOINTS, model, tokenizer,
                                           Path(prepared) if prepared else None, end_token, callbacks, cuda)
        return _without_printer(trainer), stats
    train_raw, val_raw = splits
    length, answer_only = recipe.model.max_seq_length, recipe.train.completion_only_loss
    train_ds, stats = tokenize_split(train_raw, tokenizer, length, answer_only, end_token)
    if stats.kept == 0:
        raise UserError(
            f"recipe {recipe.name}: every training row is longer than model.max_seq_length="
            f"{recipe.model.max_seq_length}; raise it or lower data.max_answer_chars."
        )
    val_ds = None
    if val_raw is not None:
        if recipe.train.max_eval_samples and len(val_raw) > recipe.train.max_eval_samples:
            val_raw = val_raw.select(range(recipe.train.max_eval_samples))
        val_ds, _ = tokenize_split(val_raw, tokenizer, length, answer_only, end_token)
        val_ds = val_ds if len(val_ds) else None
    args = build_sft_config(recipe, run.root / CHECKPOINTS, max_steps=None, has_eval=val_ds is not None, cuda=cuda)
    if val_ds is not None and recipe.train.eval_steps:
        callbacks.append(EpochEvalCallback())
    trainer_class = AnswerHeadSFTTrainer if loss_head(cuda) == "answer-positions" else SFTTrainer
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    return _without_printer(trainer), stats


def _without_printer(trainer: Any) -> Any:
    """``trainer`` without its PrinterCallback: disable_tqdm makes the Trainer print raw log dictionaries, and the
    rich bar and its loss lines replace them."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def _finish_run(
    run: RunDir,
    recipe: Recipe,
    trainer: Any,
    seconds: float,
    point: ResumePoint | None,
    extra: dict[str, Any],
) -> None:
    """Write summary.json (tokens/s of this session) and the loss curve (main process; adapter and tokenizer are
    saved before, by :func:`save_adapter`)."""
    from medtune.train.summary import peak_memory_bytes, plot_loss_curve, read_metrics, summarize

    records = read_metrics(run.metrics)
    tokens = int(trainer.state.num_input_tokens_seen)
    summary = summarize(
        records,
        steps=trainer.state.global_step,
        seconds=seconds,
        tokens=tokens,
        session_tokens=tokens - (point.tokens if point else 0),
        peak_memory_bytes=peak_memory_bytes(),
        extra={**extra, "resumed_from_step": point.step if point else None},
    )
    run.summary.write_text(json.dumps(summary, indent=2))
    plot_loss_curve(records, run.loss_curve, title=f"{recipe.name} ({recipe.model.name})")
    update_run_info(run, {"status": "completed", "steps": trainer.state.global_step})
