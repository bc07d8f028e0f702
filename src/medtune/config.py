"""Typed recipe sections: one YAML recipe = one run (model, data, lora, train, eval, export).

Every field is documented once, here. Unknown keys are rejected so a typo never silently does nothing.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from medtune.errors import UserError
from medtune.recipes import find_recipe


class Section(BaseModel):
    """Base for recipe sections: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    """Which base model to adapt and how to load it."""

    name: str = Field("smollm2-135m-instruct", description="Alias, local HF folder, GGUF file or hub id.")
    gguf_file: str | None = Field(None, description="GGUF file name inside `name` when it is a folder.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bf16 on GPUs that support it, else fp16; fp32 on CPU."
    )
    quantization: Literal["none", "nf4", "int8"] = Field(
        "none", description="nf4 (QLoRA) and int8 load the base through bitsandbytes and need CUDA."
    )
    max_seq_length: int = Field(512, ge=16, description="Longest tokenized example used in training.")
    attn_implementation: str | None = Field(None, description="e.g. sdpa, eager, flash_attention_2.")
    trust_remote_code: bool = Field(
        False, description="Run the model folder's own Python code (custom architectures) when loading its "
        "config, tokenizer and weights; only for models you trust. Recorded in run.json for later loads."
    )


class SourceSpec(Section):
    """One raw dataset to read, e.g. ``{kind: medquad, path: medquad/MedQuAD_xml.tar.gz}``."""

    kind: str = Field(description="Loader name: medquad, meadow, chatdoctor, medicationqa, csv, jsonl, hf.")
    path: str = Field(description="File/folder (relative paths resolve under MEDTUNE_DATA_DIR) or hub id.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Column mapping for csv/jsonl/hf, e.g. {question: Q, answer: A}."
    )
    name: str | None = Field(None, description="Source label written to each row (default: the kind).")


class GroundedConfig(Section):
    """Grounded fine-tuning (``medtune prepare --grounded INDEX``): train and validation prompts carry ``k`` retrieved,
    numbered passages in the served grounded format and the targets cite them (``medtune.data.grounded``)."""

    index: str | None = Field(
        None, description="Index (`medtune index build ... --exclude-prepared-test DIR`) the passages come from; "
        "null = plain prompts. Prepare refuses an index that holds any of this data's test answers."
    )
    k: int = Field(4, ge=1, le=20, description="Passages per prompt (`ask --rag` and `eval --rag` serve 4).")
    no_answer_share: float = Field(
        0.15, ge=0.0, lt=1.0, description="Share of examples whose own document is left out of the passages; their "
        "target says the sources do not cover the question."
    )
    no_answer_passages: Literal["same_topic", "other_question"] = Field(
        "same_topic", description="What a no-answer example shows: `same_topic` = the passages retrieved for its own "
        "question (other documents on the same topic: abstain unless the answer itself is shown); `other_question` "
        "= the passages retrieved for another, seeded question of the split (abstain when the sources are about "
        "something else)."
    )
    passage_header: Literal["question", "topic"] = Field(
        "question", description="The line above each numbered passage in the prompt: `question` = its focus and the "
        "question it answers (\"Glaucoma — What are the symptoms of Glaucoma ?\"); `topic` = its focus only, so the "
        "model has to read a passage to know whether it answers. Recorded in the run; served the same way."
    )

    @model_serializer(mode="wrap")
    def _omit_defaults_added_later(self, handler: Any) -> dict[str, Any]:
        """Leave ``no_answer_passages`` and ``passage_header`` out at their defaults, so existing grounded recipes
        keep their data hash."""
        dumped = dict(handler(self))
        if self.no_answer_passages == "same_topic":
            dumped.pop("no_answer_passages", None)
        if self.passage_header == "question":
            dumped.pop("passage_header", None)
        return dumped


class DistillConfig(Section):
    """Self-distillation (``medtune.data.distill``): the train split's targets become the model's own consensus
    answers, sampled under the training prompt and filtered (rejection sampling + minimum-Bayes-risk selection)."""

    enabled: bool = Field(False, description="Replace the train targets by the model's chosen answers.")
    model: str | None = Field(None, description="Model that writes the answers; null = the recipe's own model.")
    sources: list[str] | None = Field(None, description="Distil only train rows of these source kinds (e.g. "
                                      "[chatdoctor]: consumer questions); train rows of other sources are dropped "
                                      "(distill_other_source) and stay in validation/test. null = every source.")
    limit: int | None = Field(None, ge=1, description="A seeded random sample of this many train questions is "
                              "distilled; the other train rows are dropped (distill_not_sampled). Generation costs "
                              "~1 s per sample for a 135M model on 2 CPU cores.")
    samples: int = Field(4, ge=1, le=32, description="Answers written per question (the consensus needs >= 3).")
    temperature: float = Field(0.8, gt=0, description="Sampling temperature of the answers.")
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(288, ge=1, description="Answer budget; a sample that reaches it is rejected "
                                "(truncated). Keep prompt + this within model.max_seq_length.")
    repetition_penalty: float = Field(1.1, gt=0, description="Over the answer only, as the demo serves.")
    batch_size: int = Field(32, ge=1)
    max_repeated_3gram_fraction: float = Field(0.05, ge=0, le=1, description="Samples repeating more of their "
                                               "3-grams are rejected (repetitive).")
    require_care_advice: bool = Field(False, description="Reject samples that never advise seeing a clinician or "
                                      "seeking care (no_care_advice).")
    min_reference_cosine: float | None = Field(None, ge=-1, le=1, description="The chosen answer must be at least "
                                               "this close (MiniLM cosine) to the row's reference answer; null = "
                                               "not checked.")


