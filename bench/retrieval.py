"""Retrieval benchmark: index build time, queries/s, recall@1/5/10 of BM25, dense and hybrid on MedQuAD.

Usage: python bench/retrieval.py [--every 1] [--questions 300]
Prints one JSON line. Held-out protocol: 2 x ``--questions`` QA pairs are sampled (seed 0, at most one per
document) from documents with at least two answered pairs; all their own answers are excluded from the index, and
a hit is a retrieved chunk from the same MedQuAD document (see medtune.rag.recall). The first half is the test
set; the second half tunes the fusion (BM25 weight, RRF k, question-word cleaning, chunks per document), so the
reported test recall is not fitted to the test questions. Single-list baselines are reported both plain and with
the same cleaning/per-document cap as the shipped hybrid, and the target compares against the best of them.
``--every N`` indexes only the documents whose sha1(document id) % N == 0 (N=1, the default: all of MedQuAD).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections import defaultdict
from dataclasses import asdict

from medtune.rag.builder import build_index
from medtune.rag.recall import evaluate_recall, recall_at_k
from medtune.rag.retriever import FusionSettings, Retriever
from medtune.rag.sources import iter_rows, parse_source

SOURCE = "medquad:medquad/MedQuAD_xml.tar.gz"


def in_subset(document_id: str, every: int) -> bool:
    """Deterministic 1/every document subset."""
    return int(hashlib.sha1(document_id.encode()).hexdigest(), 16) % every == 0


def held_out_sets(by_doc: dict[str, list[dict]], n: int) -> tuple[list[dict], list[dict]]:
    """(test, tune): one QA pair from each of 2n documents that have at least two answered pairs (seed 0)."""
    rng = random.Random(0)
    eligible = sorted(d for d, rows in by_doc.items() if len(rows) >= 2)
    picked = [rng.choice(by_doc[d]) for d in rng.sample(eligible, min(2 * n, len(eligible)))]
    return picked[:n], picked[n:]


def grid() -> list[FusionSettings]:
    """Fusion settings tried on the tuning questions."""
    return [FusionSettings(bm25_weight=w, rrf_k=k, clean_query=c, per_document=p)
            for w in (0.25, 0.5, 0.75, 1.0) for k in (10, 30, 60) for c in (False, True) for p in (0, 1, 2)]


def candidate_lists(retriever: Retriever, questions: list[tuple[str, str]], depth: int = 50) -> list[dict]:
    """Per question: BM25 ids (raw and cleaned query) and dense ids, computed once for the whole grid."""
    out = []
    for question, _ in questions:
        vector = retriever._query_vector(question)
        out.append({"raw": [c for c, _ in retriever.lexical(question, depth, clean_query=False)],
                    "clean": [c for c, _ in retriever.lexical(question, depth, clean_query=True)],
                    "dense": [c for c, _ in retriever.semantic(vector, depth)]})
    return out


def fused_recall(retriever: Retriever, lists: list[dict], gold: list[str], fusion: FusionSettings) -> dict[int, float]:
    """recall@1/5/10 of one fusion setting from cached candidate lists."""
    retrieved = []
    for item in lists:
        ranked = retriever.fuse(item["clean" if fusion.clean_query else "raw"], item["dense"], 10, fusion)
        retrieved.append([retriever.by_id[c]["document_id"] for c, _ in ranked])
    return recall_at_k(retrieved, gold, (1, 5, 10))


def main() -> None:
    """Build the benchmark index, tune fusion on held-out questions, report recall@k per mode on others."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--questions", type=int, default=300, help="Test questions (as many again for tuning).")
    parser.add_argument("--name", default="bench-medquad")
    args = parser.parse_args()

    spec = parse_source(SOURCE)
    by_doc: dict[str, list[dict]] = defaultdict(list)
    for row in iter_rows(spec):
        if in_subset(row["document_id"], args.every):
            by_doc[row["document_id"]].append(row)
    test_rows, tune_rows = held_out_sets(by_doc, args.questions)

    started = time.perf_counter()
    manifest = build_index([spec], args.name, exclude_pairs=[r["pair_id"] for r in test_rows + tune_rows],
                           row_filter=lambda row: in_subset(row["document_id"], args.every),
                           filter_tag=f"sha1(document_id) % {args.every} == 0", progress=sys.stderr.isatty())
    build_seconds = time.perf_counter() - started
    retriever = Retriever(args.name)
    test = [(r["question"], r["document_id"]) for r in test_rows]
    tune = [(r["question"], r["document_id"]) for r in tune_rows]
    result: dict = {"bench": "retrieval", "subset": "all of MedQuAD" if args.every == 1
                    else f"documents with sha1(id) % {args.every} == 0",
                    "pairs_indexed": manifest["pairs"], "documents": manifest["documents"],
                    "chunks": manifest["chunks"], "build_seconds": round(build_seconds, 1),
                    "build_skipped": manifest["skipped"], "test_questions": len(test), "tune_questions": len(tune)}
    if not manifest["skipped"]:
        result["chunks_per_second_build"] = round(manifest["chunks"] / build_seconds, 2)

    tune_lists = candidate_lists(retriever, tune)
    tune_gold = [g for _, g in tune]
    scored = [(fused_recall(retriever, tune_lists, tune_gold, f), f) for f in grid()]
    best_recall, best = max(scored, key=lambda item: (item[0][5], item[0][1], item[0][10], -item[1].per_document))
    result["tuned_fusion"] = asdict(best)
    result["tune_recall_hybrid_tuned"] = {f"@{k}": round(v, 3) for k, v in best_recall.items()}
    result["shipped_fusion"] = asdict(FusionSettings())

    result["recall"], result["qps"] = {}, {}
    no_cap = FusionSettings(clean_query=False, per_document=0)
    shipped = FusionSettings()
    setups = {"bm25": ("bm25", no_cap), "dense": ("dense", no_cap), "bm25_capped": ("bm25", shipped),
              "dense_capped": ("dense", shipped), "hybrid_untuned": ("hybrid", no_cap), "hybrid": ("hybrid", shipped)}
    for label, (mode, fusion) in setups.items():
        retriever.fusion = fusion
        tick = time.perf_counter()
        recall = evaluate_recall(retriever, test, (1, 5, 10), mode=mode)
        result["qps"][label] = round(len(test) / (time.perf_counter() - tick), 1)
        result["recall"][label] = {f"@{k}": round(v, 3) for k, v in recall.items()}
    retriever.fusion = FusionSettings()
    tick = time.perf_counter()
    for question, _ in test[:50]:
        retriever.retrieve(question, 4)
    result["qps"]["retrieve_hybrid_with_scores"] = round(min(50, len(test)) / (time.perf_counter() - tick), 1)
    hybrid5 = result["recall"]["hybrid"]["@5"]
    singles = ("bm25", "dense", "bm25_capped", "dense_capped")
    result["best_single_at_5"] = max(result["recall"][name]["@5"] for name in singles)
    result["hybrid_beats_both_at_5"] = hybrid5 > result["best_single_at_5"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
