"""Self-distillation data (recipe key ``data.distill``): the train split's targets become the model's own best answers.

A small model fine-tuned on encyclopaedic references (MedQuAD's NIH pages) learns their style: shorter answers
that seldom say when to see a clinician. Rejection-sampled self-distillation keeps the model's own voice instead and
trains it towards its better answers. For each sampled training question the model writes ``samples`` answers
under the row's own prompt (the one training renders, so one prompt end to end), at ``temperature``:

1. a sample is rejected when it hits ``max_new_tokens`` without ending (``truncated``), repeats more than
   ``max_repeated_3gram_fraction`` of its 3-grams (``repetitive``), or, with ``require_care_advice``, never tells
   the reader to see a clinician or seek care (``no_care_advice``);
2. among the survivors the consensus answer is kept: the one with the highest mean embedding cosine (MiniLM) to the
   question's other samples. This is minimum-Bayes-risk selection with embedding similarity as the utility
   (Finkelstein et al. 2023, "MBR and QE Finetuning"): claims the model makes only now and then, the likely
   hallucinations, pull a sample away from the centre;
3. with ``min_reference_cosine``, the kept answer must also be that close to the row's reference answer.

A question without a surviving sample is dropped, counted under ``distill_<reason>`` (the reason most of its
samples failed). Train rows of sources not in ``sources`` are dropped as ``distill_other_source``, and the rest
outside the seeded ``limit`` sample as ``distill_not_sampled``. The validation and test splits keep their reference
answers, so evaluation still scores against the references. Samples are cached per generator and decoding
(``MEDTUNE_HOME/cache/distill``): changing a check or the limit re-selects without generating again.
``OUT/distill.jsonl`` records every sample with its checks and the reference it replaced.

A kept question that also has a failing sample gives a preference pair, ``OUT/preferences.jsonl``: the chosen
answer against the failing sample furthest from the consensus, with the reason it failed (``train.objective: dpo``
trains on these pairs).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.config import DistillConfig
from medtune.errors import UserError
from medtune.evaluate.metrics import repeated_ngram_fraction
from medtune.prompts import render_example

#: Advice to get professional care: see, ask, consult, contact or call a clinician, seek care, or go to emergency
#: services. Written from the system prompt's wording ("advise seeing a clinician when needed"), not from any
#: rubric's phrase list.
CARE_ADVICE = re.compile(
    r"\b(?:see|seeing|visit|visiting|consult|consulting|talk(?:ing)? (?:to|with)|speak(?:ing)? (?:to|with)|ask|"
    r"contact|contacting|call|calling|check (?:in )?with|get (?:checked|examined|evaluated|seen))\b"
    r"(?:\W+\w+){0,4}?\W+(?:doctors?|physicians?|clinicians?|gps?|general practitioners?|pediatricians?|"
    r"paediatricians?|dentists?|pharmacists?|nurses?|specialists?|dermatologists?|cardiologists?|"
    r"(?:health ?care|medical|health) (?:providers?|professionals?|teams?|practitioners?)|midwife|midwives|"
    r"emergency services|911|999|112|ambulance)\b"
    r"|\bseek(?:ing)? (?:\w+ ){0,2}(?:medical|professional|emergency|urgent|immediate) (?:attention|care|help|advice|"
    r"treatment)\b"
    r"|\b(?:go|going|get|head) (?:straight |right )?to (?:the |an |a |your )?(?:nearest |closest |local )?"
    r"(?:emergency (?:room|department)|er|a&e|hospital|urgent care)\b",
    re.IGNORECASE,
)


def advises_care(text: str) -> bool:
    """True when ``text`` tells the reader to see a clinician, seek medical care or call emergency services."""
    return CARE_ADVICE.search(text) is not None


@dataclass
class Sample:
    """One generated answer and the checks it passed or failed."""

    text: str
    new_tokens: int
    truncated: bool
    repeated_3gram_fraction: float
    care_advice: bool
    consensus: float = 0.0

    def failure(self, settings: DistillConfig) -> str | None:
        """Why this sample cannot be a training target (None when it can)."""
        if self.truncated:
            return "truncated"
        if not self.text.strip():
            return "empty"
        if self.repeated_3gram_fraction > settings.max_repeated_3gram_fraction:
            return "repetitive"
        if settings.require_care_advice and not self.care_advice:
            return "no_care_advice"
        return None


def consensus_scores(embeddings: Any) -> list[float]:
    """Mean cosine of each sample's (L2-normalised) embedding to the other samples of its question (0 when alone)."""
    count = len(embeddings)
    if count < 2:
        return [0.0] * count
    similarity = embeddings @ embeddings.T
    return [float((similarity[i].sum() - similarity[i, i]) / (count - 1)) for i in range(count)]


def choose(samples: list[Sample], settings: DistillConfig) -> tuple[int | None, str]:
    """Index of the consensus sample among those that pass, or None and the most common failure reason."""
    passing = [i for i, sample in enumerate(samples) if sample.failure(settings) is None]
    if not passing:
        reasons = Counter(sample.failure(settings) for sample in samples)
        return None, str(reasons.most_common(1)[0][0])
    return max(passing, key=lambda i: samples[i].consensus), "kept"


