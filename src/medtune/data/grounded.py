"""Grounded fine-tuning data: ``medtune prepare --grounded INDEX`` (recipe key ``data.grounded``).

Training and validation prompts carry ``k`` passages of a retrieval index, numbered, in exactly the grounded
format every answer path serves (:func:`medtune.rag.grounding.build_grounded_messages`, used by ``ask --rag``,
``chat --rag``, the UI and ``eval --rag``), with the run's system prompt:

* **with the answer** (``1 - no_answer_share`` of the rows): the chunks of the row's own QA pair (at most two) at
  seeded random positions among distractors retrieved for the question; the target is the reference answer with
  ``[n]`` after every statement the own passage ``n`` supports (:func:`medtune.rag.grounding.support_score` at
  :data:`~medtune.rag.grounding.SUPPORT_THRESHOLD`, the test the citation-precision metric applies);
* **without it** (``no_answer_share`` of each split, seeded): no chunk of the row's own document is shown, nor any
  passage that supports half or more of the answer's statements (MedQuAD repeats some answers verbatim across
  documents); the target is :data:`medtune.rag.grounding.NOT_COVERED`. So is the target of a prompt whose passages
  all score under the no-evidence threshold (the served prompt then shows no sources at all).

Test rows keep their plain prompts (``eval --rag`` grounds them when evaluating). The index must not hold the test
answers: an index built without ``--exclude-prepared-test`` is refused, and so is one that still holds any of this
split's test answers (matched by text, and by question id within the same MedQuAD document); chunks of the test
split's MedQuAD documents (their other, unsampled answers) are never shown in a training prompt.
``OUT/grounded.jsonl`` records per row the chunk ids shown, the numbers of its own passages and whether it is a
no-answer example.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from medtune.config import GroundedConfig
from medtune.errors import UserError
from medtune.rag.chunking import answer_key

MAX_OWN_PASSAGES = 2  # the retriever's per-document cap: a long answer is shown as at most two windows
GROUNDED_SPLITS = ("train", "validation")


def _words(text: str) -> list[str]:
    """Lower-cased words of ``text`` (punctuation and whitespace dropped)."""
    return re.findall(r"[a-z0-9]+", text.lower())


#: a question-id match counts as the row's own answer only when the two answers share this share of their words:
#: MedQuAD reuses one question id for several sub-diseases of a CancerGov document (different answers)
SAME_ANSWER_JACCARD = 0.6


def _window_number(chunk_id: str) -> int:
    """``n`` of a chunk id ``<pair_id>#<n>``."""
    return int(chunk_id.rsplit("#", 1)[1])


