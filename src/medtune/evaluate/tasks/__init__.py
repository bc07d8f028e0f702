"""Registry of evaluation tasks: one :class:`Task` per name, looked up with :func:`get_task`."""

from __future__ import annotations

from medtune.errors import UserError
from medtune.evaluate.tasks.base import ChoiceExample, FreeTextExample, Task
from medtune.evaluate.tasks.free_text_sets import (
    load_liveqa,
    load_medicationqa,
    load_medquad_test,
    load_medquad_validation,
    load_prepared_test,
    load_prepared_validation,
)
from medtune.evaluate.tasks.multiple_choice_sets import (
    CLOZE_FORMAT,
    MEDMCQA_FORMAT,
    MEDQA_FORMAT,
    MMLU_CLOZE_FORMAT,
    MMLU_FORMAT,
    PUBMEDQA_FORMAT,
    load_medmcqa,
    load_medqa,
    load_mmlu_medical,
    load_mmlu_medical_dev,
    load_pubmedqa,
    load_pubmedqa_train,
)

VALIDATION_TASKS = frozenset({"medquad-validation", "prepared-validation"})
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("medquad-test", "free_text", load_medquad_test, "held-out test split of a `medtune prepare` output "
             "(its MedQuAD rows when it mixes sources)"),
        Task("medquad-validation", "free_text", load_medquad_validation,
             "validation split of a `medtune prepare` output (its MedQuAD rows when it mixes sources; for ablations "
             "and choices, never the test split)"),
        Task("prepared-test", "free_text", load_prepared_test, "held-out test split of a `medtune prepare` output, "
             "every source"),
        Task("prepared-validation", "free_text", load_prepared_validation,
             "validation split of a `medtune prepare` output, every source"),
        Task("medicationqa", "free_text", load_medicationqa, "MedicationQA (MedInfo 2019), 690 drug questions"),
        Task("liveqa", "free_text", load_liveqa, "TREC-2017 LiveQA-Med test, 104 consumer questions"),
        Task("medqa", "multiple_choice", load_medqa, "MedQA-USMLE 4-option test, 1,273 (lm-eval medqa_4options)",
             MEDQA_FORMAT),
        Task("medmcqa", "multiple_choice", load_medmcqa, "MedMCQA dev, 4,183 (lm-eval medmcqa)", MEDMCQA_FORMAT),
        Task("pubmedqa", "multiple_choice", load_pubmedqa, "PubMedQA PQA-L official test, 500 (lm-eval pubmedqa)",
             PUBMEDQA_FORMAT, shots_loader=load_pubmedqa_train, n_choices=3),
        Task("mmlu-medical", "multiple_choice", load_mmlu_medical, "MMLU 6 medical subjects test, 1,089 (lm-eval "
             "mmlu_<subject>, group mean)", MMLU_FORMAT, shots_loader=load_mmlu_medical_dev, shot_sampler="first_n",
             group_by="subject"),
        Task("medqa-cloze", "multiple_choice", load_medqa, "MedQA options not listed, option text scored",
             CLOZE_FORMAT),
        Task("medmcqa-cloze", "multiple_choice", load_medmcqa, "MedMCQA options not listed, option text scored",
             CLOZE_FORMAT),
        Task("mmlu-medical-cloze", "multiple_choice", load_mmlu_medical, "MMLU medical, lm-eval continuation style",
             MMLU_CLOZE_FORMAT, shots_loader=load_mmlu_medical_dev, shot_sampler="first_n", group_by="subject"),
    )
}

__all__ = ["TASKS", "ChoiceExample", "FreeTextExample", "Task", "get_task", "is_held_out", "parse_tasks"]


def rubric_task(spec: str) -> Task:
    """The task ``rubric:SPEC``: a rubric file path or a packaged set (``consumer-health``, ``consumer-health-dev``)."""
    from medtune.evaluate.rubric import load_rubric, resolve_rubric_path

    path = resolve_rubric_path(spec)
    return Task(f"rubric:{spec}", "rubric", lambda root, context: load_rubric(path),
                f"rubric-graded answers ({path.name})")


def get_task(name: str) -> Task:
    """Return the registered task ``name`` (or a ``rubric:FILE`` task); UserError listing the valid names otherwise."""
    if name.startswith("rubric:"):
        return rubric_task(name.split(":", 1)[1])
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown task '{name}'; valid tasks: {', '.join(TASKS)}, rubric:FILE") from None


def parse_tasks(spec: str | list[str]) -> list[Task]:
    """Parse ``t1,t2`` (or a list) into tasks, rejecting unknown names."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if not names:
        raise UserError(f"--tasks is empty; valid tasks: {', '.join(TASKS)}, rubric:FILE")
    return [get_task(n) for n in names]


def is_held_out(name: str) -> bool:
    """True for tasks whose data is a held-out headline set (the prepared test split, the packaged rubric test set,
    the public benchmarks' test splits): ablations and other choices must never be scored on them."""
    if name.startswith("rubric:"):
        from medtune.evaluate.rubric import resolve_rubric_path

        return resolve_rubric_path(name.split(":", 1)[1]).resolve() == resolve_rubric_path("consumer-health").resolve()
    return name not in VALIDATION_TASKS
