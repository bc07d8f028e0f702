"""The export checks, which can fail an export only on a real fault.

The reference is the model users trained: the adapter model (adapter on its unquantized base, loaded by the device
policy) for runs and adapter folders, the model itself otherwise. Prompts are rendered as ``medtune ask`` sends them
(the served system prompt through the run's prompt style) and fed to both sides as the same token ids. The reference
writes a greedy continuation of each prompt; every GGUF then scores that continuation TEACHER-FORCED (prompt +
continuation evaluated in one pass, log-softmax of each position's logits), and so does the reference. Per file:

* **fails** (each one line in ``failures``):

  - resized vocabulary: the GGUF's ``n_vocab`` differs from the reference's logits width;
  - wrong stop token: the GGUF's EOS is not one of the reference's end tokens (tokenizer EOS, generation_config EOS
    ids, trained end of turn), or llama.cpp does not end generation at the token the model ends its turns with
    (EOT is only reported: llama.cpp guesses it from token texts, ``<|endoftext|>`` for SmolLM2);
  - wrong chat template: the served messages, as llama.cpp's chat completion renders them from the GGUF (its
    embedded template, or the built-in format it guesses from it), are not the reference's prompt ids;
  - perplexity of the continuation over the reference's by more than :data:`MAX_PPL_RATIO` for the file's level;
  - f16 only: a greedy choice that differs from the reference's where the reference's top-2 margin exceeds
    :func:`tie_margin` (quantized files report their agreement; changing close choices is what quantization does).

* **reported**: mean |delta log-prob|, both perplexities and their ratio, greedy agreement at every position, and
  the TIES: positions where the choice differs but the reference's own margin is within the tolerance (the README
  demo's run: -1.0373 vs -1.0384 for its two best tokens, which f16 and fp32 break differently). Quantized files also
  report their perplexity on held-out answers (the run's prepared test split, else :data:`FALLBACK_HELD_OUT`)
  relative to the f16 GGUF; ``max_ppl_increase`` turns that into a check.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.errors import UserError
from medtune.served_model import served_model

#: Questions of the continuation check (the first N are used).
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
#: A greedy choice is a TIE when the reference's log-prob of its token exceeds the best other token's by at most this
#: many nats (0.05 nats = the two tokens' probabilities within 5% of each other). An fp32 reference against an f16
#: GGUF differs by ~1e-3-1e-2 nats per logit on the study's models, so a flip above 0.05 is a fault, below it rounding.
TIE_MARGIN = 0.05
#: The same for a 16-bit reference (a GPU loads a bf16/fp16 run in 16 bits): bf16 keeps 8 significant bits, so a
#: logit near 20 is rounded by up to 0.06 and a difference of two by up to 0.12; fp16 keeps 11 bits.
TIE_MARGIN_16BIT = {"bfloat16": 0.25, "float16": 0.1}
#: Largest perplexity of the teacher-forced continuation, as a ratio to the reference's, per GGUF level. f16 only
#: rounds weights: measured 0.9994 (mean |delta log-prob| 0.001) on SmolLM2-135M + a LoRA adapter, 2 prompts x 16
#: tokens; its q4_k_m measured 0.966 there (delta 0.09; quantization can sharpen the model's own choices), and its
#: held-out perplexity +15% over f16. A broken GGUF is orders of magnitude off (a negated norm: x3e4). q8_0 unmeasured.
MAX_PPL_RATIO = {"f16": 1.10, "q8_0": 1.15, "q4_k_m": 1.50}


class ExportCheckError(UserError):
    """An exported GGUF failed a check. The files and export.json are kept so they can be inspected."""

    exit_code = 1


@dataclass
class Scores:
    """How one side scores a continuation teacher-forced, per position."""

    target: list[float]  # log-prob of the continuation's token
    best_other: list[float]  # log-prob of the best other token
    argmax: list[int]  # the side's own greedy choice


def score_positions(logprobs: Any, targets: list[int]) -> Scores:
    """Summarise a ``(positions, vocab)`` array of log-probs for the continuation tokens ``targets``."""
    import numpy as np

    logprobs = np.asarray(logprobs, dtype=np.float64)
    rows = np.arange(len(targets))
    target = logprobs[rows, targets] if len(targets) else np.zeros(0)
    others = logprobs.copy()
    others[rows, targets] = -np.inf
    return Scores(target=target.tolist(), best_other=others.max(axis=1).tolist() if len(targets) else [],
                  argmax=[int(i) for i in logprobs.argmax(axis=1)] if len(targets) else [])


def log_softmax(logits: Any) -> Any:
    """Row-wise log-softmax in float64 (numpy)."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)
    peak = logits.max(axis=1, keepdims=True)
    return logits - (peak + np.log(np.exp(logits - peak).sum(axis=1, keepdims=True)))


