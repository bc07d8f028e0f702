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
    """One multiple-choice question as its source gives it: question, options, gold index, optional context."""

    id: str
    question: str
    choices: list[str]
    gold: int
    context: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChoiceFormat:
    """How a multiple-choice example becomes text, mirroring an lm-evaluation-harness task definition.

    Attributes:
        name: ``letters`` (options listed, the letter scored), ``labels`` (fixed answer words such as yes/no/maybe)
            or ``cloze`` (options not listed, each option's text scored).
        doc_to_text: the prompt of one example, ending with ``Answer:``.
        doc_to_choice: the answer strings scored after the prompt (``A``-``D``, or the option texts).
        description: text put once before everything (lm-eval's ``description``; MMLU names its subject).
        lm_eval_task: the lm-eval task this format reproduces (``medqa_4options``), for reports.
    """

    name: Literal["letters", "labels", "cloze"]
    doc_to_text: Callable[[ChoiceExample], str]
    doc_to_choice: Callable[[ChoiceExample], list[str]]
    description: Callable[[ChoiceExample], str] = lambda example: ""
    lm_eval_task: str = ""


@dataclass
class Task:
    """A registered benchmark task.

    Attributes:
        name: registry key (``medqa``).
        kind: ``free_text``, ``multiple_choice`` or ``rubric`` (criteria-graded answers, ``rubric:FILE``).
        load: ``load(data_dir, context) -> list[example]``; ``context`` carries e.g. the run folder.
        description: one line for ``--help`` and reports.
        choice_format: for MC tasks, how examples become prompt text and scored continuations.
        shots_loader: for MC tasks, the train/dev pool k-shot examples come from (None: the task refuses shots).
        shot_sampler: ``random`` (seeded per question) or ``first_n`` of the same subject (lm-eval's MMLU sampler).
        n_choices: options per question (for the random baseline).
        group_by: a ``meta`` key whose values get their own accuracy (MMLU subjects).
    """

    name: str
    kind: Literal["free_text", "multiple_choice", "rubric"]
    load: Callable[[Path, dict[str, Any]], list[Any]]
    description: str
    choice_format: ChoiceFormat | None = None
    shots_loader: Callable[[Path], list[ChoiceExample]] | None = None
    shot_sampler: Literal["random", "first_n"] = "random"
    n_choices: int = 4
    group_by: str | None = None

    @property
    def format(self) -> ChoiceFormat:
        """The task's choice format (a UserError for free-text tasks)."""
        if self.choice_format is None:
            raise UserError(f"task {self.name} is free text; it has no multiple-choice format.")
        return self.choice_format

    def mc_prompt(self, example: ChoiceExample, shots: list[ChoiceExample] | None = None) -> str:
        """lm-eval's context: description, then each solved shot and a blank line, then the question's prompt."""
        fmt = self.format
        solved = "".join(f"{fmt.doc_to_text(s)} {fmt.doc_to_choice(s)[s.gold]}\n\n" for s in shots or [])
        return fmt.description(example) + solved + fmt.doc_to_text(example)

    def continuations(self, example: ChoiceExample) -> list[str]:
        """The answer continuations scored after the prompt (a leading space: lm-eval's ``target_delimiter``)."""
        return [" " + choice for choice in self.format.doc_to_choice(example)]

    def choice_texts(self, example: ChoiceExample) -> list[str]:
        """The answer strings whose character lengths normalise ``acc_norm`` (as lm-eval does)."""
        return list(self.format.doc_to_choice(example))

    def select_shots(self, pool: list[ChoiceExample], k: int, example: ChoiceExample, seed: int = 1234
                     ) -> list[ChoiceExample]:
        """``k`` solved examples for ``example`` from the train/dev ``pool`` (never the example itself)."""
        if k <= 0:
            return []
        if self.shot_sampler == "first_n":
            key = self.group_by
            same = [s for s in pool if s.id != example.id and (key is None or s.meta.get(key) == example.meta.get(key))]
            return same[:k]
        from medtune.evaluate.multiple_choice import sample_shots

        return sample_shots(pool, k, example.id, seed)

    @property
    def random_baseline(self) -> float | None:
        """Expected accuracy of uniform guessing (None for free text)."""
        return 1.0 / self.n_choices if self.kind == "multiple_choice" else None


def require_file(path: Path, task: str, hint: str) -> Path:
    """Return ``path`` or raise a UserError naming it and how to get it."""
    if not path.exists():
        raise UserError(f"task {task}: {path} not found; {hint}")
    return path
