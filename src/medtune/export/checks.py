"""The export checks, which can fail an export.

* The f16 GGUF must reproduce the greedy tokens of the model users trained: the adapter model (adapter on its
  unquantized base, loaded by the device policy) for runs and adapter folders, the model itself otherwise.
  Prompts are rendered as ``medtune ask`` sends them (the served system prompt, the run's trained one or else
  the guard's, through the run's prompt style: :func:`medtune.inference.transformers_backend.served_prompt_ids`)
  and fed to both sides as the same token ids. Any difference fails, naming the first divergence.
* Quantized GGUFs report their token agreement with that model and the change of perplexity on a few
  held-out answers (the run's prepared test split, else :data:`FALLBACK_HELD_OUT`) relative to the f16 GGUF;
  ``max_ppl_increase`` turns the perplexity change into a check.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.errors import UserError

#: Questions of the greedy-token check (the first N are used).
CHECK_QUESTIONS = [
    "What are the symptoms of type 2 diabetes?",
    "How is high blood pressure treated?",
    "What causes iron deficiency anemia?",
    "What is the difference between a cold and the flu?",
    "How can I lower my cholesterol?",
    "What are the warning signs of a stroke?",
    "Is it safe to take ibuprofen with high blood pressure?",
    "What does a thyroid blood test measure?",
]
#: Held-out answers for the perplexity check when the run has no prepared test split (written for medtune).
FALLBACK_HELD_OUT = [
    ("What is hypertension?",
     "Hypertension is blood pressure that stays too high, usually 130/80 mm Hg or more. It rarely causes "
     "symptoms, but over the years it raises the risk of heart attack, stroke and kidney disease. Less salt, "
     "regular exercise, a healthy weight and, when needed, medicines bring it down."),
    ("What causes iron deficiency anemia?",
     "Iron deficiency anemia develops when the body lacks the iron it needs to make hemoglobin. Common causes "
     "are blood loss, such as heavy periods or bleeding in the gut, a diet low in iron, pregnancy, and "
     "conditions that reduce how much iron the gut absorbs."),
    ("What are the symptoms of asthma?",
     "Asthma causes wheezing, shortness of breath, a tight chest and coughing, often worse at night or early "
     "in the morning. Exercise, cold air, allergens, smoke and colds can set off a flare."),
    ("How is type 2 diabetes treated?",
     "Type 2 diabetes is treated with healthy eating, regular physical activity and weight loss when needed. "
     "Many people also take medicines such as metformin, and some need insulin. Regular checks of blood sugar, "
     "blood pressure, eyes, kidneys and feet help prevent complications."),
]
#: Answer tokens scored per held-out example.
ANSWER_TOKENS = 128


class ExportCheckError(UserError):
    """An exported GGUF failed a check. The files and export.json are kept so they can be inspected."""

    exit_code = 1


@dataclass
class Reference:
    """The transformers side of the checks: served prompts, greedy tokens and held-out answers."""

    description: str
    n_tokens: int
    questions: list[str]
    prompts: list[list[int]]
    greedy: list[list[int]]
    scored: list[tuple[list[int], list[int]]]  # (served prompt ids, answer ids) of the held-out examples
    held_out_source: str
    stop_ids: set[int]
    tokenizer: Any


def held_out_pairs(source: Path, n: int) -> tuple[list[tuple[str, str]], str]:
    """``n`` (question, answer) pairs from the run's prepared test split (seeded sample), else the fallback.

    Returns the pairs and where they came from.
    """
    from medtune.data.prepared import load_split_rows

    run_json = source / "run.json"
    prepared = json.loads(run_json.read_text()).get("prepared_dir") if run_json.is_file() else None
    if prepared and (Path(prepared) / "test.jsonl").is_file():
        rows = [r for r in load_split_rows(prepared, "test") if r.get("question") and r.get("answer")]
        if rows:
            chosen = random.Random(0).sample(rows, min(n, len(rows)))
            return [(r["question"], r["answer"]) for r in chosen], f"{prepared}/test.jsonl"
    return FALLBACK_HELD_OUT[:n], "built-in answers (medtune.export.checks.FALLBACK_HELD_OUT)"


def greedy_ids_transformers(model: Any, prompts: list[list[int]], n_tokens: int, stop_ids: set[int]
                            ) -> list[list[int]]:
    """Greedy continuation token ids of each prompt (token ids), ending at a stop id."""
    import torch

    out = []
    with torch.inference_mode():
        for ids in prompts:
            gen = model.generate(input_ids=torch.tensor([ids], device=model.device), max_new_tokens=n_tokens,
                                 attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=model.device),
                                 do_sample=False, temperature=None, top_p=None, top_k=None,
                                 repetition_penalty=1.0, eos_token_id=sorted(stop_ids))
            out.append([int(t) for t in gen[0, len(ids):]])
    return out


def load_reference(source: Path, is_adapter: bool, questions: list[str], n_tokens: int, n_held_out: int
                   ) -> Reference:
    """Load the model users trained (adapter on its unquantized base, or the plain model) and compute its side."""
    from medtune.inference.transformers_backend import TransformersBackend, served_prompt_ids
    from medtune.models import load_causal_lm, load_tokenizer

    model = load_causal_lm(str(source), quantization="none").eval()
    tokenizer = load_tokenizer(str(source))
    backend = TransformersBackend(str(source), model_obj=model, tokenizer=tokenizer)
    stop_ids = {int(tokenizer.eos_token_id), *map(int, tokenizer.all_special_ids)}
    prompts = served_prompt_ids(backend, questions)
    pairs, held_out_source = held_out_pairs(source, n_held_out)
    answers = [tokenizer(a, add_special_tokens=False)["input_ids"][:ANSWER_TOKENS] for _, a in pairs]
    kind = "adapter model on its unquantized base" if is_adapter else "model"
    return Reference(
        description=f"{kind}, {str(model.dtype).removeprefix('torch.')}, {model.device}", n_tokens=n_tokens,
        questions=questions, prompts=prompts, greedy=greedy_ids_transformers(model, prompts, n_tokens, stop_ids),
        scored=list(zip(served_prompt_ids(backend, [q for q, _ in pairs]), answers, strict=True)),
        held_out_source=held_out_source, stop_ids=stop_ids, tokenizer=tokenizer)


def first_divergence(expected: list[int], got: list[int]) -> int | None:
    """The first position where two token sequences differ (a missing token counts), None when identical."""
    if expected == got:
        return None
    return next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
                min(len(expected), len(got)))


def _token(tokenizer: Any, ids: list[int], position: int) -> str:
    """``'text' (id N)`` for the token at ``position``, or ``<end>`` past the end."""
    if position >= len(ids):
        return "<end>"
    return f"{tokenizer.decode([ids[position]])!r} (id {ids[position]})"


def compare_tokens(reference: Reference, got: list[list[int]]) -> dict[str, Any]:
    """Per-prompt matching prefixes, ``agreement`` (mean matching fraction), ``exact`` and the first divergence."""
    rows, first = [], None
    for index, (question, want, have) in enumerate(zip(reference.questions, reference.greedy, got, strict=True)):
        position = first_divergence(want, have)
        prefix = len(want) if position is None else position
        rows.append({"question": question, "matching_prefix": prefix, "tokens": max(len(want), len(have), 1),
                     "identical": position is None, "expected": reference.tokenizer.decode(want),
                     "got": reference.tokenizer.decode(have)})
        if position is not None and first is None:
            first = {"prompt": index + 1, "question": question, "position": position,
                     "expected": _token(reference.tokenizer, want, position),
                     "got": _token(reference.tokenizer, have, position)}
    agreement = sum(r["matching_prefix"] / r["tokens"] for r in rows) / max(len(rows), 1)
    return {"agreement": round(agreement, 4), "exact": first is None, "first_divergence": first, "prompts": rows}


def describe_divergence(file_name: str, divergence: dict[str, Any]) -> str:
    """One line: which prompt, which position, expected vs got token."""
    return (f"{file_name} does not reproduce the greedy tokens of the model users trained: prompt "
            f"{divergence['prompt']} ({divergence['question']!r}), position {divergence['position']}: expected "
            f"{divergence['expected']}, got {divergence['got']}")


def check_gguf_files(reference: Reference, files: list[Path], max_ppl_increase: float | None = None
                     ) -> dict[str, Any]:
    """Run the checks on the f16 GGUF (``files[0]``) and the quantized ones; return the report.

    The report's ``failures`` lists one line per failed check (``passed`` is False then).
    """
    from medtune.export.gguf import greedy_ids_llamacpp, perplexity_llamacpp

    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    f16_ppl = perplexity_llamacpp(files[0], reference.scored) if reference.scored else None
    for index, gguf in enumerate(files):
        greedy = greedy_ids_llamacpp(gguf, reference.prompts, reference.n_tokens, reference.stop_ids)
        result = compare_tokens(reference, greedy)
        ppl = f16_ppl if index == 0 or f16_ppl is None else perplexity_llamacpp(gguf, reference.scored)
        result["perplexity"] = None if ppl is None else round(ppl, 4)
        if index == 0 and not result["exact"]:
            failures.append(describe_divergence(gguf.name, result["first_divergence"]))
        if index > 0 and ppl is not None and f16_ppl:
            result["ppl_increase"] = round(ppl / f16_ppl - 1, 4)
            if max_ppl_increase is not None and result["ppl_increase"] > max_ppl_increase:
                failures.append(f"{gguf.name}: perplexity on held-out answers {ppl:.3f} is "
                                f"{result['ppl_increase']:+.1%} over the f16 GGUF's {f16_ppl:.3f}, above "
                                f"--max-ppl-increase {max_ppl_increase:g} ({max_ppl_increase:.1%})")
        results[gguf.name] = result
    return {"reference": reference.description, "prompt": "served (medtune ask's system prompt and prompt style)",
            "n_prompts": len(reference.prompts), "n_tokens": reference.n_tokens,
            "held_out": {"source": reference.held_out_source, "answers": len(reference.scored),
                         "answer_tokens": sum(len(a) for _, a in reference.scored)},
            "max_ppl_increase": max_ppl_increase, "files": results, "passed": not failures, "failures": failures}