def tie_margin(dtype: str) -> float:
    """The tie tolerance (nats) for a reference computed in ``dtype``."""
    return TIE_MARGIN_16BIT.get(dtype, TIE_MARGIN)


@dataclass
class Reference:
    """The transformers side of the checks."""

    description: str
    n_tokens: int
    questions: list[str]
    messages: list[list[dict[str, str]]]  # the served messages (system folded in when the template needs it)
    rendered: list[str]  # the prompts as the reference renders them
    prompts: list[list[int]]
    greedy: list[list[int]]
    scores: list[Scores]  # the reference's own teacher-forced scores of ``greedy``
    n_vocab: int
    end_of_turn: int  # the token the model was trained to end its turn with
    end_ids: set[int]  # tokenizer EOS, generation_config EOS ids, end_of_turn
    tie_margin: float
    scored: list[tuple[list[int], list[int]]]  # (served prompt ids, answer ids) of the held-out examples
    held_out_source: str
    tokenizer: Any


@dataclass
class GgufSide:
    """What llama.cpp reports for one GGUF file."""

    n_vocab: int
    eos: int | None
    eot: int | None
    end_of_turn_is_eog: bool  # llama.cpp stops generating at the reference's end-of-turn token
    rendered: list[str]  # the served messages as llama.cpp renders them (served_prompt_ids_llamacpp), as text
    rendered_ids: list[list[int]]  # ... and as token ids
    scores: list[Scores] | None  # None when the vocabulary differs (the ids would not mean the same tokens)


def held_out_pairs(source: Path, n: int) -> tuple[list[tuple[str, str]], str]:
    """``n`` (question, answer) pairs from the run's prepared test split (seeded sample), else the fallback."""
    from medtune.data.prepared import load_split_rows

    prepared = served_model(source).prepared_dir
    if prepared is not None and (prepared / "test.jsonl").is_file():
        rows = [r for r in load_split_rows(prepared, "test") if r.get("question") and r.get("answer")]
        if rows:
            chosen = random.Random(0).sample(rows, min(n, len(rows)))
            return [(r["question"], r["answer"]) for r in chosen], f"{prepared}/test.jsonl"
    return FALLBACK_HELD_OUT[:n], "built-in answers (medtune.export.checks.FALLBACK_HELD_OUT)"


def _reference_scores(model: Any, prompts: list[list[int]], greedy: list[list[int]]) -> list[Scores]:
    """Teacher-forced log-probs of each continuation under the reference (one forward pass per prompt)."""
    import torch

    out = []
    with torch.inference_mode():
        for ids, continuation in zip(prompts, greedy, strict=True):
            full = torch.tensor([ids + continuation], device=model.device)
            logits = model(input_ids=full).logits[0, len(ids) - 1: len(ids) + len(continuation) - 1]
            out.append(score_positions(torch.log_softmax(logits.double(), -1).cpu().numpy(), continuation))
    return out


