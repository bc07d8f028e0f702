"""The one task interface: load examples, turn an example into a prompt, score an answer.

Free-text tasks yield :class:`FreeTextExample` (question + reference answer); the answer is generated and scored
with :func:`medtune.evaluate.metrics.score_free_text`. Multiple-choice tasks yield :class:`ChoiceExample`
(a context prompt + option continuations + gold index); each option is scored by log-likelihood.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medtune.errors import UserError


@dataclass
class FreeTextExample:
    """One open question with its reference answer."""

    id: str
    question: str
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChoiceExample:
    """One multiple-choice question: ``query`` is the question text (and any context), ``choices`` the options."""

    id: str
    query: str
    choices: list[str]
    gold: int
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Task:
    """A registered benchmark task.

    Attributes:
        name: registry key (``medqa``).
        kind: ``free_text`` or ``multiple_choice``.
        load: ``load(data_dir, context) -> list[example]``; ``context`` carries e.g. the run folder.
        description: one line for ``--help`` and reports.
        shots_loader: for MC tasks, returns the pool the k-shot examples are drawn from (default: the test set).
        choice_labels: letters shown before each option in the prompt (empty: options are not listed).
        n_choices: options per question (for the random baseline).
    """

    name: str
    kind: Literal["free_text", "multiple_choice"]
    load: Callable[[Path, dict[str, Any]], list[Any]]
    description: str
    shots_loader: Callable[[Path], list[ChoiceExample]] | None = None
    choice_labels: tuple[str, ...] = ()
    n_choices: int = 4

    def mc_prompt(self, example: ChoiceExample, shots: list[ChoiceExample] | None = None) -> str:
        """Render the lm-evaluation-harness style prompt: optional solved shots, then ``...Answer:``."""
        parts = [self._render_query(s) + " " + s.choices[s.gold] for s in shots or []]
        parts.append(self._render_query(example))
        return "\n\n".join(parts)

    def _render_query(self, example: ChoiceExample) -> str:
        """``Question: ...`` (options listed when the task has labels) ``Answer:``."""
        text = example.query
        if self.choice_labels:
            listed = "\n".join(f"{label}. {choice}" for label, choice in zip(self.choice_labels, example.choices, strict=True))
            text = f"{text}\n{listed}"
        return f"{text}\nAnswer:"

    def continuations(self, example: ChoiceExample) -> list[str]:
        """The option continuations scored after the prompt (a leading space, as lm-eval's target_delimiter)."""
        return [" " + choice for choice in example.choices]

    @property
    def random_baseline(self) -> float | None:
        """Expected accuracy of uniform guessing (None for free text)."""
        return None if self.kind == "free_text" else 1.0 / self.n_choices


def require_file(path: Path, task: str, hint: str) -> Path:
    """Return ``path`` or raise a UserError naming it and how to get it."""
    if not path.exists():
        raise UserError(f"task {task}: {path} not found; {hint}")
    return path
