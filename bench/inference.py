"""Inference benchmark: tokens/s and time to first token, transformers vs llama.cpp (f16, q4_k_m), batch 1.

Run: ``python bench/inference.py [--model smollm2-135m-instruct] [--max-new-tokens 64]``.
Exports the model to GGUF f16 + q4_k_m first (cached under MEDTUNE_HOME/exports). Prints a table and one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

QUESTIONS = [
    "What are the symptoms of type 2 diabetes?",
    "How is high blood pressure treated?",
    "What causes iron deficiency anemia?",
    "What is the difference between a cold and the flu?",
    "When should someone see a doctor for a headache?",
]


def measure(backend: Any, max_new_tokens: int) -> dict[str, float]:
    """Mean time to first token and decode tokens/s over QUESTIONS (greedy, no guard)."""
    from medtune.inference.base import GenerationSettings

    settings = GenerationSettings(temperature=0, max_new_tokens=max_new_tokens, repetition_penalty=1.0)
    backend.chat([{"role": "user", "content": "Hello"}], GenerationSettings(temperature=0, max_new_tokens=4))
    ttfts, rates = [], []
    for question in QUESTIONS:
        start = time.perf_counter()
        first = None
        pieces = []
        for piece in backend.stream_chat([{"role": "user", "content": question}], settings):
            first = first if first is not None else time.perf_counter() - start
            pieces.append(piece)
        total = time.perf_counter() - start
        tokens = backend.count_text_tokens("".join(pieces))
        ttfts.append(first or total)
        rates.append(tokens / max(total - (first or 0), 1e-9))
    return {"ttft_s": round(sum(ttfts) / len(ttfts), 3), "tokens_per_s": round(sum(rates) / len(rates), 1)}


def main() -> None:
    """Run the benchmark and print the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    from medtune.export.pipeline import default_export_dir, export_model
    from medtune.inference.registry import load_backend

    out = default_export_dir(args.model)
    stem = Path(args.model).name
    f16, q4 = out / f"{stem}-f16.gguf", out / f"{stem}-q4_k_m.gguf"
    if not (f16.is_file() and q4.is_file()):
        export_model(args.model, quant="q4_k_m", verify=False, out_dir=out)
    results = {
        "transformers": measure(load_backend("transformers", args.model), args.max_new_tokens),
        "llamacpp-f16": measure(load_backend("llamacpp", str(f16)), args.max_new_tokens),
        "llamacpp-q4_k_m": measure(load_backend("llamacpp", str(q4)), args.max_new_tokens),
    }
    print(f"{'backend':<18}{'tokens/s':>10}{'TTFT (s)':>10}")
    for name, row in results.items():
        print(f"{name:<18}{row['tokens_per_s']:>10}{row['ttft_s']:>10}")
    print(json.dumps({"bench": "inference", "model": args.model, "questions": len(QUESTIONS),
                      "max_new_tokens": args.max_new_tokens, "results": results}))


if __name__ == "__main__":
    main()