def load_reference(source: Path, is_adapter: bool, questions: list[str], n_tokens: int, n_held_out: int
                   ) -> Reference:
    """Load the model users trained (adapter on its unquantized base, or the plain model) and compute its side."""
    import torch

    from medtune.guard import Guard
    from medtune.guard.config import default_guard_config
    from medtune.inference.assistant import Assistant
    from medtune.inference.transformers_backend import TransformersBackend
    from medtune.models import load_causal_lm, load_tokenizer
    from medtune.prompts import (
        end_of_turn_token,
        fold_system_into_first_user,
        served_system_prompt,
        template_accepts_system,
    )

    model = load_causal_lm(str(source), quantization="none").eval()
    tokenizer = load_tokenizer(str(source))
    backend = TransformersBackend(str(source), model_obj=model, tokenizer=tokenizer)
    assistant = Assistant(backend, Guard(default_guard_config().model_copy(update={"classifier": False})),
                          system_prompt=served_system_prompt(backend.model_name))
    messages = [assistant.build_messages(question, []) for question in questions]
    if backend.style == "chat-template" and not template_accepts_system(tokenizer):
        messages = [fold_system_into_first_user(m) if m and m[0]["role"] == "system" else m for m in messages]
    prompts = [backend.prompt_ids(m) for m in messages]
    end_of_turn = int(tokenizer.convert_tokens_to_ids(end_of_turn_token(tokenizer, backend.style)))
    generation_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    end_ids = {end_of_turn, *([] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]),
               *(generation_eos if isinstance(generation_eos, list) else [generation_eos] if generation_eos else [])}
    stop_ids = end_ids | set(map(int, tokenizer.all_special_ids))
    greedy = []
    with torch.inference_mode():
        for ids in prompts:
            gen = model.generate(input_ids=torch.tensor([ids], device=model.device), max_new_tokens=n_tokens,
                                 attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=model.device),
                                 do_sample=False, temperature=None, top_p=None, top_k=None,
                                 repetition_penalty=1.0, eos_token_id=sorted(stop_ids))
            greedy.append([int(t) for t in gen[0, len(ids):]])
    pairs, held_out_source = held_out_pairs(source, n_held_out)
    answers = [tokenizer(a, add_special_tokens=False)["input_ids"][:ANSWER_TOKENS] for _, a in pairs]
    dtype = str(model.dtype).removeprefix("torch.")
    kind = "adapter model on its unquantized base" if is_adapter else "model"
    return Reference(
        description=f"{kind}, {dtype}, {model.device}", n_tokens=n_tokens, questions=questions, messages=messages,
        rendered=[backend.render(m) for m in messages], prompts=prompts, greedy=greedy,
        scores=_reference_scores(model, prompts, greedy), n_vocab=int(model.get_output_embeddings().weight.shape[0]),
        end_of_turn=end_of_turn, end_ids=end_ids, tie_margin=tie_margin(dtype),
        scored=list(zip((backend.prompt_ids(assistant.build_messages(q, [])) for q, _ in pairs), answers,
                        strict=True)),
        held_out_source=held_out_source, tokenizer=tokenizer)


def gguf_side(gguf_file: Path, reference: Reference) -> GgufSide:
    """llama.cpp's side of the checks for one file (in a child process: a native crash becomes one error)."""
    from medtune.export.gguf import run_in_child

    return run_in_child(_gguf_side_here, gguf_file, reference.messages, reference.prompts, reference.greedy,
                        reference.end_of_turn, reference.n_vocab)


def _gguf_side_here(gguf_file: Path, messages: list[list[dict[str, str]]], prompts: list[list[int]],
                    greedy: list[list[int]], end_of_turn: int, n_vocab: int) -> GgufSide:
    """See :func:`gguf_side` (runs in the child)."""
    import llama_cpp

    from medtune.export.gguf import open_gguf

    n_ctx = max(len(p) + len(c) for p, c in zip(prompts, greedy, strict=True)) + 8
    llm = open_gguf(gguf_file, n_ctx, logits_all=True)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    eos, eot = int(llama_cpp.llama_vocab_eos(vocab)), int(llama_cpp.llama_vocab_eot(vocab))
    eog = 0 <= end_of_turn < llm.n_vocab() and bool(llama_cpp.llama_vocab_is_eog(vocab, end_of_turn))
    rendered_ids = served_prompt_ids_llamacpp(llm, messages)
    rendered = [llm.detokenize(ids, special=True).decode("utf-8", "replace") for ids in rendered_ids]
    scores = None
    if llm.n_vocab() == n_vocab:
        scores = []
        for ids, continuation in zip(prompts, greedy, strict=True):
            llm.reset()
            llm.eval(ids + continuation)
            logits = llm.scores[len(ids) - 1: len(ids) + len(continuation) - 1]
            scores.append(score_positions(log_softmax(logits), continuation))
    return GgufSide(n_vocab=int(llm.n_vocab()), eos=None if eos < 0 else eos, eot=None if eot < 0 else eot,
                    end_of_turn_is_eog=eog, rendered=rendered, rendered_ids=rendered_ids, scores=scores)


class _Captured(Exception):
    """Raised by the stand-in for ``create_completion`` once it holds the prompt."""


