"""Multiple-choice scoring by log-likelihood, as lm-evaluation-harness does it.

For each question the prompt (context) and every option continuation are tokenised like lm-eval's
``_encode_pair`` (continuation tokens = tokens of context+continuation after the context's tokens); all options of
a question go through the model in one batched forward pass. ``acc`` takes the option with the highest summed
log-probability, ``acc_norm`` divides it by the option's length in characters.

By default the shared context is encoded once per question (``share_prefix``): one pass over the contexts builds
the KV cache, the cache rows are repeated per option, and one batched pass scores all option continuations. This
gives the same log-likelihoods as scoring ``context + option`` whole (tested) at a fraction of the compute, since
contexts are long and options short.

On models whose attention goes through transformers' attention interface (every current decoder: Llama, Mistral,
Qwen, SmolLM, ...), the sequences of a batch are **packed** into one row without padding: the linear layers see only
real tokens, each sequence attends causally to itself alone (:func:`medtune.attention.packed_sdpa`), and the
output head runs only at the scored positions (``logits_to_keep`` given as indices). Other models take the padded
path; both give the same log-likelihoods (tested).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from medtune.attention import packed_attention, supports_packed_rows

#: longest sequence scored (tokens kept from the end of context + continuation).
MAX_SCORED_TOKENS = 4096


@dataclass
class ChoiceRequest:
    """One question: the context text, its option continuations and the option texts used for acc_norm lengths."""

    context: str
    continuations: list[str]
    choice_texts: list[str]


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's pair encoding: trailing context spaces move to the continuation; split the joint tokenisation."""
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        continuation, context = context[-spaces:] + continuation, context[:-spaces]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    return ctx, whole[len(ctx):]


def _left_pad(sequences: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """Left-pad token id lists into ``(input_ids, attention_mask)`` tensors of the longest length."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq):] = torch.tensor(seq)
        mask[row, width - len(seq):] = 1
    return ids, mask


def _score_batch(model: Any, pairs: list[tuple[list[int], list[int]]], pad_id: int) -> list[float]:
    """Summed log-probability of each continuation given its context (left padded, one forward pass)."""
    import torch

    ids, mask = _left_pad([(ctx + cont)[-MAX_SCORED_TOKENS:] for ctx, cont in pairs], pad_id)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    keep = max(len(cont) for _, cont in pairs) + 1
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                    logits_to_keep=keep)
    logprobs = torch.log_softmax(out.logits[:, -keep:, :].float(), dim=-1)
    scores = []
    for row, (_, cont) in enumerate(pairs):
        n = len(cont)
        # logits at position t predict token t+1: the continuation's n tokens are predicted by positions -n-1..-2
        predicted = logprobs[row, keep - n - 1:keep - 1, :]
        target = torch.tensor(cont, device=predicted.device).unsqueeze(1)
        scores.append(float(predicted.gather(1, target).sum()))
    return scores


def _cache_kwarg(model: Any) -> str:
    """``cache`` on transformers versions that renamed ``past_key_values``, else ``past_key_values``."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    forward = getattr(base, "forward", None)
    return "cache" if forward is not None and "cache" in inspect.signature(forward).parameters else "past_key_values"


def _score_shared_prefix(model: Any, questions: list[list[tuple[list[int], list[int]]]], pad_id: int) -> list[float]:
    """Summed continuation log-probabilities, encoding each question's context once and reusing its KV cache."""
    import torch

    contexts = [pairs[0][0][-4000:] for pairs in questions]
    if any(pair[0][-4000:] != contexts[q] for q, pairs in enumerate(questions) for pair in pairs) or not all(contexts):
        return _score_batch(model, [pair for pairs in questions for pair in pairs], pad_id)
    device = next(model.parameters()).device
    ids, mask = _left_pad(contexts, pad_id)
    owner = [q for q, pairs in enumerate(questions) for _ in pairs]
    conts = [cont for pairs in questions for _, cont in pairs]
    single_token = all(len(cont) == 1 for cont in conts)
    with torch.inference_mode():
        first = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                      position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0).to(device), use_cache=not single_token,
                      logits_to_keep=1)
        last_logprobs = torch.log_softmax(first.logits[:, -1, :].float(), dim=-1)
        if single_token:  # letters / yes-no-maybe: the context pass alone scores every answer
            return [float(last_logprobs[q, cont[0]]) for q, cont in zip(owner, conts, strict=True)]
        cache = first.cache if getattr(first, "cache", None) is not None else first.past_key_values
        cache.reorder_cache(torch.tensor(owner, device=device))
        cont_width = max(len(c) for c in conts)
        cont_ids = torch.full((len(conts), cont_width), pad_id, dtype=torch.long)
        cont_mask = torch.zeros((len(conts), cont_width), dtype=torch.long)
        for row, cont in enumerate(conts):
            cont_ids[row, :len(cont)] = torch.tensor(cont)
            cont_mask[row, :len(cont)] = 1
        lengths = torch.tensor([len(contexts[q]) for q in owner])
        positions = lengths.unsqueeze(1) + torch.arange(cont_width).unsqueeze(0)
        full_mask = torch.cat([mask[owner], cont_mask], dim=1)
        second = model(input_ids=cont_ids.to(device), attention_mask=full_mask.to(device),
                       position_ids=positions.to(device), use_cache=True, **{_cache_kwarg(model): cache})
        logprobs = torch.log_softmax(second.logits.float(), dim=-1)
    scores = []
    for row, cont in enumerate(conts):
        total = float(last_logprobs[owner[row], cont[0]])
        if len(cont) > 1:
            target = torch.tensor(cont[1:], device=logprobs.device).unsqueeze(1)
            total += float(logprobs[row, :len(cont) - 1, :].gather(1, target).sum())
        scores.append(total)
    return scores