def least_preferred(samples: list[Sample], settings: DistillConfig) -> int | None:
    """Index of the rejected side of a preference pair: the failing sample furthest from the consensus (None when
    every sample passes, so no pair has a stated reason)."""
    failing = [i for i, sample in enumerate(samples) if sample.failure(settings) is not None]
    return min(failing, key=lambda i: samples[i].consensus) if failing else None


def preference_pairs(train_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DPO pairs (``OUT/preferences.jsonl``) of the distilled train rows that have a rejected sample: the row's
    prompt, its chosen target and the rejected sample, rendered alike, with the reason it was rejected."""
    return [{"id": row["id"], "prompt": row["prompt"], "chosen": row["completion"],
             "rejected": row["rejected_completion"], "rejected_failure": row["rejected_failure"]}
            for row in train_rows if row.get("rejected_completion")]


def _sample_rows(rows: list[dict[str, Any]], limit: int | None, seed: int) -> tuple[list[dict[str, Any]],
                                                                                       list[dict[str, Any]]]:
    """A seeded random ``limit`` of ``rows`` (all when None) and the rest, each in the original order."""
    if limit is None or limit >= len(rows):
        return rows, []
    chosen = set(random.Random(seed).sample(range(len(rows)), limit))
    return ([row for i, row in enumerate(rows) if i in chosen], [row for i, row in enumerate(rows) if i not in chosen])


def generation_settings(settings: DistillConfig) -> Any:
    """The distillation decoding as an :class:`~medtune.config.EvalConfig` for
    :func:`medtune.evaluate.generation.generate_answers`."""
    from medtune.config import EvalConfig

    return EvalConfig.model_validate({
        "batch_size": settings.batch_size, "max_new_tokens": settings.max_new_tokens,
        "temperature": settings.temperature, "top_p": settings.top_p,
        "repetition_penalty": settings.repetition_penalty, "repetition_scope": "answer"})


def distill_train_split(rows: list[dict[str, Any]], settings: DistillConfig, model_name: str, *, style: str,
                        tokenizer: Any, system_prompt: str | None, seed: int, progress: bool = True,
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Replace the targets of (a seeded sample of) the train rows by the model's chosen answers.

    Returns ``(kept rows, rejected rows with reason, per-row records for OUT/distill.jsonl, summary)``.
    """
    from medtune.embeddings import embed

    wanted = set(settings.sources or [])
    eligible = [row for row in rows if not wanted or row["source"] in wanted]
    rejected = [{**row, "reason": "distill_other_source"} for row in rows if wanted and row["source"] not in wanted]
    if rows and not eligible:
        found = ", ".join(sorted({row["source"] for row in rows}))
        raise UserError(f"data.distill.sources {sorted(wanted)}: no train row comes from them (the sources here: "
                        f"{found}); fix the list.")
    sampled, not_sampled = _sample_rows(eligible, settings.limit, seed)
    rejected += [{**row, "reason": "distill_not_sampled"} for row in not_sampled]
    generator_name = settings.model or model_name
    prompts = _generation_prompts(sampled, generator_name, model_name, system_prompt)
    generations = _generate(sorted(set(prompts)), settings, generator_name, seed, progress)
    texts = [g["text"] for prompt in prompts for g in generations[prompt]]
    vectors = embed(texts)
    references = embed([row["answer"] for row in sampled]) if settings.min_reference_cosine is not None else None

    kept: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for number, row in enumerate(sampled):
        start = number * settings.samples
        samples = [Sample(text=g["text"], new_tokens=g["new_tokens"], truncated=g["hit_limit"],
                          repeated_3gram_fraction=repeated_ngram_fraction(g["text"]),
                          care_advice=advises_care(g["text"]))
                   for g in generations[prompts[number]]]
        for sample, score in zip(samples, consensus_scores(vectors[start:start + settings.samples]), strict=True):
            sample.consensus = score
        index, reason = choose(samples, settings)
        reference_cosine = None
        if index is not None and references is not None:
            reference_cosine = float(vectors[start + index] @ references[number])
            if reference_cosine < float(settings.min_reference_cosine or 0.0):
                index, reason = None, "far_from_reference"
        worst = least_preferred(samples, settings) if index is not None else None
        records.append({"id": row["id"], "question": row["question"], "reference": row["answer"], "chosen": index,
                        "rejected": worst, "outcome": reason, "reference_cosine": reference_cosine,
                        "samples": [{**vars(s), "failure": s.failure(settings)} for s in samples]})
        if index is None:
            rejected.append({**row, "reason": f"distill_{reason}"})
            continue
        answer = samples[index].text
        prompt, completion = render_example(row["question"], answer, style, tokenizer, system_prompt)
        pair = {}
        if worst is not None:
            pair = {"rejected_completion": render_example(row["question"], samples[worst].text, style, tokenizer,
                                                          system_prompt)[1],
                    "rejected_failure": samples[worst].failure(settings)}
        kept.append({**row, "answer": answer, "prompt": prompt, "completion": completion, **pair})
    summary = _summary(settings, generator_name, records, len(not_sampled))
    return kept, rejected, records, summary


def _generation_prompts(rows: list[dict[str, Any]], generator: str, model_name: str,
                        system_prompt: str | None) -> list[str]:
    """The prompt each row is answered under: its own training prompt, or, for another model (a teacher), the
    same question and system prompt in that model's chat template."""
    if generator == model_name:
        return [row["prompt"] for row in rows]
    from medtune.evaluate.generation import build_prompt
    from medtune.models import load_tokenizer

    tokenizer = load_tokenizer(generator)
    return [build_prompt(row["question"], tokenizer, system_prompt=system_prompt) for row in rows]


def _cache_file(settings: DistillConfig, generator: str, seed: int) -> Path:
    """Where the samples of one generator and decoding are kept, so that changing a check or the limit later
    re-selects without generating again (``MEDTUNE_HOME/cache/distill/<hash>.jsonl``, one line per prompt)."""
    from medtune.paths import cache_dir

    keys = ("samples", "temperature", "top_p", "max_new_tokens", "repetition_penalty")
    path = Path(generator).expanduser()
    fields: dict[str, Any] = {"model": generator, "seed": seed, **{k: getattr(settings, k) for k in keys}}
    if path.exists():  # a local folder (a run trained again) is another generator once it changes
        fields["version"] = path.stat().st_mtime
    identity = json.dumps(fields, sort_keys=True)
    return cache_dir("distill") / f"{hashlib.sha256(identity.encode()).hexdigest()[:16]}.jsonl"


def _generate(prompts: list[str], settings: DistillConfig, generator: str, seed: int, progress: bool,
              ) -> dict[str, list[dict[str, Any]]]:
    """``settings.samples`` answers per prompt: read from the cache, the missing ones generated and added to it."""
    cache = _cache_file(settings, generator, seed)
    known: dict[str, list[dict[str, Any]]] = {}
    if cache.is_file():
        for line in cache.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            known[entry["prompt"]] = entry["samples"]
    missing = [prompt for prompt in prompts if prompt not in known]
    if missing:
        import torch
        from rich.progress import Progress

        from medtune.evaluate.generation import generate_answers, stop_token_ids
        from medtune.models import ensure_distinct_pad_token, load_causal_lm, load_tokenizer

        tokenizer = load_tokenizer(generator)
        ensure_distinct_pad_token(tokenizer)
        model = load_causal_lm(generator)
        model.eval()
        torch.manual_seed(seed)
        repeated = [prompt for prompt in missing for _ in range(settings.samples)]
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(f"distilling: {len(missing)} questions x {settings.samples} samples",
                                total=len(repeated))
            outputs = generate_answers(model, tokenizer, repeated, generation_settings(settings),
                                       stop_ids=stop_token_ids(tokenizer), on_batch=lambda n: bar.advance(task, n))
        cache.parent.mkdir(parents=True, exist_ok=True)
        with cache.open("a", encoding="utf-8") as handle:
            for number, prompt in enumerate(missing):
                chunk = outputs[number * settings.samples:(number + 1) * settings.samples]
                known[prompt] = [{"text": g.text, "new_tokens": g.new_tokens, "hit_limit": g.hit_limit} for g in chunk]
                handle.write(json.dumps({"prompt": prompt, "samples": known[prompt]}, ensure_ascii=False) + "\n")
    return {prompt: known[prompt] for prompt in prompts}


def _summary(settings: DistillConfig, generator: str, records: list[dict[str, Any]], not_sampled: int,
             ) -> dict[str, Any]:
    """The manifest's ``distill`` block: settings, counts and the share of samples and kept answers per check."""
    samples = [s for record in records for s in record["samples"]]
    kept = [record["samples"][record["chosen"]] for record in records if record["chosen"] is not None]

    def share(items: list[dict[str, Any]], key: str) -> float:
        return round(sum(bool(i[key]) for i in items) / len(items), 4) if items else 0.0

    return {
        "model": generator, **settings.model_dump(exclude={"enabled", "model"}),
        "questions": len(records), "kept": len(kept), "not_sampled": not_sampled,
        "outcomes": dict(Counter(record["outcome"] for record in records).most_common()),
        "samples_failing": dict(Counter(s["failure"] for s in samples if s["failure"]).most_common()),
        "care_advice_share": {"samples": share(samples, "care_advice"), "kept": share(kept, "care_advice")},
        "mean_new_tokens_kept": round(sum(s["new_tokens"] for s in kept) / len(kept), 1) if kept else 0.0,
        "preference_pairs": sum(record["rejected"] is not None for record in records),
    }


__all__ = ["CARE_ADVICE", "Sample", "advises_care", "choose", "consensus_scores",
           "distill_train_split", "generation_settings", "least_preferred", "preference_pairs"]