class GroundedBuilder:
    """Opens the index once (refusing one built without a test exclusion) and grounds a prepare's splits."""

    def __init__(self, settings: GroundedConfig, warn: Any = print) -> None:
        """Check the index manifest and load the retriever; ``warn`` receives warning lines."""
        from medtune.rag.builder import require_manifest
        from medtune.rag.chunking import DEFAULT_OVERLAP
        from medtune.rag.retriever import Retriever

        name = str(settings.index)
        manifest = require_manifest(name)
        excluded = manifest.get("settings", {}).get("exclude_prepared_test")
        if not excluded:
            raise UserError(
                f"index {name!r} was built without --exclude-prepared-test, so grounded training prompts could show "
                "test answers; prepare the same data without --grounded (--out PLAIN), then rebuild the index with "
                f"`medtune index build SOURCES --name {name} --exclude-prepared-test PLAIN --force`.")
        self.settings, self.name, self.excluded, self.warn = settings, name, excluded, warn
        self.retriever = Retriever(name)
        self.documents: dict[int, str] = {}
        overlap = int(manifest.get("settings", {}).get("overlap", DEFAULT_OVERLAP))
        self.pair_chunks: dict[str, list[str]] = {}
        for chunk in self.retriever.chunks:
            self.pair_chunks.setdefault(chunk["pair_id"], []).append(chunk["id"])
        self.by_text: dict[str, list[str]] = {}
        self.pair_text: dict[str, str] = {}
        for pair, ids in self.pair_chunks.items():
            ids.sort(key=_window_number)
            words = self.retriever.by_id[ids[0]]["text"].split()
            for chunk_id in ids[1:]:  # windows overlap by `overlap` words: rebuild the whole answer
                words.extend(self.retriever.by_id[chunk_id]["text"].split()[overlap:])
            self.pair_text[pair] = " ".join(words)
            self.by_text.setdefault(answer_key(self.pair_text[pair]), []).append(pair)
        self.by_question_id = {pair.split("/", 1)[1]: pair for pair in self.pair_chunks if "/" in pair}

    def remember_documents(self, rows: list[dict[str, Any]]) -> None:
        """Note each row's provenance document (MedQuAD ``group``) before the split replaces it by a leakage group."""
        self.documents = {id(row): str(row.get("group") or "").removeprefix("medquad:") for row in rows}

    def _document_of(self, pair: str) -> str:
        """Document id of an indexed pair."""
        return str(self.retriever.by_id[self.pair_chunks[pair][0]]["document_id"])

    def own_pairs(self, row: dict[str, Any]) -> list[str]:
        """Indexed pairs holding this row's answer: the same question id in the same document with mostly the same
        words (:data:`SAME_ANSWER_JACCARD`; cleaning may have changed the text), or the same text (the same document
        first)."""
        document = self.documents.get(id(row), "")
        by_id = self.by_question_id.get(str(row.get("original_id") or ""))
        found = [by_id] if by_id and document and self._document_of(by_id) == document and \
            self._same_answer(str(row["answer"]), self.pair_text[by_id]) else []
        same_text = self.by_text.get(answer_key(str(row["answer"])), [])
        found += sorted((p for p in same_text if p not in found), key=lambda p: self._document_of(p) != document)
        return found

    @staticmethod
    def _same_answer(first: str, second: str) -> bool:
        """Two answers share at least :data:`SAME_ANSWER_JACCARD` of their words."""
        a, b = set(_words(first)), set(_words(second))
        return bool(a and b) and len(a & b) / len(a | b) >= SAME_ANSWER_JACCARD

    def check_test_split(self, test_rows: list[dict[str, Any]]) -> set[str]:
        """Refuse an index holding any test answer; return the test split's documents (kept out of every prompt)."""
        leaked = [row for row in test_rows if self.own_pairs(row)]
        if leaked:
            raise UserError(
                f"index {self.name!r} holds {len(leaked)} of the {len(test_rows)} test answers of this prepared data "
                f"(it leaves out the test split of {self.excluded}, a different split: other sources, filters, sample "
                "or seed); prepare this data without --grounded (--out PLAIN) and rebuild the index with "
                f"`--exclude-prepared-test PLAIN --force`.")
        return {self.documents.get(id(row), "") for row in test_rows} - {""}

    def apply(self, splits: dict[str, list[dict[str, Any]]], style: str, tokenizer: Any, system_prompt: str | None,
              out_dir: Path, seed: int, progress: bool = True) -> dict[str, Any]:
        """Re-render the train and validation rows as grounded examples; write ``grounded.jsonl``; return the
        manifest's ``grounded`` section."""
        from tqdm import tqdm

        from medtune import embeddings as dense
        from medtune.prompts import strip_control_strings

        test_documents = self.check_test_split(splits.get("test", []))
        rows = [(name, row) for name in GROUNDED_SPLITS for row in splits.get(name, [])]
        questions = [strip_control_strings(str(row["question"])) for _, row in rows]
        vectors = dense.embed(questions, self.retriever.encoder) if rows else []
        no_answer = self._pick_no_answer(splits, seed)
        other = self._other_questions(rows, no_answer, seed)
        stats: Counter[str] = Counter()
        per_split: dict[str, Counter[str]] = {name: Counter() for name in GROUNDED_SPLITS if name in splits}
        records = []
        for (split, row), question, vector in tqdm(list(zip(rows, questions, vectors, strict=True)),
                                                   desc="grounding", unit=" rows", disable=None if progress else True,
                                                   leave=False):
            source = other.get(row["id"])
            retrieval = (questions[source], vectors[source]) if source is not None else (question, vector)
            record = self._ground(row, question, retrieval, row["id"] in no_answer, test_documents, style, tokenizer,
                                  system_prompt, random.Random(f"{seed}:{row['id']}"), stats)
            per_split[split]["no_answer" if record["no_answer"] else "with_answer"] += 1
            records.append({"id": row["id"], "split": split, **record})
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / "grounded.jsonl").open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
        if rows and stats["own_passage_missing"] > 0.05 * len(rows):
            self.warn(f"{stats['own_passage_missing']} of {len(rows)} answers are not in index {self.name!r}; they "
                      "became no-answer examples (index the same sources as the prepared data).")
        from medtune.rag.grounding import SUPPORT_THRESHOLD

        return {"index": self.name, "k": self.settings.k, "no_answer_share": self.settings.no_answer_share,
                "no_answer_passages": self.settings.no_answer_passages, "passage_header": self.settings.passage_header,
                "format": "medtune.rag.grounding.build_grounded_messages", "index_excludes_test_of": self.excluded,
                "test_answers_in_index": 0, "test_documents": len(test_documents),
                "rows": {name: dict(counts) for name, counts in per_split.items()},
                "support_threshold": SUPPORT_THRESHOLD, "records": "grounded.jsonl",
                **{key: stats[key] for key in ("own_passage_missing", "no_evidence_prompts", "answer_passages_dropped",
                                               "test_document_passages_dropped", "statements", "cited_statements")}}

    def _pick_no_answer(self, splits: dict[str, list[dict[str, Any]]], seed: int) -> set[str]:
        """Row ids of the no-answer examples: ``no_answer_share`` of each grounded split, seeded."""
        chosen: set[str] = set()
        for name in GROUNDED_SPLITS:
            ids = sorted(row["id"] for row in splits.get(name, []))
            count = round(self.settings.no_answer_share * len(ids))
            chosen.update(random.Random(f"{seed}:no-answer:{name}").sample(ids, count))
        return chosen

    def _other_questions(self, rows: list[tuple[str, dict[str, Any]]], no_answer: set[str], seed: int) -> dict[str, int]:
        """``no_answer_passages: other_question``: for each no-answer row, the index (in ``rows``) of a seeded other
        row of the same split and another document, whose question retrieves the passages it shows."""
        if self.settings.no_answer_passages != "other_question":
            return {}
        by_split: dict[str, list[int]] = {}
        for position, (split, _) in enumerate(rows):
            by_split.setdefault(split, []).append(position)
        chosen = {}
        for position, (split, row) in enumerate(rows):
            if row["id"] not in no_answer:
                continue
            document = self.documents.get(id(row), "")
            candidates = [i for i in by_split[split] if i != position
                          and (not document or self.documents.get(id(rows[i][1]), "") != document)]
            if candidates:
                chosen[row["id"]] = random.Random(f"{seed}:other-question:{row['id']}").choice(candidates)
        return chosen

    def _ground(self, row: dict[str, Any], question: str, retrieval: tuple[str, Any], no_answer: bool,
                test_documents: set[str], style: str, tokenizer: Any, system_prompt: str | None, rng: random.Random,
                stats: Counter[str]) -> dict[str, Any]:
        """Pick the passages (retrieved for ``retrieval``: this question and its vector, or another question's for a
        no-answer example), build the cited (or not-covered) target and set the row's prompt and completion."""
        from medtune.evaluate.hallucination import split_sentences
        from medtune.prompts import strip_control_strings
        from medtune.rag.grounding import (
            NOT_COVERED,
            SUPPORT_THRESHOLD,
            build_grounded_messages,
            cite_sentences,
            has_evidence,
            support_score,
        )

        k = self.settings.k
        answer = strip_control_strings(str(row["answer"]))
        owners = self.own_pairs(row)
        own_ids = self.pair_chunks[owners[0]][:min(MAX_OWN_PASSAGES, k)] if owners else []
        if not own_ids:
            stats["own_passage_missing"] += 1
            no_answer = True
        own_document = self._document_of(owners[0]) if owners else self.documents.get(id(row), "")
        statements = [s for s in split_sentences(answer) if not s.endswith("?")]
        ranked, cosines = self.retriever.rank(retrieval[0], 3 * k + 4, vector=retrieval[1])
        keep = []
        for chunk_id, score in ranked:
            chunk = self.retriever.by_id[chunk_id]
            if chunk["document_id"] in test_documents:
                stats["test_document_passages_dropped"] += 1
            elif chunk["pair_id"] in owners or (no_answer and chunk["document_id"] == own_document):
                continue
            elif statements and 2 * sum(support_score(s, chunk["text"]) >= SUPPORT_THRESHOLD
                                        for s in statements) >= len(statements):
                stats["answer_passages_dropped"] += 1
            else:
                keep.append((chunk_id, score))
        chosen, own_numbers = keep[:k], []
        if not no_answer:
            chosen = keep[:k - len(own_ids)]
            positions = sorted(rng.sample(range(len(chosen) + len(own_ids)), len(own_ids)))
            for position, chunk_id in zip(positions, own_ids, strict=True):
                chosen.insert(position, (chunk_id, 0.0))
            own_numbers = [p + 1 for p in positions]
        # scored against the question they were retrieved for: an other-question example shows its passages as a
        # retriever would return off-topic ones (the evidence gate passes), which is the case it teaches
        passages = self.retriever.passages(chosen, retrieval[1], cosines)
        messages = build_grounded_messages(question, passages, system_prompt, header=self.settings.passage_header)
        evidence = has_evidence(passages)
        if no_answer or not evidence:
            stats["no_evidence_prompts"] += not evidence
            target = NOT_COVERED
        else:
            def best_own(sentence: str) -> int | None:
                score, number = max((support_score(sentence, passages[n - 1].text), n) for n in own_numbers)
                return number if score >= SUPPORT_THRESHOLD else None

            target, total, cited = cite_sentences(answer, best_own)
            stats["statements"] += total
            stats["cited_statements"] += cited
        row["prompt"], row["completion"] = _render(messages, target, style, tokenizer)
        return {"passages": [p.id for p in passages], "own": own_numbers if evidence else [],
                "no_answer": bool(no_answer or not evidence), "evidence": evidence}


def _render(messages: list[dict[str, str]], target: str, style: str, tokenizer: Any) -> tuple[str, str]:
    """Prompt (up to the assistant header) and completion (the target and the end-of-turn token)."""
    from medtune.prompts import render_messages

    prompt = render_messages(messages, style, tokenizer, generation_prompt=True)
    full = render_messages([*messages, {"role": "assistant", "content": target}], style, tokenizer,
                           generation_prompt=False)
    if not full.startswith(prompt):
        raise UserError(f"prompt style '{style}': the grounded prompt is not a prefix of the full conversation.")
    return prompt, full[len(prompt):]
