"""The Assistant: guard the question, build the prompt (system, history, optional retrieved passages),
stream the answer from a backend, finalize it (dose warnings, disclaimer) and time it.

Used by ``medtune ask``, ``medtune chat`` and the Streamlit UI.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from medtune.guard.conversation import SentenceGate, check_conversation
from medtune.inference.base import Backend, GenerationSettings, Message
from medtune.inference.history import approximate_token_count, trim_history
from medtune.inference.registry import load_backend

if TYPE_CHECKING:
    from medtune.guard import Guard, GuardDecision

__all__ = ["Assistant", "AssistantEvent", "AssistantReply", "history_turns", "load_backend"]


@dataclass
class AssistantReply:
    """One finished answer with its guard decision, timing and citations."""

    text: str
    raw_answer: str
    decision: GuardDecision
    dose_warnings: list[str]
    seconds: float
    first_token_seconds: float | None
    tokens: int
    citations: list[dict[str, Any]] = field(default_factory=list)
    cited: list[int] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)
    citation_warning: str | None = None
    answer: str = ""  # the answer as served: the model's, with citation numbers repaired (empty: as raw_answer)
    reattributed: list[tuple[str, int, int]] = field(default_factory=list)  # (sentence, cited, served) numbers
    citation_note: str | None = None
    streamed: str = ""  # the text sent as token events (what a streaming caller has already shown)


@dataclass
class AssistantEvent:
    """A streamed piece (``token``) or the end of the answer (``final``, with the reply)."""

    kind: Literal["token", "final"]
    text: str
    reply: AssistantReply | None = None


def _passage_dict(passage: Any) -> dict[str, Any]:
    """Turn a retrieved passage (dataclass, pydantic model or dict) into a plain dict."""
    if dataclasses.is_dataclass(passage) and not isinstance(passage, type):
        return dataclasses.asdict(passage)
    if hasattr(passage, "model_dump"):
        return dict(passage.model_dump())
    return dict(passage) if isinstance(passage, dict) else dict(vars(passage))


def history_turns(reply: AssistantReply) -> list[Message]:
    """The two turns a caller appends to its history: the *sanitized* question and the reply, each marked with
    the guard's action (``guard_action``).

    Control strings and removed injection phrases never reach a later turn. A turn refused as an injection
    is left out entirely (its text may still carry instructions that could not be cut out). Emergency,
    refusal and deferral turns are kept for the guard, so a later "what should I do?" is still checked against
    the red flag; the model is only shown answered turns (:meth:`Assistant.stream`).
    """
    decision = reply.decision
    if decision.category == "injection" and decision.action != "answer":
        return []
    answer = (reply.answer or reply.raw_answer) if decision.action == "answer" else (decision.response or reply.text)
    return [{"role": "user", "content": decision.sanitized_input, "guard_action": decision.action},
            {"role": "assistant", "content": answer, "guard_action": decision.action}]


def _unguarded_decision(question: str) -> GuardDecision:
    """The decision used when the guard is off: answer, with control strings removed."""
    from medtune.guard import GuardDecision
    from medtune.prompts import strip_control_strings

    return GuardDecision(action="answer", category="ok", reason="guard disabled", response=None,
                         sanitized_input=strip_control_strings(question), injection_detected=False)


class Assistant:
    """A guarded, streaming medical QA assistant on top of any :class:`Backend`."""

    def __init__(self, backend: Backend, guard: Guard | None, settings: GenerationSettings | None = None,
                 retriever: Any = None, top_k_passages: int = 4, system_prompt: str | None = None,
                 rag_min_score: float | None = None, repair_citations: bool = True,
                 passage_header: str = "question") -> None:
        """Wrap ``backend``; ``guard`` None disables input checks and answer finalization.

        ``repair_citations`` (with a retriever): renumber a citation whose source does not state its sentence to the
        listed source that does (:func:`medtune.rag.grounding.reattribute_citations`), with a note saying so.

        ``rag_min_score`` (with a retriever): sources-only mode, reply that the sources do not cover the question,
        without a model call, when no passage reaches it (:func:`medtune.rag.grounding.abstains`).

        ``system_prompt`` replaces the guard's (a run's served prompt, :func:`medtune.prompts.served_system_prompt`);
        without a guard there is no system prompt unless one is given. ``passage_header``: how passages are headed in
        the grounded prompt, as the run was trained (:func:`medtune.prompts.served_passage_header`).
        """
        self.backend = backend
        self.guard = guard
        self.system_prompt = system_prompt or (guard.system_prompt if guard is not None else None)
        self.settings = settings or GenerationSettings()
        self.retriever = retriever
        self.top_k_passages = top_k_passages
        self.rag_min_score = rag_min_score
        self.repair_citations = repair_citations
        self.passage_header = passage_header

    def build_messages(self, question: str, history: list[Message],
                       passages: list[Any] | None = None) -> list[Message]:
        """System prompt (guard, plus retrieval instructions) + history + question, trimmed to the window."""
        guard_prompt = self.system_prompt
        system: list[Message] = [{"role": "system", "content": guard_prompt}] if guard_prompt else []
        turn: list[Message] = [{"role": "user", "content": question}]
        if passages is not None:
            from medtune.rag.grounding import build_grounded_messages

            grounded = build_grounded_messages(question, passages, system_prompt=guard_prompt,
                                               header=self.passage_header)
            system = [m for m in grounded if m["role"] == "system"]
            turn = [m for m in grounded if m["role"] != "system"]
        past = [m for m in history if m["role"] in ("user", "assistant")]
        messages = system + past + turn
        window = self.backend.info().context_window or 2048
        return trim_history(messages, self.backend.count_tokens, window - self.settings.max_new_tokens)

    def safe_history(self, history: list[Message]) -> list[Message]:
        """History as the guard may see it: every user turn sanitized (control strings and injection phrases
        removed), a user turn the classifier still flags as an injection dropped with its reply, assistant turns
        without control strings. ``guard_action`` marks are kept. Without a guard, control strings are stripped."""
        from medtune.prompts import strip_control_strings

        out: list[Message] = []
        skip_reply = False
        for message in history:
            role, text = message.get("role"), str(message.get("content") or "")
            action = {"guard_action": message["guard_action"]} if "guard_action" in message else {}
            if role == "user":
                clean = self.guard.sanitize(text) if self.guard is not None else strip_control_strings(text)
                classifier = getattr(self.guard, "classifier", None)
                skip_reply = not clean or (classifier is not None and "injection" in classifier.score(
                    clean.casefold()).flagged)
                if not skip_reply:
                    out.append({"role": "user", "content": clean, **action})
            elif role == "assistant" and not skip_reply:
                out.append({"role": "assistant", "content": strip_control_strings(text), **action})
            elif role == "system":
                out.append({"role": "system", "content": text})
        return out

    @staticmethod
    def model_history(history: list[Message]) -> list[Message]:
        """The turns the model is shown: answered turns only (role and content), no canned replies."""
        return [{"role": m["role"], "content": m["content"]} for m in history
                if m.get("guard_action", "answer") == "answer"]

    def _count_answer_tokens(self, answer: str) -> int:
        """Tokens of the generated answer (backend tokenizer when it has one)."""
        generated = getattr(self.backend, "last_generated_tokens", None)
        if generated is not None:
            return int(generated)
        counter = getattr(self.backend, "count_text_tokens", None)
        if counter is not None:
            return int(counter(answer))
        return max(0, approximate_token_count([{"role": "assistant", "content": answer}]) - 4)

    def stream(self, question: str, history: list[Message]) -> Iterator[AssistantEvent]:
        """Yield ``token`` events as the answer is generated, then one ``final`` event with the reply."""
        start = time.perf_counter()
        history = self.safe_history(history)
        if self.guard is not None:
            # the one conversation check (the server's too): every earlier turn re-read, follow-ups in context
            conversation = check_conversation(self.guard, [*(m for m in history if m["role"] in ("user", "assistant")),
                                                           {"role": "user", "content": question}])
            decision, past = conversation.decision, conversation.model_turns()
        else:
            decision, past = _unguarded_decision(question), self.model_history(history)
        if decision.action != "answer":
            yield from self._canned(decision, start)
            return
        passages = None
        if self.retriever is not None:
            passages = list(self.retriever.retrieve(decision.sanitized_input, self.top_k_passages))
            from medtune.rag.grounding import NO_EVIDENCE, NOT_COVERED, abstains

            if abstains(passages, self.rag_min_score):
                text = f"{NOT_COVERED}\n\n{NO_EVIDENCE}"
                yield AssistantEvent("token", NOT_COVERED)
                reply = AssistantReply(text=text, raw_answer=NOT_COVERED, decision=decision, dose_warnings=[],
                                       seconds=time.perf_counter() - start, first_token_seconds=None, tokens=0)
                yield AssistantEvent("final", text, reply)
                return
        messages = self.build_messages(decision.sanitized_input, past, passages)
        # sentences are released only after the output screen read them: a blocked one is never shown
        gate = SentenceGate(self.guard.screen_answer if self.guard is not None else None)
        first: float | None = None
        blocked = None
        lead = getattr(decision, "emergency_line", None)   # education about emergencies: the line comes first
        if lead:
            yield AssistantEvent("token", f"{lead.strip()}\n\n")

        def timed(pieces: Iterable[str]) -> Iterator[str]:
            nonlocal first
            for piece in pieces:
                if first is None:
                    first = time.perf_counter() - start
                yield piece

        for step in gate.releases(timed(self.backend.stream_chat(messages, self.settings))):
            if step.blocked is not None:
                blocked = step.blocked
                break
            if step.text:
                yield AssistantEvent("token", step.text)
        if blocked is not None:
            yield from self._canned(blocked, start, shown=f"{lead.strip()}\n\n{gate.released}" if lead else gate.released)
            return
        raw = gate.released.strip()
        from medtune.rag.grounding import (
            check_citations,
            citation_warning,
            format_citations,
            has_evidence,
            reattribute_citations,
            reattribution_note,
        )

        listed: list[Any] = passages or []
        evidence = bool(listed) and has_evidence(listed)
        answer, note = raw, None
        moved: list[Any] = []
        if evidence and self.repair_citations:
            answer, moved = reattribute_citations(raw, listed)
            note = reattribution_note(moved)
        text, warnings = answer, []
        if self.guard is not None:
            guarded = self.guard.finalize_answer(answer, decision)
            text, warnings = guarded.text, list(guarded.dose_warnings)
        citations: list[dict[str, Any]] = []
        check, warning = None, None
        if passages:
            if evidence:
                check = check_citations(answer, passages)
                warning = citation_warning(check)
            for line in (note, warning):
                if line:
                    text = f"{text}\n\n{line}"
            text = f"{text}\n\n{format_citations(passages)}"
            citations = [_passage_dict(p) for p in passages]
        reply = AssistantReply(text=text, raw_answer=raw, decision=decision, dose_warnings=warnings,
                               seconds=time.perf_counter() - start, first_token_seconds=first,
                               tokens=self._count_answer_tokens(raw), citations=citations,
                               cited=check.valid if check else [], invalid_citations=check.invalid if check else [],
                               citation_warning=warning, answer=answer, reattributed=moved, citation_note=note,
                               streamed=(f"{lead.strip()}\n\n" if lead else "") + gate.released)
        yield AssistantEvent("final", text, reply)

    @staticmethod
    def _canned(decision: GuardDecision, start: float, shown: str = "") -> Iterator[AssistantEvent]:
        """The guard's reply as the answer (after ``shown``, the sentences already released, when an answer
        was blocked part-way)."""
        text = decision.response or ""
        yield AssistantEvent("token", ("\n\n" if shown else "") + text)
        reply = AssistantReply(text=f"{shown.strip()}\n\n{text}" if shown.strip() else text, raw_answer="",
                               decision=decision, dose_warnings=[], seconds=time.perf_counter() - start,
                               first_token_seconds=None, tokens=0)
        yield AssistantEvent("final", reply.text, reply)

    def ask(self, question: str, history: list[Message] | None = None) -> AssistantReply:
        """Answer one question (no streaming) and return the reply."""
        reply = None
        for event in self.stream(question, history or []):
            if event.kind == "final":
                reply = event.reply
        assert reply is not None
        return reply