def served_prompt_ids_llamacpp(llm: Any, messages: list[list[dict[str, str]]]) -> list[list[int]]:
    """The prompt ids llama.cpp's ``create_chat_completion`` feeds the model for each conversation: its own choice of
    chat handler (a built-in format guessed from the GGUF's template, the template itself, or llama-2 when the GGUF
    has none), as ``medtune ask --backend llamacpp`` and llama.cpp's server use it. Nothing is generated."""
    prompts: list[list[int]] = []

    def capture(prompt: Any, **kwargs: Any) -> None:
        prompts.append([int(t) for t in prompt] if not isinstance(prompt, str) else
                       llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
        raise _Captured

    llm.create_completion = capture  # an instance attribute shadows the method
    try:
        for conversation in messages:
            with contextlib.suppress(_Captured):
                llm.create_chat_completion(messages=conversation, max_tokens=1)
    finally:
        del llm.create_completion
    return prompts


def _token(tokenizer: Any, token: int) -> str:
    """``'text' (id N)``."""
    return f"{tokenizer.decode([token])!r} (id {token})"


def compare_continuations(reference: Reference, side_scores: list[Scores]) -> dict[str, Any]:
    """Compare the GGUF's teacher-forced scores with the reference's: log-prob deltas, perplexities, greedy agreement
    per position, ties (a different choice within the reference's tie margin) and decisive divergences."""
    deltas: list[float] = []
    ref_nll: list[float] = []
    gguf_nll: list[float] = []
    rows: list[dict[str, Any]] = []
    ties: list[dict[str, Any]] = []
    decisive: list[dict[str, Any]] = []
    for index, (question, want, ref, got) in enumerate(
            zip(reference.questions, reference.greedy, reference.scores, side_scores, strict=True)):
        agree = [g == t for g, t in zip(got.argmax, want, strict=True)]
        for position, token in enumerate(want):
            deltas.append(abs(got.target[position] - ref.target[position]))
            ref_nll.append(-ref.target[position])
            gguf_nll.append(-got.target[position])
            if agree[position]:
                continue
            margin = ref.target[position] - ref.best_other[position]
            record = {"prompt": index + 1, "question": question, "position": position,
                      "expected": _token(reference.tokenizer, token),
                      "got": _token(reference.tokenizer, got.argmax[position]),
                      "reference_margin": round(margin, 4), "reference_logprob": round(ref.target[position], 4),
                      "gguf_logprob_of_expected": round(got.target[position], 4)}
            (ties if margin <= reference.tie_margin else decisive).append(record)
        prefix = next((i for i, ok in enumerate(agree) if not ok), len(want))
        rows.append({"question": question, "matching_prefix": prefix, "tokens": len(want),
                     "agreeing": sum(agree), "identical": all(agree), "expected": reference.tokenizer.decode(want)})
    n = max(len(deltas), 1)
    ppl_ref, ppl_gguf = math.exp(sum(ref_nll) / n), math.exp(sum(gguf_nll) / n)
    return {"positions": len(deltas), "agreement": round(sum(r["agreeing"] for r in rows) / n, 4),
            "exact": not ties and not decisive, "ties": ties, "decisive_divergences": len(decisive),
            "first_divergence": decisive[0] if decisive else None,
            "mean_abs_delta_logprob": round(sum(deltas) / n, 5), "ppl_reference": round(ppl_ref, 4),
            "ppl_gguf": round(ppl_gguf, 4), "ppl_ratio": round(ppl_gguf / ppl_ref, 4), "prompts": rows}


def _first_difference(want: str, got: str) -> str:
    """Where two renderings first differ, with a little context."""
    at = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), min(len(want), len(got)))
    return f"at character {at}: expected {want[max(0, at - 20):at + 20]!r}, got {got[max(0, at - 20):at + 20]!r}"


