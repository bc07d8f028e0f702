"""Retrieval benchmark: index build time, queries/s, recall@1/5/10 of BM25, dense and hybrid on MedQuAD.

Usage: python bench/retrieval.py [--every 8] [--questions 300]
Prints one JSON line. Held-out protocol: ``--questions`` QA pairs are sampled (seed 0, at most one per
document) from documents with at least two answered pairs; their own answers are excluded from the index, and a
hit is a retrieved chunk from the same MedQuAD document (see medtune.rag.recall). ``--every N`` indexes the
documents whose sha1(document id) % N == 0 (a deterministic 1/N subset; N=1 = all 16,407 answered pairs):
embedding all ~31k chunks with MiniLM takes ~50 min on the shared 2-core CPU, so the default is 1/8.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections import defaultdict

from medtune.rag.builder import build_index
from medtune.rag.recall import evaluate_recall
from medtune.rag.retriever import Retriever
from medtune.rag.sources import iter_rows, parse_source

SOURCE = "medquad:medquad/MedQuAD_xml.tar.gz"


def in_subset(document_id: str, every: int) -> bool:
    """Deterministic 1/every document subset."""
    return int(hashlib.sha1(document_id.encode()).hexdigest(), 16) % every == 0


def main() -> None:
    """Build the benchmark index, time queries, print recall@k per mode as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--name", default="bench-medquad")
    args = parser.parse_args()

    spec = parse_source(SOURCE)
    by_doc: dict[str, list[dict]] = defaultdict(list)
    for row in iter_rows(spec):
        if in_subset(row["document_id"], args.every):
            by_doc[row["document_id"]].append(row)
    rng = random.Random(0)
    eligible = sorted(d for d, rows in by_doc.items() if len(rows) >= 2)
    held_out = [rng.choice(by_doc[d]) for d in rng.sample(eligible, min(args.questions, len(eligible)))]

    started = time.perf_counter()
    manifest = build_index([spec], args.name, exclude_pairs=[r["pair_id"] for r in held_out],
                           row_filter=lambda row: in_subset(row["document_id"], args.every),
                           filter_tag=f"sha1(document_id) % {args.every} == 0", progress=sys.stderr.isatty())
    build_seconds = time.perf_counter() - started
    retriever = Retriever(args.name)
    questions = [(r["question"], r["document_id"]) for r in held_out]
    result: dict = {"bench": "retrieval", "subset": f"documents with sha1(id) % {args.every} == 0",
                    "pairs_indexed": manifest["pairs"], "documents": manifest["documents"],
                    "chunks": manifest["chunks"], "build_seconds": round(build_seconds, 1),
                    "build_skipped": manifest["skipped"], "questions": len(questions), "recall": {}, "qps": {}}
    if not manifest["skipped"]:
        result["chunks_per_second_build"] = round(manifest["chunks"] / build_seconds, 2)
    for mode in ("bm25", "dense", "hybrid"):
        tick = time.perf_counter()
        recall = evaluate_recall(retriever, questions, (1, 5, 10), mode=mode)
        result["qps"][mode] = round(len(questions) / (time.perf_counter() - tick), 1)
        result["recall"][mode] = {f"@{k}": round(v, 3) for k, v in recall.items()}
    tick = time.perf_counter()
    for question, _ in questions[:50]:
        retriever.retrieve(question, 4)
    result["qps"]["retrieve_hybrid_with_scores"] = round(min(50, len(questions)) / (time.perf_counter() - tick), 1)
    hybrid5 = result["recall"]["hybrid"]["@5"]
    result["hybrid_beats_both_at_5"] = hybrid5 > max(result["recall"]["bm25"]["@5"], result["recall"]["dense"]["@5"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
