"""``medtune export``: merge (16-bit) -> GGUF f16 -> quantize -> verify against transformers -> Modelfile."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from medtune.errors import UserError

VERIFY_QUESTIONS = [
    "What are the symptoms of type 2 diabetes?",
    "How is high blood pressure treated?",
    "What causes iron deficiency anemia?",
]


def _log(message: str) -> None:
    """Print a progress line to stderr."""
    from rich.console import Console

    Console(stderr=True).print(f"[cyan]export[/] {message}", highlight=False)


def merge_adapter(source: Path, out_dir: Path) -> Path:
    """Merge a run/adapter folder into a 16-bit copy of its base (never a 4-bit one, trap #4); return the folder.

    Uses ``medtune.train.merge.merge_run`` when the training package provides it.
    """
    if (out_dir / "config.json").is_file():
        return out_dir
    if (source / "run.json").is_file():
        try:
            from medtune.train.merge import merge_run  # the training package's merge (tokenizer, template)
        except ImportError:
            merge_run = None
        if merge_run is not None:
            from medtune.runs import RunDir

            return Path(merge_run(RunDir(source), out_dir))
    from transformers import AutoTokenizer

    from medtune.models import adapter_base_model, ensure_distinct_pad_token, load_causal_lm, load_tokenizer

    model = load_causal_lm(str(source), dtype="float16")
    merged = model.merge_and_unload()
    merged.save_pretrained(out_dir)
    if (source / "tokenizer_config.json").is_file():  # the adapter folder carries its tokenizer
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        ensure_distinct_pad_token(tokenizer)
    else:
        tokenizer = load_tokenizer(adapter_base_model(source))
    tokenizer.save_pretrained(out_dir)
    return out_dir


def default_export_dir(source: str) -> Path:
    """``<run>/export`` for a run folder, else ``MEDTUNE_HOME/exports/<model name>``."""
    from medtune.paths import medtune_home

    path = Path(source).expanduser()
    if (path / "run.json").is_file():
        return path / "export"
    return medtune_home() / "exports" / re.sub(r"[^A-Za-z0-9._-]+", "-", path.name or source)


def _resolve_source(model: str) -> tuple[Path, bool]:
    """Return (folder, is_adapter) for a run name/folder, adapter folder, or plain model."""
    from medtune.models import BUILTIN_MODELS, is_adapter_dir, resolve_model_path
    from medtune.runs import find_run

    path = Path(model).expanduser()
    if not path.exists() and "/" not in model and model not in BUILTIN_MODELS:
        with contextlib.suppress(UserError):
            path = find_run(model).root
    if path.is_dir() and is_adapter_dir(path) and not (path / "config.json").is_file():
        return path, True
    resolved = resolve_model_path(str(path) if path.exists() else model)
    if not isinstance(resolved, Path):
        raise UserError(f"{model}: export needs a local model folder, run folder or alias, not a hub id.")
    return resolved, False


def _system_prompt(source: Path) -> str | None:
    """The guard's system prompt (what `medtune chat` uses), else the run's recorded one."""
    try:
        from medtune.guard import Guard

        return Guard().system_prompt
    except ImportError:
        run_json = source / "run.json"
        return json.loads(run_json.read_text()).get("system_prompt") if run_json.is_file() else None


def export_model(model: str, *, fmt: str = "gguf", quant: str = "q4_k_m", ollama: str | None = None,
                 out_dir: Path | None = None, verify: bool = True, n_tokens: int = 32,
                 questions: list[str] | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export ``model`` (run, adapter folder or plain model) and return the report written to export.json."""
    from medtune.export.gguf import QUANTS, compare_greedy, convert_hf_to_gguf, quantize_gguf

    if fmt not in ("gguf", "hf"):
        raise UserError(f"--format {fmt}: choose gguf or hf")
    if quant not in QUANTS:
        raise UserError(f"--quant {quant}: choose one of {', '.join(QUANTS)}")
    source, is_adapter = _resolve_source(model)
    out = out_dir or default_export_dir(str(source) if is_adapter else model)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"source": str(source), "format": fmt, "quant": quant, "out_dir": str(out)}
    hf_dir = source
    if is_adapter:
        _log(f"merging the adapter of {source} into a 16-bit base")
        hf_dir = merge_adapter(source, out / "merged")
    report["hf_dir"] = str(hf_dir)
    if fmt == "gguf":
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", source.name)
        _log("converting to GGUF f16 with llama.cpp's convert_hf_to_gguf.py")
        f16 = convert_hf_to_gguf(hf_dir, out / f"{stem}-f16.gguf", "f16")
        files = [f16]
        if quant != "f16":
            _log(f"quantizing to {quant} with llama_model_quantize")
            files.append(quantize_gguf(f16, out / f"{stem}-{quant}.gguf", quant))
        report["gguf"] = str(files[-1])
        report["files"] = {p.name: p.stat().st_size for p in files}
        if verify:
            _log(f"checking llama.cpp's greedy answers against transformers ({n_tokens} tokens)")
            report["verify"] = compare_greedy(hf_dir, files, questions or VERIFY_QUESTIONS, n_tokens)
        if ollama:
            report["ollama"] = write_ollama(ollama, files[-1], hf_dir, source, out, params or {})
    (out / "export.json").write_text(json.dumps(report, indent=2))
    return report


def write_ollama(name: str, gguf: Path, hf_dir: Path, source: Path, out: Path,
                 params: dict[str, Any]) -> dict[str, Any]:
    """Write the Modelfile next to the GGUF and run ``ollama create`` when ollama is installed."""
    from medtune.export.modelfile import build_modelfile, ollama_create_command
    from medtune.models import load_tokenizer

    text = build_modelfile(gguf.resolve(), load_tokenizer(str(hf_dir)), _system_prompt(source), **params)
    modelfile = out / "Modelfile"
    modelfile.write_text(text)
    command = ollama_create_command(name, modelfile)
    created = False
    if shutil.which("ollama"):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"ollama create failed: {done.stderr.strip()[-200:]}; check {modelfile}.")
        created = True
    return {"modelfile": str(modelfile), "command": " ".join(command), "created": created}