class DataConfig(Section):
    """How raw QA sets become a clean, split, model-formatted dataset (``medtune prepare``)."""

    sources: list[SourceSpec] = Field(default_factory=list, description="Raw datasets to read.")
    prepared: str | None = Field(None, description="Use an existing `medtune prepare` output folder.")
    min_question_chars: int = Field(10, ge=0)
    max_question_chars: int = Field(500, ge=1)
    min_answer_chars: int = Field(20, ge=0)
    max_answer_chars: int = Field(1000, ge=1)
    multi_answer_policy: Literal["first", "longest", "keep_all"] = Field(
        "first", description="What to keep when one question has several different answers."
    )
    injection_policy: Literal["reject", "sanitize"] = Field(
        "reject", description="Rows carrying chat control strings or instructions aimed at an AI (injection, "
        "poisoned answers): reject them (reason injection_*) or keep them with control strings removed "
        "(counted as sanitized_injection)."
    )
    question_types: list[str] | None = Field(
        None, description="Keep only rows whose question type (MedQuAD's qtype, e.g. symptoms, treatment) is one "
        "of these, case-insensitive; rows of other types are rejected (question_type_not_selected), rows without "
        "a type (sources that have none) are kept. A listed type that no row has is an error (typo guard)."
    )
    sample_size: int | None = Field(None, ge=1, description="Target rows after cleaning (study: 2k-15k).")
    balance: Literal["equal", "proportional"] = Field(
        "equal", description="equal: same share per source (capped by what a source has); proportional: as found."
    )
    split: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train/validation/test fractions.")
    prompt_style: str = Field(
        "chat-template", description="chat-template (the model's own), mistral-inst or llama3-header."
    )
    system_prompt: str | None = Field(
        "served", description="System prompt of every training example: `served` = the guard's (what ask, chat, "
        "the UI, serve, eval and the Modelfile send); null or '' = none (the chat template's default); or a text."
    )
    grounded: GroundedConfig = Field(
        default_factory=GroundedConfig,  # type: ignore[arg-type]
        description="Retrieval-augmented training prompts with cited targets.",
    )
    distill: DistillConfig = Field(
        default_factory=DistillConfig,  # type: ignore[arg-type]
        description="Self-distillation: the train targets become the model's own consensus answers.",
    )
    seed: int = 42

    @model_serializer(mode="wrap")
    def _omit_sections_when_off(self, handler: Any) -> dict[str, Any]:
        """Leave ``grounded`` and ``distill`` out while they are off, so recipes without them keep their data hash
        and recipe hash."""
        dumped = dict(handler(self))
        if self.grounded.index is None:
            dumped.pop("grounded", None)
        if not self.distill.enabled:
            dumped.pop("distill", None)
        return dumped

    @field_validator("split")
    @classmethod
    def _split_sums_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if abs(sum(value) - 1.0) > 1e-6 or min(value) < 0:
            raise ValueError("split fractions must be >= 0 and add up to 1, e.g. [0.8, 0.1, 0.1]")
        return value


class LoraConfig(Section):
    """The LoRA adapter (PEFT)."""

    r: int = Field(16, ge=1, description="Rank.")
    alpha: int = Field(16, ge=1, description="Scaling numerator (alpha / r, or alpha / sqrt(r) with RSLoRA).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: Literal["attention", "all-linear"] | list[str] = Field(
        "all-linear", description="attention (q,k,v,o), all-linear (attention + MLP) or an explicit list."
    )
    use_rslora: bool = False
    use_dora: bool = False
    bias: Literal["none", "all", "lora_only"] = "none"