def _packed_logprobs(model: Any, sequences: list[list[int]], positions: list[list[int]]) -> list[Any]:
    """Log-softmax rows at ``positions`` of each sequence, all sequences packed in one forward pass.

    Must run inside :func:`packed_attention`. Returns one ``(len(positions[i]), vocab)`` tensor per sequence; the
    output head is computed only at those positions.
    """
    import torch

    device = next(model.parameters()).device
    starts = [0]
    for sequence in sequences:
        starts.append(starts[-1] + len(sequence))
    ids = torch.tensor([t for s in sequences for t in s], dtype=torch.long).unsqueeze(0)
    position_ids = torch.cat([torch.arange(len(s)) for s in sequences]).unsqueeze(0)
    bounds = torch.tensor(starts, dtype=torch.int32, device=device)
    keep = torch.tensor([start + p for start, kept in zip(starts, positions, strict=False) for p in kept],
                        dtype=torch.long, device=device)
    longest = max(len(s) for s in sequences)
    with torch.inference_mode():
        out = model(input_ids=ids.to(device), position_ids=position_ids.to(device), cu_seq_lens_q=bounds,
                    cu_seq_lens_k=bounds, max_length_q=longest, max_length_k=longest, logits_to_keep=keep,
                    use_cache=False)
    logprobs = torch.log_softmax(out.logits[0].float(), dim=-1)
    return list(torch.split(logprobs, [len(kept) for kept in positions]))


def _score_packed(model: Any, questions: list[list[tuple[list[int], list[int]]]], share_prefix: bool
                  ) -> list[float]:
    """Summed continuation log-probabilities in one packed pass.

    With ``share_prefix`` and single-token answers, one sequence per question (its context) scores every answer;
    otherwise one sequence per option (context + continuation), the head at the continuation's positions.
    """
    import torch

    if share_prefix and all(len(cont) == 1 for pairs in questions for _, cont in pairs):
        contexts = [pairs[0][0][-MAX_SCORED_TOKENS:] for pairs in questions]
        rows = _packed_logprobs(model, contexts, [[len(c) - 1] for c in contexts])
        return [float(rows[q][0, cont[0]]) for q, pairs in enumerate(questions) for _, cont in pairs]
    pairs = [pair for question in questions for pair in question]
    sequences = [(ctx + cont)[-MAX_SCORED_TOKENS:] for ctx, cont in pairs]
    positions = [list(range(len(s) - len(cont) - 1, len(s) - 1)) for s, (_, cont) in zip(sequences, pairs,
                                                                                          strict=True)]
    rows = _packed_logprobs(model, sequences, positions)
    return [float(row.gather(1, torch.tensor(cont, device=row.device).unsqueeze(1)).sum())
            for row, (_, cont) in zip(rows, pairs, strict=True)]


