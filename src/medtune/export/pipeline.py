"""``medtune export``: merge (16-bit) -> GGUF f16 -> quantize -> checks (which can fail it) -> Modelfile."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from medtune.errors import UserError
from medtune.runs import is_run_dir


def _log(message: str) -> None:
    """Print a progress line to stderr."""
    from rich.console import Console

    Console(stderr=True).print(f"[cyan]export[/] {message}", highlight=False)


def merged_folder(source: Path, out_dir: Path) -> Path:
    """The merged HF folder of a run/adapter folder: ``out_dir`` when it already holds one, else the merge's
    (:func:`medtune.train.merge.merge_adapter`) output."""
    if (out_dir / "config.json").is_file():
        return out_dir
    from medtune.train.merge import merge_adapter

    report = merge_adapter(source, out_dir)
    _log(f"merged in {report.dtype} on {report.device}; max |logit difference| vs the {report.reference}: "
         f"{report.max_abs_logit_diff:.3g}")
    return Path(report.out_dir)


def default_export_dir(source: str) -> Path:
    """``<run>/export`` for a run folder, else ``MEDTUNE_HOME/exports/<model name>``."""
    from medtune.paths import medtune_home

    path = Path(source).expanduser()
    if is_run_dir(path):
        return path / "export"
    return medtune_home() / "exports" / re.sub(r"[^A-Za-z0-9._-]+", "-", path.name or source)


def export_source(model: str) -> tuple[Path, bool]:
    """Return (folder, is_adapter) for a run name/folder, adapter folder, or plain model (the adapter rule is the
    served-model record's, :func:`medtune.served_model.served_model`)."""
    from medtune.models import BUILTIN_MODELS, resolve_model_path
    from medtune.runs import find_run
    from medtune.served_model import served_model

    path = Path(model).expanduser()
    if not path.exists() and "/" not in model and model not in BUILTIN_MODELS:
        with contextlib.suppress(UserError):
            path = find_run(model).root
    if served_model(path).adapter is not None:
        return path, True
    resolved = resolve_model_path(str(path) if path.exists() else model)
    if not isinstance(resolved, Path):
        raise UserError(f"{model}: export needs a local model folder, run folder or alias, not a hub id.")
    return resolved, False


def export_model(model: str, *, fmt: str = "gguf", quant: str = "q4_k_m", ollama: str | None = None,
                 out_dir: Path | None = None, verify: bool = True, n_tokens: int = 32,
                 questions: list[str] | None = None, check_prompts: int = 4, held_out: int = 4,
                 max_ppl_increase: float | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export ``model`` (run, adapter folder or plain model) and return the report written to export.json.

    With ``verify`` the GGUFs are checked (:mod:`medtune.export.checks`) on ``questions`` (default: the first
    ``check_prompts`` of ``CHECK_QUESTIONS``) over ``n_tokens`` tokens and on ``held_out`` held-out answers.

    Raises:
        ExportCheckError: when a check fails (the files and export.json are kept; export.json has no ``gguf``).
        UserError: for a bad option or a failed conversion.
    """
    from medtune.export.checks import CHECK_QUESTIONS, ExportCheckError
    from medtune.export.gguf import QUANTS, convert_hf_to_gguf, quantize_gguf

    if fmt not in ("gguf", "hf"):
        raise UserError(f"--format {fmt}: choose gguf or hf")
    if quant not in QUANTS:
        raise UserError(f"--quant {quant}: choose one of {', '.join(QUANTS)}")
    source, is_adapter = export_source(model)
    out = out_dir or default_export_dir(str(source) if is_adapter else model)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"source": str(source), "format": fmt, "quant": quant, "out_dir": str(out)}
    hf_dir = source
    if is_adapter:
        _log(f"merging the adapter of {source} into its unquantized base")
        hf_dir = merged_folder(source, out / "merged")
    report["hf_dir"] = str(hf_dir)
    if fmt == "gguf":
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", source.name)
        _log("converting to GGUF f16 with llama.cpp's convert_hf_to_gguf.py")
        files = [convert_hf_to_gguf(hf_dir, out / f"{stem}-f16.gguf", "f16")]
        if quant != "f16":
            _log(f"quantizing to {quant} with llama_model_quantize")
            files.append(quantize_gguf(files[0], out / f"{stem}-{quant}.gguf", quant))
        report["files"] = {p.name: p.stat().st_size for p in files}
        if verify:
            report["verify"] = run_checks(source, is_adapter, files, questions or CHECK_QUESTIONS[:check_prompts],
                                          n_tokens, held_out, max_ppl_increase)
            if not report["verify"]["passed"]:
                (out / "export.json").write_text(json.dumps(report, indent=2))
                raise ExportCheckError(f"export check failed: {report['verify']['failures'][0]}; files kept, "
                                       f"report: {out / 'export.json'}")
        report["gguf"] = str(files[-1])
        if ollama:
            report["ollama"] = write_ollama(ollama, files[-1], hf_dir, source, out, params or {})
    (out / "export.json").write_text(json.dumps(report, indent=2))
    return report


def run_checks(source: Path, is_adapter: bool, files: list[Path], questions: list[str], n_tokens: int,
               held_out: int, max_ppl_increase: float | None) -> dict[str, Any]:
    """Compute the reference side with transformers, then check each GGUF with llama.cpp (progress on stderr)."""
    from medtune.export.checks import check_gguf_files, load_reference

    _log(f"checking the GGUFs against the {'adapter ' if is_adapter else ''}model: vocabulary, stop token, chat "
         f"template, teacher-forced log-probs of its greedy continuations ({len(questions)} served prompts x "
         f"{n_tokens} tokens) and perplexity on {held_out} held-out answers")
    reference = load_reference(source, is_adapter, questions, n_tokens, held_out)
    return check_gguf_files(reference, files, max_ppl_increase)


def write_ollama(name: str, gguf: Path, hf_dir: Path, source: Path, out: Path,
                 params: dict[str, Any]) -> dict[str, Any]:
    """Write the Modelfile next to the GGUF and run ``ollama create`` when ollama is installed."""
    from medtune.export.modelfile import build_modelfile, ollama_create_command
    from medtune.models import load_tokenizer
    from medtune.prompts import served_system_prompt

    text = build_modelfile(gguf.resolve(), load_tokenizer(str(hf_dir)), served_system_prompt(source), **params)
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