class TrainConfig(Section):
    """Fine-tuning settings: supervised (TRL SFTTrainer) or preference optimisation (TRL DPOTrainer)."""

    run_name: str | None = Field(None, description="Run folder prefix (default: recipe name).")
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    batch_size: int = Field(2, ge=1, description="Per-device micro-batch.")
    gradient_accumulation_steps: int = Field(4, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    optimizer: str = Field(
        "auto", description="auto: adamw_8bit with a quantized (nf4/int8) base, else adamw_torch (the same "
        "policy in plan and train); or any HF Trainer `optim` name (8-bit/paged ones need CUDA)."
    )
    gradient_checkpointing: bool = True
    padding_free: bool = Field(
        True, description="Flatten each batch into one sequence (no pad tokens; position_ids keep examples apart)."
    )
    packing: bool = Field(
        False,
        description="Also BFD-pack examples into rows of model.max_seq_length (bigger steps; on a 2-core CPU "
        "no faster than padding-free batches: see bench/train_throughput.py --order packing,medtune).",
    )
    completion_only_loss: bool = Field(True, description="Loss on the answer only; prompt tokens masked.")
    objective: Literal["sft", "dpo"] = Field(
        "sft", description="sft: supervised fine-tuning on the train targets (TRL SFTTrainer). dpo: direct preference "
        "optimisation (TRL DPOTrainer) on OUT/preferences.jsonl, the chosen/rejected answer pairs `prepare` writes "
        "with data.distill; the LoRA adapter is the policy and the base model (adapter off) the reference."
    )
    dpo_beta: float = Field(0.1, gt=0, description="DPO's beta: how far the policy may move from the reference.")
    dpo_sft_weight: float = Field(
        1.0, ge=0, description="Weight of the negative log-likelihood of the chosen answer added to the DPO loss "
        "(TRL loss_type [sigmoid, sft], as in RPO); 0 = DPO alone."
    )
    neftune_noise_alpha: float | None = Field(
        None, gt=0, description="NEFTune: uniform noise of this scale on the input embeddings while training "
        "(the Trainer's neftune_noise_alpha; 5 in the NEFTune paper). None = off."
    )
    eval_steps: int | None = Field(None, ge=1, description="Validate every N steps (and every epoch).")
    save_steps: int | None = Field(None, ge=1)
    save_total_limit: int = Field(2, ge=1)
    logging_steps: int = Field(5, ge=1)
    max_eval_samples: int | None = Field(200, ge=1, description="Cap on validation rows per evaluation.")
    seed: int = 42


class EvalConfig(Section):
    """Evaluation tasks and decoding (``medtune eval``)."""

    tasks: list[str] = Field(default_factory=lambda: ["medquad-test"])
    limit: int | None = Field(None, ge=1, description="A seeded random sample of this many examples per task "
                              "(the same ids for every model scored with the same sample_seed; ids are recorded).")
    sample_seed: int = Field(1234, description="Seed of the --limit sample (per task).")
    shots: int = Field(0, ge=0)
    use_chat_template: bool = Field(True, description="Free-text prompts through the model's chat template.")
    mc_chat_template: bool = Field(False, description="Multiple-choice prompts through the chat template (off: "
                                   "lm-evaluation-harness's plain format, comparable with published accuracies).")
    prompt: Literal["served", "training"] = Field(
        "served", description="Free-text system prompt: `served` = what ask/chat/UI/serve send (the guard's), "
        "`training` = the one the run's examples were rendered with (run.json).")
    system_prompt: str | None = Field(None, description="Score free-text questions under this system prompt instead "
                                      "(recorded in the report); the demo and ablations score the base model under "
                                      "the tuned run's prompt so the two differ only in their weights.")
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(384, ge=1, description="Answer budget (hit_token_limit in the report: keep it < 10%).")
    temperature: float = Field(0.0, ge=0, description="0 = greedy.")
    top_p: float = Field(1.0, gt=0, le=1)
    num_beams: int = Field(1, ge=1)
    repetition_penalty: float = Field(1.0, gt=0)
    repetition_scope: Literal["answer", "prompt+answer"] = Field(
        "answer", description="Tokens the repetition penalty counts: the answer so far, or also the prompt "
        "(transformers' own default, which also penalises the end-of-turn token the chat template writes after "
        "each prompt turn, so answers run longer and loop more).")
    bertscore_model: str | None = Field(None, description="Default: the offline MiniLM.")
    rag_min_score: float | None = Field(
        None, ge=0.0, le=1.0, description="With --rag, sources-only mode: when no retrieved passage reaches this "
        "cosine the answer says the sources do not cover the question, without a model call. Choose it on a "
        "validation split with `medtune index calibrate`; null = the model answers every question.")
    engine: Literal["transformers", "vllm"] = Field("transformers", description="Free-text generation engine; "
                                                    "vllm = vLLM's offline batch API (CUDA GPU + pip install vllm).")
    rubric_grader: Literal["phrase", "judge"] = Field("phrase", description="Rubric tasks: offline phrase matching "
                                                      "or an LLM judge behind judge_url.")
    judge_url: str | None = Field(None, description="OpenAI-compatible endpoint of the rubric judge (.../v1).")
    judge_model: str | None = Field(None, description="Model id at judge_url (default: the server's first).")


class ExportConfig(Section):
    """Merging and export for serving: ``medtune export RUN`` takes these from the run's recorded recipe
    unless a flag of the same name is given."""

    format: Literal["gguf", "hf"] = Field("gguf", description="gguf (llama.cpp/Ollama) or hf (merged folder).")
    quant: Literal["f16", "q8_0", "q4_k_m"] = Field("q4_k_m", description="GGUF quantization (`--quant`).")
    ollama_name: str | None = Field(None, description="Write a Modelfile and `ollama create` this name (`--ollama`).")
    temperature: float = Field(0.3, description="Modelfile sampling temperature.")
    top_p: float = Field(0.9, description="Modelfile top_p.")
    top_k: int = Field(40, description="Modelfile top_k.")
    num_ctx: int = Field(2048, description="Modelfile context window (tokens).")


class Recipe(Section):
    """A whole run. Sections you leave out take their defaults."""

    name: str = Field(description="Short identifier used for run folders.")
    description: str = ""
    model: ModelConfig = Field(default_factory=ModelConfig)  # type: ignore[arg-type]
    data: DataConfig = Field(default_factory=DataConfig)  # type: ignore[arg-type]
    lora: LoraConfig = Field(default_factory=LoraConfig)  # type: ignore[arg-type]
    train: TrainConfig = Field(default_factory=TrainConfig)  # type: ignore[arg-type]
    eval: EvalConfig = Field(default_factory=EvalConfig)  # type: ignore[arg-type]
    export: ExportConfig = Field(default_factory=ExportConfig)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _lengths_consistent(self) -> Recipe:
        data = self.data
        if data.min_question_chars > data.max_question_chars or data.min_answer_chars > data.max_answer_chars:
            raise ValueError("data: a min_*_chars is larger than its max_*_chars")
        return self


#: Names people often write for a field, from other tools (PEFT, HF Trainer, TRL).
KEY_SYNONYMS = {
    "rank": "r", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "lr": "learning_rate",
    "num_train_epochs": "epochs", "per_device_train_batch_size": "batch_size", "optim": "optimizer",
    "scheduler": "lr_scheduler", "lr_scheduler_type": "lr_scheduler", "model_name": "name",
    "max_seq_len": "max_seq_length", "max_length": "max_seq_length", "load_in_4bit": "quantization",
}


def known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names valid at ``loc`` in ``model`` (for 'did you mean' hints): nested models are followed
    through optional, union and list annotations; list indices are skipped."""
    current: Any = model
    for part in loc[:-1]:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return []
        current = candidates[0]
    return list(current.model_fields)


def describe_validation_error(source: str, error: ValidationError, model: type[BaseModel] = Recipe, *,
                              what: str = "key", no_match: str | None = None, fix: str = "fix the value.",
                              missing: str = "add it to the recipe.") -> str:
    """Turn a pydantic error into one line naming the file, the key and the fix: the one key validator of
    recipes, eval/export/prepare settings, ablation grids and guard configs (``what``: "guard key" ...;
    ``no_match``: the hint when no known key is close, default: the valid keys)."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        known = known_keys(model, loc)
        synonym = KEY_SYNONYMS.get(str(loc[-1]))
        close = [synonym] if synonym in known else difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else no_match or f"valid keys here: {', '.join(known)}"
        return f"{source}: unknown {what} '{key}'; {hint}"
    if first["type"] == "missing":
        return f"{source}: missing required {what} '{key}'; {missing}"
    return f"{source}: {what} '{key}': {first['msg']} (got {first.get('input')!r}); {fix}"


def recipe_from_dict(raw: dict[str, Any], source: str = "<recipe>") -> Recipe:
    """Validate a recipe dictionary; raise :class:`UserError` with a one-line message on problems."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as error:
        raise UserError(describe_validation_error(source, error)) from None


def load_recipe(path: str | Path) -> Recipe:
    """Load and validate a recipe YAML file.

    ``path`` may also be a shipped recipe name such as ``smollm2-135m/demo`` (see
    :func:`medtune.recipes.shipped_recipes`).
    """
    resolved = find_recipe(path)
    try:
        raw = yaml.safe_load(resolved.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{resolved}:{where} is not valid YAML ({error.__class__.__name__}); fix the syntax.") from None
    if not isinstance(raw, dict):
        raise UserError(f"{resolved}: a recipe must be a YAML mapping with sections model/data/lora/train/eval.")
    return recipe_from_dict(raw, str(resolved))
