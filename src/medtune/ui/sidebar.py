"""The chat page sidebar: which model to talk to, the generation controls, model and dataset details.

Defaults come from environment variables set by ``medtune ui``: ``MEDTUNE_UI_BACKEND`` (transformers,
llamacpp, ollama, openai, or ``package.module:attr`` for a custom backend factory), ``MEDTUNE_UI_MODEL``,
``MEDTUNE_UI_URL``, ``MEDTUNE_UI_MAX_TOKENS``, ``MEDTUNE_UI_TEMPERATURE`` and ``MEDTUNE_UI_RAG`` (the
retrieval index to answer from; empty = retrieval off).
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from medtune.errors import UserError
from medtune.runs import RunDir, is_run_dir, list_runs
from medtune.ui.components import human_count, model_info_table

DEFAULT_MODEL = "smollm2-135m-instruct"
SOURCES = {
    "Local model": "transformers",
    "Run folder (fine-tuned)": "run",
    "GGUF file (llama.cpp)": "llamacpp",
    "Ollama": "ollama",
    "OpenAI-compatible server": "openai",
}
DEFAULT_URLS = {"ollama": "http://127.0.0.1:11434", "openai": "http://127.0.0.1:8000/v1"}
RAG_LABEL = "Answer from trusted sources (RAG)"
RAG_DEFAULT_K = 4
BUILD_INDEX_COMMAND = "medtune index build medquad:medquad/MedQuAD_xml.tar.gz --name medquad"


@dataclass
class ModelChoice:
    """What the user picked: backend kind, model, constructor options, and the run folder if any."""

    kind: str
    model: str | None
    options: dict[str, Any] = field(default_factory=dict)
    run: RunDir | None = None

    @property
    def label(self) -> str:
        """Short name shown in captions and saved with feedback."""
        name = self.run.root.name if self.run is not None else (self.model or "server default")
        return f"{name} ({self.kind})"


def env_default(name: str, default: str) -> str:
    """Read a ``MEDTUNE_UI_*`` default (empty values count as unset)."""
    return os.environ.get(f"MEDTUNE_UI_{name}") or default


def _make_backend(kind: str, model: str | None, options: dict[str, Any]) -> Any:
    """Build the backend: a registry name, or ``module:attr`` naming a class/factory ``attr(model, **options)``."""
    if ":" in kind:
        module_name, attr = kind.split(":", 1)
        factory = getattr(importlib.import_module(module_name), attr)
        return factory(model, **options)
    from medtune.inference.assistant import load_backend

    return load_backend(kind, model, **options)


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def cached_backend(kind: str, model: str | None, options_json: str) -> Any:
    """Load a backend once per (kind, model, options) and share it between sessions and reruns."""
    return _make_backend(kind, model, json.loads(options_json))


@st.cache_resource(show_spinner=False)
def cached_guard() -> Any:
    """The default guardrails (built once)."""
    from medtune.guard import Guard

    return Guard()


def available_indexes() -> list[dict[str, Any]]:
    """Manifests of the completed retrieval indexes in ``MEDTUNE_HOME/indexes`` ([] when none or unreadable)."""
    from medtune.rag.builder import list_indexes

    try:
        return [m for m in list_indexes() if m.get("complete") and m.get("name")]
    except (OSError, ValueError, UserError):  # unreadable folder or manifest: treat as no index
        return []


@st.cache_resource(show_spinner="Opening the retrieval index…", max_entries=4)
def cached_retriever(name: str, folder: str = "", build_key: str = "") -> Any:
    """Open index ``name`` once and share it between sessions and reruns.

    Qdrant local mode allows one client per index folder per process, so the retriever must be cached.
    ``folder`` and ``build_key`` only key the cache: another MEDTUNE_HOME or a rebuilt index opens afresh.
    """
    from medtune.rag import open_retriever

    return open_retriever(name=name)


def load_retriever(name: str | None) -> Any:
    """The cached retriever of index ``name`` (None: retrieval off, or the index could not be opened)."""
    if not name:
        return None
    try:
        from medtune.rag.builder import index_dir, read_manifest

        manifest = read_manifest(name) or {}
        return cached_retriever(name, str(index_dir(name).resolve()), str(manifest.get("key", "")))
    except UserError as error:
        st.error(f"Could not open the index {name!r}, answering without sources: {error}",
                 icon=":material/error:")
    except Exception as error:  # noqa: BLE001 - a broken index must not crash the page
        st.error(f"Could not open the index {name!r}, answering without sources: {type(error).__name__}: {error}",
                 icon=":material/error:")
    return None


#: the sources-only threshold `medtune index calibrate medquad` chose on the demo data's validation split (docs/rag.md)
SOURCES_ONLY_DEFAULT = 0.75


def retrieval_controls() -> tuple[str | None, int]:
    """The "Sources" controls: RAG toggle, index and passages per answer; returns (index name or None, k)."""
    indexes = available_indexes()
    names = [str(m["name"]) for m in indexes]
    wanted = env_default("RAG", "").strip()
    if not names:
        st.toggle(RAG_LABEL, value=False, key="rag_on", disabled=True,
                  help="Needs a retrieval index built with `medtune index build`.")
        st.caption(f"No retrieval index yet. Build one with `{BUILD_INDEX_COMMAND}`, then reload this page.")
        return None, RAG_DEFAULT_K
    if wanted and wanted not in names:
        st.warning(f"Index `{wanted}` (--rag / MEDTUNE_UI_RAG) not found; available: {', '.join(names)}.",
                   icon=":material/warning:")
    on = st.toggle(RAG_LABEL, value=wanted in names, key="rag_on",
                   help="Retrieve passages from a medical index, give them to the model and cite them under "
                        "the answer.")
    default = wanted if wanted in names else ("medquad" if "medquad" in names else names[0])
    name = st.selectbox("Index", names, index=names.index(default), key="rag_index", disabled=not on)
    k = st.slider("Passages per answer (k)", 1, 8, RAG_DEFAULT_K, 1, key="rag_k", disabled=not on)
    manifest = indexes[names.index(name)]
    st.caption(" · ".join(f"{manifest[key]:,} {label}" for key, label in
                          (("documents", "documents"), ("pairs", "QA pairs"), ("chunks", "passages"))
                          if isinstance(manifest.get(key), int)))
    return (name if on else None), int(k)


def sources_only_control(retrieval_on: bool) -> float | None:
    """The "Answer only from the sources" switch and its minimum passage score (``MEDTUNE_UI_RAG_MIN_SCORE`` turns it
    on with that score); returns the threshold for ``Assistant(rag_min_score=...)``, or None when off."""
    try:
        preset = float(env_default("RAG_MIN_SCORE", "0"))
    except ValueError:
        st.warning("MEDTUNE_UI_RAG_MIN_SCORE is not a number between 0 and 1; sources-only mode starts off.",
                   icon=":material/warning:")
        preset = 0.0
    preset = preset if 0.0 < preset <= 1.0 else 0.0
    on = st.toggle("Answer only from the sources", value=preset > 0, key="rag_sources_only",
                   disabled=not retrieval_on,
                   help="When no retrieved passage reaches the minimum score, reply that the sources do not cover "
                        "the question instead of letting the model answer. Choose the score on validation data "
                        "with `medtune index calibrate INDEX PREPARED`.")
    score = st.slider("Minimum passage score", 0.0, 1.0, preset or SOURCES_ONLY_DEFAULT, 0.01, key="rag_min_score",
                      disabled=not (retrieval_on and on))
    return float(score) if retrieval_on and on else None


def citation_repair_control(retrieval_on: bool) -> bool:
    """The "Correct citation numbers" switch (on by default); returns ``Assistant(repair_citations=...)``."""
    on = st.toggle("Correct citation numbers", value=True, key="rag_repair_citations", disabled=not retrieval_on,
                   help="When the model cites a source that does not state its sentence, move the citation to the "
                        "listed source that does and say so under the answer. Off: show the model's own numbers.")
    return bool(on)


def _run_choice(default_model: str, kind: str) -> ModelChoice | None:
    """Pick a run folder (newest first); the transformers backend loads base model + adapter."""
    runs = list_runs()
    if not runs:
        st.info("No run folders yet. Train one with `medtune train RECIPE`.")
        return None
    names = [run.root.name for run in runs]
    wanted = Path(default_model).expanduser().resolve()
    index = next((i for i, run in enumerate(runs) if run.root.resolve() == wanted
                  or run.root.name == default_model), 0)
    name = st.selectbox("Run folder", names, index=index, key="run_folder")
    run = runs[names.index(name)]
    return ModelChoice(kind, str(run.root), run=run)


def model_picker() -> ModelChoice | None:
    """Sidebar controls choosing the backend and model; None when nothing usable is selected."""
    env_kind = env_default("BACKEND", "transformers")
    env_model = env_default("MODEL", DEFAULT_MODEL)
    sources = dict(SOURCES)
    if ":" in env_kind:
        sources = {f"Custom ({env_kind})": env_kind, **sources}
    values = list(sources.values())
    default_source = "run" if env_kind == "transformers" and is_run_dir_name(env_model) else env_kind
    index = values.index(default_source) if default_source in values else 0
    label = st.selectbox("Model source", list(sources), index=index, key="model_source")
    source = sources[label]
    if source == "run":
        return _run_choice(env_model, env_kind if ":" in env_kind else "transformers")
    if source == "transformers":
        model = st.text_input("Model (alias, folder or HF id)", env_model if env_kind == source else DEFAULT_MODEL,
                              key="model_name")
        return ModelChoice("transformers", model.strip() or DEFAULT_MODEL)
    if source == "llamacpp":
        model = st.text_input("GGUF file or alias", env_model if env_kind == source else DEFAULT_MODEL,
                              key="gguf_path")
        return ModelChoice("llamacpp", model.strip() or DEFAULT_MODEL)
    if source in DEFAULT_URLS:
        url = st.text_input("Server URL", env_default("URL", DEFAULT_URLS[source]), key=f"{source}_url")
        hint = "Ollama model" if source == "ollama" else "Model name (empty: the server's first model)"
        model = st.text_input(hint, env_model if env_kind == source else "", key=f"{source}_model").strip()
        if source == "ollama" and not model:
            st.info("Enter the name of an Ollama model, e.g. `medtune-smollm2`.")
            return None
        return ModelChoice(source, model or None, {"url": url.strip()})
    return ModelChoice(source, env_model)


def is_run_dir_name(name: str) -> bool:
    """True when ``name`` is a run folder path or the name of a folder in the runs directory."""
    from medtune.paths import runs_dir

    return is_run_dir(Path(name).expanduser()) or is_run_dir(runs_dir() / name)


def generation_controls() -> dict[str, Any]:
    """Temperature, maximum answer length and top-p (the study's controls); returns their values."""
    temperature = st.slider("Temperature", 0.0, 1.5, float(env_default("TEMPERATURE", "0.3")), 0.05,
                            key="temperature", help="0 = always the most likely word (greedy).")
    default_tokens = min(1024, max(8, int(env_default("MAX_TOKENS", "256")) // 8 * 8))
    max_tokens = st.slider("Maximum answer length (tokens)", 8, 1024, default_tokens, 8, key="max_new_tokens")
    top_p = st.slider("Top-p", 0.05, 1.0, 0.9, 0.05, key="top_p",
                      help="Sample only from the most likely words whose probabilities add up to p.")
    return {"temperature": temperature, "max_new_tokens": max_tokens, "top_p": top_p}


def model_details(backend: Any, choice: ModelChoice) -> None:
    """Expanders with the model facts (parameters, base, adapter) and the training data of a run."""
    info = backend.info()
    run_info = choice.run.info() if choice.run is not None else {}
    with st.expander("Model information", expanded=False):
        model_info_table({
            "Backend": info.backend, "Model": info.model, "Parameters": human_count(info.parameters),
            "Base model": info.base_model or run_info.get("base_model"), "Adapter": info.adapter,
            "Context window": info.context_window, "Recipe": run_info.get("recipe"),
            "Prompt style": run_info.get("prompt_style"), "Status": run_info.get("status"),
            **{key: value for key, value in info.extra.items()},
        })
    if choice.run is not None:
        dataset_details(choice.run)


def dataset_details(run: RunDir) -> None:
    """The training data of a run, from its ``data_manifest.json``."""
    from medtune.ui.runs_view import read_json

    manifest = read_json(run.data_manifest)
    with st.expander("Training data", expanded=False):
        if not manifest:
            st.caption("This run has no data_manifest.json.")
            return
        splits = manifest.get("splits") or {}
        model_info_table({
            "Input rows": manifest.get("input_rows"), "Kept": manifest.get("kept"),
            **{f"{name} rows": (value.get("rows") if isinstance(value, dict) else value)
               for name, value in splits.items()},
            "Prompt style": manifest.get("prompt_style"), "Seed": manifest.get("seed"),
        })
        inputs = manifest.get("inputs") or []
        if inputs:
            st.markdown("**Sources**")
            for item in inputs:
                st.markdown(f"- `{item.get('path')}` ({item.get('format', '?')}, {item.get('rows', '?')} rows)")
        rejected = manifest.get("rejected") or {}
        if rejected:
            st.markdown("**Dropped rows**: " + ", ".join(f"{k}: {v}" for k, v in rejected.items()))
