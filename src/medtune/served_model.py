"""The served-model record: everything medtune needs to know about a ``--model`` before it loads, serves,
evaluates or exports it, resolved in one place.

``--model`` takes a built-in alias, an HF folder, a GGUF file, a hub id, a medtune run folder or a PEFT adapter
folder. For a run folder the facts live in its ``run.json`` (base model, precision, prompt style, system prompt,
prepared data) and ``data_manifest.json`` (the grounded passage header); this module is the only one that reads
them. Everything else asks :func:`served_model` for a :class:`ServedModel`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtune.errors import UserError
from medtune.runs import RunDir

#: prompt style of anything that is not a run folder (and of runs that did not record one).
DEFAULT_STYLE = "chat-template"


def is_adapter_dir(path: Path) -> bool:
    """True when ``path`` holds a PEFT adapter (directly or in ``adapter/`` of a run folder)."""
    return (path / "adapter_config.json").is_file() or (path / "adapter" / "adapter_config.json").is_file()


def adapter_dir(path: Path) -> Path:
    """Return the folder with ``adapter_config.json`` inside a run folder or adapter folder."""
    return path if (path / "adapter_config.json").is_file() else path / "adapter"


@dataclass(frozen=True)
class ServedModel:
    """What a model name or folder stands for (fields below); ``run`` holds run.json's values for a run folder."""

    given: str  # what the user passed
    path: Path  # ``given`` with ``~`` expanded
    run_dir: Path | None  # a medtune run folder (a non-empty run.json)
    adapter: Path | None  # the folder with adapter_config.json (run and adapter folders without config.json)
    prompt_style: str
    trained_system_prompt: str | None  # the prompt the run's examples were rendered with (None: none/unknown)
    prepared_dir: Path | None  # the run's `medtune prepare` output
    gguf_file: str | None  # the run's base GGUF file name (inside its base model folder)
    trust_remote_code: bool  # the run's base needs its own code
    dtype: str  # the run's training dtype: run.json, else its recipe.yaml, else "auto"
    quantization: str  # the run's base quantization ("none" when not a run)
    run: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def base_model(self) -> str:
        """The base model an adapter applies to: run.json's ``base_model``, else the adapter config's
        ``base_model_name_or_path``; ``given`` itself when there is no adapter."""
        if self.adapter is None:
            return self.given
        if self.run.get("base_model"):
            return str(self.run["base_model"])
        config = json.loads((self.adapter / "adapter_config.json").read_text())
        base = config.get("base_model_name_or_path")
        if not base:
            raise UserError(f"{self.path}: adapter has no base_model_name_or_path; pass the base model explicitly.")
        return str(base)

    def passage_header(self) -> str:
        """The passage header (``data.grounded.passage_header``: ``question`` or ``topic``) the run's grounded
        training prompts used, from its data manifest; ``question`` (the original format) for base models and runs
        trained without grounded data."""
        from medtune.rag.grounding import PASSAGE_HEADERS

        manifest = RunDir(self.path).data_manifest
        if not manifest.is_file():
            return "question"
        try:
            recorded = json.loads(manifest.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise UserError(f"{manifest}: not valid JSON ({error.msg}, line {error.lineno}); copy the prepared "
                            "data's manifest.json over it.") from None
        grounded = (recorded.get("grounded") if isinstance(recorded, dict) else None) or {}
        header = str(grounded.get("passage_header") or "question")
        if header not in PASSAGE_HEADERS:
            raise UserError(f"{manifest}: grounded.passage_header is {header!r}; it must be one of "
                            f"{', '.join(PASSAGE_HEADERS)}, the value the run was trained with.")
        return header


def _trained_dtype(path: Path, run: dict[str, Any]) -> str:
    """run.json's ``dtype``, else the run's recipe.yaml ``model.dtype``, else ``auto``."""
    if run.get("dtype"):
        return str(run["dtype"])
    recipe_file = RunDir(path).recipe
    if recipe_file.is_file():
        import yaml

        recipe = yaml.safe_load(recipe_file.read_text()) or {}
        return str((recipe.get("model") or {}).get("dtype") or "auto")
    return "auto"


def served_model(model: str | Path) -> ServedModel:
    """Resolve ``model`` (alias, folder, GGUF file, hub id, run or adapter folder) into its record."""
    given = str(model)
    path = Path(given).expanduser()
    run = RunDir(path).info() if path.is_dir() else {}
    adapter = adapter_dir(path) if path.is_dir() and is_adapter_dir(path) and not (path / "config.json").is_file() \
        else None
    prepared = run.get("prepared_dir")
    return ServedModel(
        given=given, path=path, run_dir=path if run else None, adapter=adapter,
        prompt_style=str(run.get("prompt_style") or DEFAULT_STYLE),
        trained_system_prompt=run.get("system_prompt"),
        prepared_dir=Path(prepared) if prepared else None,
        gguf_file=run.get("gguf_file"), trust_remote_code=bool(run.get("trust_remote_code")),
        dtype=_trained_dtype(path, run) if path.is_dir() else "auto",
        quantization=str(run.get("quantization") or "none"), run=run,
    )
