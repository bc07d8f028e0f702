"""The guard's view of a whole conversation, and answers released only after they are checked.

:func:`check_conversation` is the one conversation check: the Assistant (ask, chat, UI) and ``medtune serve``
both call it. Every user turn is checked with the turns before it (a short follow-up is read together with
the turns it continues, :meth:`medtune.guard.Guard.check_input`); a turn that was not answered keeps its
decision and is never shown to the model, nor is the reply that followed it; an assistant turn the client
wrote is stripped of control strings and must pass the output screen (:meth:`Guard.screen_answer`), or it is
dropped with the turn it answered.

:meth:`SentenceGate.releases` turns a stream of generated pieces into sentences released only after the output
screen has read everything up to them: a blocked sentence never reaches the user, its refusal does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from medtune.prompts import strip_control_strings

Message = dict[str, Any]
#: A sentence ends at . ! ? followed by white space, or at a line break.
_SENTENCE_BOUNDARY = re.compile(r"(?<=[.!?])\s+|\n")


@dataclass
class ConversationCheck:
    """The guard's reading of a conversation whose last message is the user's new turn."""

    decision: Any                    # GuardDecision for the last user turn: what to do now
    turns: list[Message]             # every turn as the guard read it: sanitized, each with ``guard_action``
    notes: list[str] = field(default_factory=list)   # turns not shown to the model, and why

    def model_turns(self) -> list[Message]:
        """The earlier turns the model may see (answered ones only), role and content, without the last turn."""
        return [{"role": m["role"], "content": m["content"]} for m in self.turns[:-1]
                if m.get("guard_action") == "answer"]


def check_conversation(guard: Any, messages: list[Message]) -> ConversationCheck:
    """Check every user turn of ``messages`` (the last one is the new question) the way the Assistant would.

    ``messages`` holds ``user`` and ``assistant`` turns (others are ignored: the guard's system prompt replaces
    any client one). Earlier turns are re-checked without writing the audit log again.
    """
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise ValueError("a conversation needs a user turn")
    turns: list[Message] = []
    notes: list[str] = []
    decision = None
    for index, message in enumerate(messages[: users[-1] + 1]):
        role, text = message.get("role"), str(message.get("content") or "")
        if role == "user":
            last = index == users[-1]
            history = [{"role": m["role"], "content": m["content"], "guard_decision": m.get("guard_decision")}
                       for m in turns if m.get("guard_action") == "answer" or m["role"] == "user"]
            decision = guard.check_input(text, history=history or None, audit=last)
            action = decision.action if decision.sanitized_input else "refuse"
            if action != "answer" and not last:
                notes.append(f"user turn {index + 1} not forwarded ({decision.category})")
            turns.append({"role": "user", "content": decision.sanitized_input, "guard_action": action,
                          "guard_decision": decision})
        elif role == "assistant":
            clean = strip_control_strings(text)
            answered = turns[-1]["guard_action"] if turns and turns[-1]["role"] == "user" else "answer"
            blocked = guard.screen_answer(clean) if answered == "answer" else None
            if blocked is not None:
                notes.append(f"assistant turn {index + 1} not forwarded ({blocked.category})")
                if turns and turns[-1]["role"] == "user":
                    # the question that got it is not shown either, and what continues it is refused too
                    turns[-1]["guard_action"], turns[-1]["guard_decision"] = "refuse", blocked
            action = "refuse" if blocked is not None else answered
            turns.append({"role": "assistant", "content": clean, "guard_action": action})
    return ConversationCheck(decision=decision, turns=turns, notes=notes)


@dataclass
class Release:
    """One step of a checked stream: ``text`` may be shown; ``blocked`` replaces everything when set."""

    text: str
    blocked: Any = None              # the GuardDecision whose reply replaces the answer


class SentenceGate:
    """Holds generated text until a sentence is complete and lets it out only if ``screen`` passes everything
    released so far plus that sentence (``screen(text)`` returns a blocking decision or None)."""

    def __init__(self, screen: Callable[[str], Any] | None) -> None:
        """Gate with ``screen`` (:meth:`medtune.guard.Guard.screen_answer`); None lets every piece through."""
        self.screen = screen
        self.released = ""
        self.pending = ""

    def feed(self, piece: str) -> Release | None:
        """Take one generated piece; a :class:`Release` when a sentence (or a block) is ready, else None."""
        if self.screen is None:
            self.released += piece
            return Release(piece)
        self.pending += piece
        ends = [m.end() for m in _SENTENCE_BOUNDARY.finditer(self.pending)]
        return self._let_out(ends[-1]) if ends else None

    def flush(self) -> Release | None:
        """Screen and release what is left at the end of the stream."""
        return self._let_out(len(self.pending)) if self.pending else None

    def releases(self, pieces: Iterable[str]) -> Iterator[Release]:
        """Release generated ``pieces`` sentence by sentence, each only after the screen passed the text so far.

        When the screen blocks, one :class:`Release` carrying the decision is yielded and the stream stops (the
        caller stops the engine): nothing of the blocked sentence has been released.
        """
        for piece in pieces:
            step = self.feed(piece)
            if step is not None:
                yield step
                if step.blocked is not None:
                    return
        if (step := self.flush()) is not None:
            yield step

    def _let_out(self, cut: int) -> Release:
        ready, rest = self.pending[:cut], self.pending[cut:]
        assert self.screen is not None
        if (blocked := self.screen(self.released + ready)) is not None:
            return Release("", blocked)
        self.released, self.pending = self.released + ready, rest
        return Release(ready)
