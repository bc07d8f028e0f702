"""Reusable pieces of the chat page: CSS, the disclaimer banner, quick questions, answer rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from medtune.ui.conversation import Message, has_sources, is_grounded, organisation, timing_caption

CSS_FILE = Path(__file__).with_name("styles.css")

BANNER = (
    "**medtune is a research demo, not a doctor.** Answers may be wrong or out of date and are not medical "
    "advice. In an emergency call your local emergency number (911 / 112 / 999) now."
)

# label -> (question, Material icon); Material icons render without an emoji font (headless browsers).
QUICK_QUESTIONS: dict[str, tuple[str, str]] = {
    "Diabetes": ("What are the early symptoms of type 2 diabetes?", ":material/bloodtype:"),
    "Heart health": ("How can I lower my blood pressure naturally?", ":material/cardiology:"),
    "Medications": ("What is ibuprofen used for and what are its common side effects?", ":material/medication:"),
    "Infections": ("How do I know if a cut is infected?", ":material/coronavirus:"),
    "Asthma": ("What triggers an asthma attack?", ":material/pulmonology:"),
    "Migraine": ("What is the difference between a migraine and a tension headache?", ":material/neurology:"),
}
USER_AVATAR = ":material/person:"
ASSISTANT_AVATAR = ":material/medical_services:"
_GUARD_ICONS = {"emergency": ":material/emergency:", "refuse": ":material/block:", "defer": ":material/stethoscope:"}


def load_css() -> None:
    """Inject the small product stylesheet."""
    st.html(f"<style>{CSS_FILE.read_text(encoding='utf-8')}</style>")


def disclaimer_banner() -> None:
    """The always-visible 'not medical advice' banner."""
    st.warning(BANNER, icon=":material/health_and_safety:")


def quick_questions(columns: int = 3) -> str | None:
    """Example question buttons in a grid; return the question whose button was clicked."""
    st.markdown("##### Try a question")
    clicked = None
    items = list(QUICK_QUESTIONS.items())
    for start in range(0, len(items), columns):
        cols = st.columns(columns)
        for col, (label, (question, icon)) in zip(cols, items[start:start + columns], strict=False):
            if col.button(label, key=f"quick_{label}", help=question, icon=icon, width="stretch"):
                clicked = question
    return clicked


def render_assistant(message: Message) -> None:
    """Draw one assistant message: guard replies as alerts, answers with dose warnings, sources and disclaimer.

    A grounded answer (RAG) gets a "Sources (n)" expander, or the no-evidence note when no retrieved passage
    reached the relevance threshold.
    """
    action = message.get("action", "answer")
    if action == "emergency":
        st.error(message["content"], icon=_GUARD_ICONS["emergency"])
    elif action in ("refuse", "defer"):
        st.info(message["content"], icon=_GUARD_ICONS[action])
    else:
        st.markdown(message.get("answer") or "_(the model returned an empty answer)_")
        for warning in message.get("dose_warnings") or []:
            st.warning(warning, icon=":material/warning:")
        if has_sources(message):
            if message.get("citation_note"):
                st.caption(message["citation_note"])
            if message.get("citation_warning"):
                st.warning(message["citation_warning"], icon=":material/link_off:")
            sources_expander(message["citations"])
        elif is_grounded(message):
            from medtune.rag.grounding import NO_EVIDENCE

            st.info(NO_EVIDENCE, icon=":material/search_off:")
        if message.get("disclaimer"):
            st.caption(message["disclaimer"])
    detail = timing_caption(message)
    if action != "answer":
        detail += f" · guardrail: {message.get('category')}"
    st.caption(f"{detail} · {message.get('model', '')}")


def _escape_link_text(text: str) -> str:
    """Make a title safe inside Markdown link brackets."""
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def sources_expander(citations: list[dict[str, Any]]) -> None:
    """The retrieved passages of a grounded answer, numbered like the citations [n] in the answer."""
    from medtune.rag.grounding import NO_EVIDENCE_THRESHOLD

    with st.expander(f"Sources ({len(citations)})", expanded=False, icon=":material/menu_book:"):
        for number, passage in enumerate(citations, 1):
            title = _escape_link_text(str(passage.get("title") or "untitled"))
            url = str(passage.get("url") or "")
            st.markdown(f"**[{number}]** [{title}]({url})" if url else f"**[{number}]** {title}")
            score = float(passage.get("score") or 0.0)
            relevance = f"relevance {score:.2f}" + (" (weak match)" if score < NO_EVIDENCE_THRESHOLD else "")
            st.caption(" · ".join(x for x in (organisation(passage), str(passage.get("focus_area") or ""),
                                               relevance) if x))
            text = str(passage.get("text") or "").strip()
            if text:
                st.text(text)


def model_info_table(values: dict[str, Any]) -> None:
    """A compact two-column table of model facts (skips empty values)."""
    rows = [f"| {key} | {value} |" for key, value in values.items() if value not in (None, "", [], {})]
    if rows:
        st.markdown("| | |\n|---|---|\n" + "\n".join(rows))


def human_count(n: int | None) -> str:
    """134515008 -> '134.5M'."""
    if n is None:
        return "-"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return str(n)