def score_requests(model: Any, tokenizer: Any, requests: list[ChoiceRequest], batch_size: int = 8,
                   on_question: Callable[[int], None] | None = None, share_prefix: bool = True) -> list[list[float]]:
    """Log-likelihood of every option of every request; whole questions per batch (>= 1 question each).

    ``batch_size`` counts sequences per forward pass: a question costs one per answer, or one in all when every
    answer is a single token (lm-eval's letter and yes/no/maybe formats: the context pass scores them all, as
    lm-eval's one-token-continuation shortcut does); ``share_prefix`` encodes each context once (see module doc).
    Batches are packed without padding where the model allows (:func:`~medtune.attention.supports_packed_rows`),
    except multi-token answers with a shared prefix, which keep the KV-cache path.
    """
    encoded = [[encode_pair(tokenizer, r.context, c) for c in r.continuations] for r in requests]
    order = sorted(range(len(requests)), key=lambda i: -max(len(a) + len(b) for a, b in encoded[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # a question whose answers are all one token costs one sequence (its context pass scores them all)
    cost = [1 if share_prefix and all(len(c) == 1 for _, c in pairs) else len(pairs) for pairs in encoded]
    longest = max((len(a) + len(b) for pairs in encoded for a, b in pairs), default=0)
    packed = supports_packed_rows(model, min(longest, MAX_SCORED_TOKENS))
    # a multi-token question with a shared prefix keeps the KV-cache path (its context is encoded once)
    multi_token = share_prefix and any(len(c) > 1 for pairs in encoded for _, c in pairs)
    packed = packed and not multi_token
    results: list[list[float]] = [[] for _ in requests]
    with packed_attention(model) if packed else nullcontext():
        index = 0
        while index < len(order):
            group = [order[index]]
            index += 1
            while index < len(order) and sum(cost[i] for i in group) + cost[order[index]] <= batch_size:
                group.append(order[index])
                index += 1
            if packed:
                scores = _score_packed(model, [encoded[i] for i in group], share_prefix)
            elif share_prefix:
                scores = _score_shared_prefix(model, [encoded[i] for i in group], pad_id)
            else:
                scores = _score_batch(model, [pair for i in group for pair in encoded[i]], pad_id)
            for i in group:
                results[i], scores = scores[:len(encoded[i])], scores[len(encoded[i]):]
            if on_question is not None:
                on_question(len(group))
    return results


def choose(scores: list[float], choice_texts: list[str]) -> tuple[int, int]:
    """Return (argmax of log-likelihood, argmax of log-likelihood / characters of the option)."""
    best = max(range(len(scores)), key=lambda i: scores[i])
    norm = max(range(len(scores)), key=lambda i: scores[i] / max(1, len(choice_texts[i])))
    return best, norm


def mean_stderr(values: list[float]) -> float:
    """Standard error of the mean with the sample variance (lm-eval's ``mean_stderr``); 0 for n < 2."""
    n = len(values)
    if n < 2:
        return 0.0
    mu = sum(values) / n
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (n - 1) / n)


def sample_examples(examples: list[Any], limit: int | None, seed: int, task: str) -> list[Any]:
    """A seeded random sample of ``limit`` examples (in their original order), or all of them.

    The sample depends only on the seed, the task name and the set, so every model scored with the same seed
    sees the same questions; it is never "the first N rows" (archive order clusters by source).
    """
    if not limit or limit >= len(examples):
        return list(examples)
    rng = random.Random(f"{seed}-{task}")
    return [examples[i] for i in sorted(rng.sample(range(len(examples)), limit))]


def sample_shots(pool: list[Any], k: int, exclude_id: str, seed: int = 1234) -> list[Any]:
    """Pick ``k`` solved examples from ``pool`` (never the question itself), deterministically per question."""
    if k <= 0:
        return []
    rng = random.Random(f"{seed}-{exclude_id}")
    candidates = [e for e in pool if e.id != exclude_id]
    return rng.sample(candidates, min(k, len(candidates)))