def check_file(name: str, level: str, reference: Reference, side: GgufSide) -> tuple[dict[str, Any], list[str]]:
    """Compare one GGUF (``level``: f16, q8_0, q4_k_m) with the reference; return its report and failure lines."""
    failures: list[str] = []
    result: dict[str, Any] = {"level": level, "n_vocab": side.n_vocab,
                              "stop": {"eos": side.eos, "eot": side.eot, "end_of_turn": reference.end_of_turn}}
    if side.n_vocab != reference.n_vocab:
        failures.append(f"{name}: vocabulary of {side.n_vocab:,} tokens, the model users trained has "
                        f"{reference.n_vocab:,} (a resized vocabulary: token ids no longer mean the same tokens)")
    if side.eos not in reference.end_ids or not side.end_of_turn_is_eog:
        failures.append(f"{name}: wrong stop token: the GGUF's EOS is {side.eos} (the model's end tokens: "
                        f"{sorted(reference.end_ids)}) and it {'does' if side.end_of_turn_is_eog else 'does not'} end "
                        f"generation at {_token(reference.tokenizer, reference.end_of_turn)}, the token the model ends "
                        f"its turns with")
    bad = next((i for i, (a, b) in enumerate(zip(reference.prompts, side.rendered_ids, strict=True)) if a != b), None)
    result["template"] = "identical" if bad is None else "differs"
    if bad is not None:
        want, got = reference.rendered[bad], side.rendered[bad]
        failures.append(f"{name}: wrong chat template: llama.cpp renders the served prompt {bad + 1} " + (
            f"differently from the model {_first_difference(want, got)}" if want != got else
            "to the same text but other token ids (a different tokenizer)"))
    if side.scores is not None:
        result.update(compare_continuations(reference, side.scores))
        limit = MAX_PPL_RATIO.get(level, max(MAX_PPL_RATIO.values()))
        result["max_ppl_ratio"] = limit
        if level == "f16" and result["first_divergence"]:
            d = result["first_divergence"]
            failures.append(f"{name} does not reproduce the greedy tokens of the model users trained: prompt "
                            f"{d['prompt']} ({d['question']!r}), position {d['position']}: expected {d['expected']}, "
                            f"got {d['got']} (the model's margin {d['reference_margin']:.3f} nats is above the tie "
                            f"tolerance {reference.tie_margin:g}; {result['decisive_divergences']} such position(s))")
        if result["ppl_ratio"] > limit:
            failures.append(f"{name}: perplexity of the model's own continuation {result['ppl_gguf']:.4g} vs the "
                            f"model's {result['ppl_reference']:.4g}: ratio {result['ppl_ratio']:.4g} is above "
                            f"{limit:g} for {level}")
    return result, failures


def file_level(index: int, path: Path) -> str:
    """f16 for the first file, else the quantization named at the end of the file name."""
    if index == 0:
        return "f16"
    return next((q for q in MAX_PPL_RATIO if path.stem.endswith(f"-{q}")), "quantized")


def check_gguf_files(reference: Reference, files: list[Path], max_ppl_increase: float | None = None
                     ) -> dict[str, Any]:
    """Run the checks on the f16 GGUF (``files[0]``) and the quantized ones; return the report.

    The report's ``failures`` lists one line per failed check (``passed`` is False then).
    """
    from medtune.export.gguf import perplexity_llamacpp

    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    f16_ppl = perplexity_llamacpp(files[0], reference.scored) if reference.scored else None
    for index, gguf in enumerate(files):
        result, failed = check_file(gguf.name, file_level(index, gguf), reference, gguf_side(gguf, reference))
        failures += failed
        ppl = f16_ppl if index == 0 or f16_ppl is None else perplexity_llamacpp(gguf, reference.scored)
        result["perplexity"] = None if ppl is None else round(ppl, 4)
        if index > 0 and ppl is not None and f16_ppl:
            result["ppl_increase"] = round(ppl / f16_ppl - 1, 4)
            if max_ppl_increase is not None and result["ppl_increase"] > max_ppl_increase:
                failures.append(f"{gguf.name}: perplexity on held-out answers {ppl:.3f} is "
                                f"{result['ppl_increase']:+.1%} over the f16 GGUF's {f16_ppl:.3f}, above "
                                f"--max-ppl-increase {max_ppl_increase:g} ({max_ppl_increase:.1%})")
        results[gguf.name] = result
    return {"reference": reference.description, "prompt": "served (medtune ask's system prompt and prompt style)",
            "n_prompts": len(reference.prompts), "n_tokens": reference.n_tokens, "tie_margin": reference.tie_margin,
            "held_out": {"source": reference.held_out_source, "answers": len(reference.scored),
                         "answer_tokens": sum(len(a) for _, a in reference.scored)},
            "max_ppl_increase": max_ppl_increase, "files": results, "passed": not failures, "failures": failures}
