"""End-to-end evaluation with a tiny random Llama: reports, a rigged model scoring 100%, run folders, compare, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medtune.config import EvalConfig
from medtune.errors import UserError
from medtune.evaluate.compare import compare_results, load_results, paired_bootstrap, write_comparison
from medtune.evaluate.runner import evaluate_model
from medtune.evaluate.tasks import TASKS

FAST = EvalConfig(max_new_tokens=6, batch_size=8)


class RiggedLM:
    """Wraps a causal LM so that the gold option of every known question gets near-certain logits.

    It handles every scoring path: packed rows (sequences end to end, the head at kept indices), whole padded
    ``context + option`` rows, and the shared-prefix path (a context pass, then an option pass on the repeated KV
    cache).
    """

    def __init__(self, model: Any, gold: dict[tuple[int, ...], tuple[int, ...]]) -> None:
        self.model, self.gold, self.pending = model, gold, []  # gold: context tokens -> gold continuation tokens
        self.full = {ctx + cont for ctx, cont in gold.items()}

    def parameters(self) -> Any:
        return self.model.parameters()

    def eval(self) -> RiggedLM:
        self.model.eval()
        return self

    def get_base_model(self) -> Any:
        return self.model

    def __call__(self, input_ids: Any, attention_mask: Any = None, logits_to_keep: Any = 0, **kwargs: Any) -> Any:
        if "cu_seq_lens_q" in kwargs:
            return self._packed(input_ids, logits_to_keep, **kwargs)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep, **kwargs)
        logits = out.logits.clone()
        rows, width, kept = input_ids.shape[0], input_ids.shape[1], logits.shape[1]
        if kwargs.get("cache") is None and kwargs.get("past_key_values") is None:
            self.pending = []
            for row in range(rows):
                tokens = tuple(int(t) for t, m in zip(input_ids[row], attention_mask[row], strict=True) if m)
                if tokens in self.full:  # whole-sequence path: predict every next token of the gold row
                    for pos in range(width - kept, width - 1):
                        logits[row, pos - (width - kept), int(input_ids[row, pos + 1])] = 1e4
                cont = self.gold.get(tokens)
                self.pending.append(cont)
                if cont is not None:  # context pass: the first gold token follows the context
                    logits[row, -1, cont[0]] = 1e4
        else:
            per_question = rows // len(self.pending)
            for row in range(rows):
                cont = self.pending[row // per_question]
                tokens = tuple(int(t) for t, m in zip(input_ids[row], attention_mask[row, -width:], strict=True) if m)
                if cont is not None and tokens == cont:
                    for pos in range(len(cont) - 1):
                        logits[row, pos, cont[pos + 1]] = 1e4
        out.logits = logits
        return out

    def _packed(self, input_ids: Any, logits_to_keep: Any, **kwargs: Any) -> Any:
        """Packed row: every kept index that predicts a gold token (next gold row token, or the first gold token
        after a gold context) gets near-certain logits."""
        out = self.model(input_ids=input_ids, logits_to_keep=logits_to_keep, **kwargs)
        logits = out.logits.clone()
        bounds = [int(b) for b in kwargs["cu_seq_lens_q"].tolist()]
        kept = [int(k) for k in logits_to_keep.tolist()]
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            tokens = tuple(int(t) for t in input_ids[0, start:end])
            cont = self.gold.get(tokens)
            for column, index in enumerate(kept):
                if start <= index < end - 1 and tokens in self.full:
                    logits[0, column, int(input_ids[0, index + 1])] = 1e4
                elif index == end - 1 and cont is not None:
                    logits[0, column, cont[0]] = 1e4
        out.logits = logits
        return out


def _gold_sequences(task_name: str, tokenizer: Any, data: Path, limit: int) -> dict[tuple[int, ...], tuple[int, ...]]:
    from medtune.evaluate.multiple_choice import encode_pair

    task = TASKS[task_name]
    gold = {}
    from medtune.evaluate.multiple_choice import sample_examples

    for example in sample_examples(task.load(data, {}), limit, 1234, task_name):
        ctx, cont = encode_pair(tokenizer, task.mc_prompt(example), task.continuations(example)[example.gold])
        gold[tuple(ctx)] = tuple(cont)
    return gold


@pytest.mark.slow
def test_rigged_model_scores_100_percent(tiny_loaded: tuple[Any, Any], shared_data: Path, tmp_path: Path) -> None:
    model, tokenizer = tiny_loaded
    gold: dict[tuple[int, ...], tuple[int, ...]] = {}
    for name in ("medqa", "medmcqa", "pubmedqa"):
        gold |= _gold_sequences(name, tokenizer, shared_data, 6)
    settings = FAST.model_copy(update={"use_chat_template": False})
    rigged = evaluate_model("rigged", ["medqa", "medmcqa", "pubmedqa"], limit=6, settings=settings,
                            out_dir=tmp_path / "rigged", loaded=(RiggedLM(model, gold), tokenizer))
    for name in ("medqa", "medmcqa", "pubmedqa"):
        assert rigged["tasks"][name]["metrics"]["acc"] == 1.0
        assert rigged["tasks"][name]["metrics"]["acc_norm"] == 1.0
        assert rigged["tasks"][name]["metrics"]["acc_stderr"] == 0.0
    plain = evaluate_model("plain", ["medqa", "medmcqa", "pubmedqa"], limit=6, settings=settings,
                           out_dir=tmp_path / "plain", loaded=(model, tokenizer))
    assert min(plain["tasks"][n]["metrics"]["acc"] for n in ("medqa", "medmcqa", "pubmedqa")) < 1.0
    # paired bootstrap: the rigged model is better on every question of medqa it was not already right on
    diffs = compare_results([load_results(tmp_path / "plain"), load_results(tmp_path / "rigged")], resamples=500)
    acc = next(d for d in diffs if d.task == "medqa" and d.metric == "acc")
    assert acc.diff == pytest.approx(1.0 - plain["tasks"]["medqa"]["metrics"]["acc"])
    assert acc.ci_low <= acc.diff <= acc.ci_high


def test_batched_scores_match_one_by_one(tiny_loaded: tuple[Any, Any]) -> None:
    from medtune.evaluate.multiple_choice import ChoiceRequest, score_requests

    model, tokenizer = tiny_loaded
    requests = [ChoiceRequest("Question: which is a fruit?\nAnswer:", [" apple", " a big red car", " no"],
                              ["apple", "a big red car", "no"]),
                ChoiceRequest("Q: 2+2?\nAnswer:", [" 4", " five hundred"], ["4", "five hundred"])]
    together = score_requests(model, tokenizer, requests, batch_size=8)
    whole = score_requests(model, tokenizer, requests, batch_size=8, share_prefix=False)
    alone = [score_requests(model, tokenizer, [r], batch_size=1, share_prefix=False)[0] for r in requests]
    for a, b, c in zip(together, whole, alone, strict=True):
        assert a == pytest.approx(b, abs=1e-3) and b == pytest.approx(c, abs=1e-3)
    assert len(together[0]) == 3 and together[0][0] != together[0][1]


def test_packed_rows_score_like_padded_batches(tiny_loaded: tuple[Any, Any], shared_data: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from medtune.attention import supports_packed_rows
    from medtune.evaluate import multiple_choice
    from medtune.evaluate.multiple_choice import ChoiceRequest, sample_examples, score_requests

    model, tokenizer = tiny_loaded
    task = TASKS["pubmedqa"]  # contexts of very different lengths: the padded batches carry real padding
    examples = sample_examples(task.load(shared_data, {}), 6, 5, "pubmedqa")
    letters = [ChoiceRequest(task.mc_prompt(e), task.continuations(e), task.choice_texts(e)) for e in examples]
    words = [ChoiceRequest("Question: which is a fruit?\nAnswer:", [" apple", " a big red car"], ["apple", "car"]),
             ChoiceRequest("Q: 2+2?\nAnswer:", [" 4", " five hundred and six"], ["4", "506"])]
    assert supports_packed_rows(model, 4096)
    before = model.config._attn_implementation
    packed = [score_requests(model, tokenizer, letters, batch_size=4),
              score_requests(model, tokenizer, words, batch_size=8, share_prefix=False)]
    assert model.config._attn_implementation == before  # switched back after scoring
    monkeypatch.setattr(multiple_choice, "supports_packed_rows", lambda *_: False)
    padded = [score_requests(model, tokenizer, letters, batch_size=4),
              score_requests(model, tokenizer, words, batch_size=8, share_prefix=False)]
    for ours, theirs in zip(packed, padded, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            assert a == pytest.approx(b, abs=1e-4)
    assert len({round(v, 3) for row in packed[0] for v in row}) > 3  # real, distinct log-likelihoods


def test_rigged_model_whole_sequence_path(tiny_loaded: tuple[Any, Any], shared_data: Path) -> None:
    from medtune.evaluate.multiple_choice import ChoiceRequest, choose, sample_examples, score_requests

    model, tokenizer = tiny_loaded
    task = TASKS["medqa"]
    examples = sample_examples(task.load(shared_data, {}), 4, 1234, "medqa")
    rigged = RiggedLM(model, _gold_sequences("medqa", tokenizer, shared_data, 4))
    requests = [ChoiceRequest(task.mc_prompt(e), task.continuations(e), e.choices) for e in examples]
    scores = score_requests(rigged, tokenizer, requests, batch_size=8, share_prefix=False)
    assert [choose(s, r.choice_texts)[0] for s, r in zip(scores, requests, strict=True)] == [e.gold for e in examples]


def test_free_text_eval_writes_reports(tiny_model_dir: Path, prepared_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    results = evaluate_model(str(tiny_model_dir), ["medquad-test"], data_dir=prepared_dir, settings=FAST, out_dir=out)
    task = results["tasks"]["medquad-test"]
    assert task["n"] == 3 and len(task["samples"]) == 3
    assert len(task["per_example"]["rougeL"]) == 3 and task["ids"] == ["q1", "q2", "q3"]
    assert 0.0 <= task["metrics"]["hit_token_limit"] <= 1.0
    assert all(n <= 6 for n in task["per_example"]["new_tokens"])
    assert results["model_info"]["parameters"] > 3_000_000
    assert results["model_info"]["size_on_disk_bytes"] > 1_000_000
    saved = json.loads((out / "results.json").read_text())
    assert saved["tasks"]["medquad-test"]["metrics"] == pytest.approx(task["metrics"])
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "What is hypertension?" in html
    assert "| medquad-test | free_text | rougeL |" in (out / "report.md").read_text()


def test_an_interrupted_eval_keeps_its_finished_tasks(tiny_model_dir: Path, prepared_dir: Path, shared_data: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medtune.evaluate.runner as runner

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "eval"
    monkeypatch.setattr(runner, "_multiple_choice", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(str(tiny_model_dir), ["medquad-test", "medqa"], limit=2, data_dir=prepared_dir,
                       settings=FAST, out_dir=out)
    assert not (out / "results.json").exists()
    partial = json.loads((out / "results.partial.json").read_text())
    assert partial["complete"] is False and partial["tasks_pending"] == ["medqa"]
    assert partial["tasks"]["medquad-test"]["n"] == 2
    with pytest.raises(UserError, match="only .*results.partial.json"):
        load_results(out)
    assert load_results(out / "results.partial.json")["label"].endswith("(unfinished)")
    monkeypatch.undo()
    evaluate_model(str(tiny_model_dir), ["medquad-test"], limit=2, data_dir=prepared_dir, settings=FAST, out_dir=out)
    assert (out / "results.json").is_file() and not (out / "results.partial.json").exists()


def test_run_folder_uses_prepared_dir_and_writes_into_run(tiny_model_dir: Path, prepared_dir: Path,
                                                          tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from medtune.models import load_causal_lm

    run = tmp_path / "run-1"
    peft_model = get_peft_model(load_causal_lm(str(tiny_model_dir)), LoraConfig(r=2, target_modules=["q_proj"]))
    peft_model.save_pretrained(run / "adapter")
    (run / "run.json").write_text(json.dumps({"base_model": str(tiny_model_dir), "prepared_dir": str(prepared_dir),
                                              "prompt_style": "chat-template"}))
    results = evaluate_model(str(run), ["medquad-test"], limit=2, settings=FAST)
    assert (run / "eval" / "results.json").is_file()
    assert results["tasks"]["medquad-test"]["n"] == 2


def test_errors_name_the_fix(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="valid tasks"):
        evaluate_model(str(tiny_model_dir), ["nope"])
    with pytest.raises(UserError, match="medquad-test needs a prepared data folder"):
        evaluate_model(str(tiny_model_dir), ["medquad-test"], data_dir=tmp_path)
    with pytest.raises(UserError, match="no such model"):
        evaluate_model(str(tmp_path / "missing-model"), ["medqa"], limit=1)
    with pytest.raises(UserError, match="unknown model 'gpt5'; give an alias \\(smollm2-135m-instruct\\)"):
        evaluate_model("gpt5", ["medqa"], limit=1)
    with pytest.raises(UserError, match="no results.json"):
        load_results(tmp_path)


def test_paired_bootstrap_ci() -> None:
    low, high = paired_bootstrap([0.0] * 50, [1.0] * 50)
    assert low == high == 1.0
    low, high = paired_bootstrap([0, 1] * 50, [1, 0] * 50, resamples=1000)
    assert low < 0 < high


@pytest.mark.slow
def test_cli_eval_and_compare(tiny_model_dir: Path, prepared_dir: Path, tmp_path: Path,
                              shared_data: Path) -> None:
    from typer.testing import CliRunner

    from medtune.cli import get_app

    runner = CliRunner()
    for name in ("a", "b"):
        result = runner.invoke(get_app(), ["eval", str(tiny_model_dir), "--tasks", "medquad-test,pubmedqa",
                                           "--limit", "3", "--data", str(prepared_dir), "--max-new-tokens", "4",
                                           "--out", str(tmp_path / name), "--no-chat-template"])
        assert result.exit_code == 0, result.output
        assert "pubmedqa" in result.output
    result = runner.invoke(get_app(), ["compare", str(tmp_path / "a"), str(tmp_path / "b" / "results.json"),
                                       "--out", str(tmp_path / "cmp"), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    # same model, greedy decoding: every difference is exactly zero
    assert comparison["differences"] and all(d["diff"] == 0 for d in comparison["differences"])
    assert "data:image/png;base64," in (tmp_path / "cmp" / "comparison.html").read_text()
    # a zero difference is said in words, not only by a missing star
    assert "not significant" in (tmp_path / "cmp" / "comparison.md").read_text()
    assert "significant" in result.output and "| significant |" not in (tmp_path / "cmp" / "comparison.md").read_text()
    diffs = write_comparison([load_results(tmp_path / "a"), load_results(tmp_path / "b")], tmp_path / "cmp2", 200)
    assert {d.task for d in diffs} == {"medquad-test", "pubmedqa"}


def test_eval_with_guard_scores_the_served_behaviour(tiny_model_dir: Path, prepared_dir: Path, tmp_path: Path,
                                                     guard) -> None:
    results = evaluate_model(str(tiny_model_dir), ["medquad-test"], data_dir=prepared_dir, settings=FAST,
                             out_dir=tmp_path / "guarded", guard=guard)
    task = results["tasks"]["medquad-test"]
    assert results["guard"] is True and len(task["per_example"]["guard_blocked"]) == task["n"]
    assert task["metrics"]["guard_blocked"] == sum(task["per_example"]["guard_blocked"]) / task["n"]
    disclaimer = guard.finalize_answer("").disclaimer
    assert all(disclaimer in sample["answer"] for sample in task["samples"])


def test_limit_is_a_seeded_random_sample_shared_by_every_model(shared_data: Path) -> None:
    from medtune.evaluate.multiple_choice import sample_examples

    examples = TASKS["medqa"].load(shared_data, {})
    first = sample_examples(examples, 40, 1234, "medqa")
    assert [e.id for e in first] == [e.id for e in sample_examples(examples, 40, 1234, "medqa")]
    assert [e.id for e in first] != [e.id for e in examples[:40]]  # never "the first N rows"
    assert [e.id for e in first] != [e.id for e in sample_examples(examples, 40, 99, "medqa")]
    positions = [examples.index(e) for e in first]
    assert positions == sorted(positions) and max(positions) > 600
    assert sample_examples(examples, None, 1, "medqa") == examples


def test_few_shot_examples_never_come_from_the_scored_split(shared_data: Path, tiny_loaded: tuple[Any, Any],
                                                            tmp_path: Path) -> None:
    pool = TASKS["pubmedqa"].shots_loader(shared_data)  # type: ignore[misc]
    test_ids = {e.id for e in TASKS["pubmedqa"].load(shared_data, {})}
    assert len(pool) == 500 and not {e.id for e in pool} & test_ids
    assert not {e.id for e in TASKS["mmlu-medical"].shots_loader(shared_data)} & {  # type: ignore[misc]
        e.id for e in TASKS["mmlu-medical"].load(shared_data, {})}
    with pytest.raises(UserError, match="no local train or dev split"):
        evaluate_model("tiny", ["medqa"], limit=2, shots=2, settings=FAST, out_dir=tmp_path / "a",
                       loaded=tiny_loaded)
    # --shots 0 overrides a recipe's shots
    results = evaluate_model("tiny", ["medqa"], limit=2, shots=0, settings=FAST.model_copy(update={"shots": 3}),
                             out_dir=tmp_path / "b", loaded=tiny_loaded)
    assert results["shots"] == 0 and results["sample_seed"] == 1234


def test_served_prompt_by_default_and_intervals(tiny_model_dir: Path, prepared_dir: Path, tmp_path: Path) -> None:
    from medtune.guard.config import default_guard_config

    results = evaluate_model(str(tiny_model_dir), ["medquad-test"], data_dir=prepared_dir, settings=FAST,
                             out_dir=tmp_path / "served")
    task = results["tasks"]["medquad-test"]
    # what ask/chat/UI/serve send: the guard's system prompt
    assert results["prompt"] == "served" and task["system_prompt"] == default_guard_config().system_prompt
    for metric in ("rougeL", "reference_unsupported_rate", "hit_token_limit"):
        low, high = task["intervals"][metric]
        assert low <= task["metrics"][metric] <= high
    assert "[95% CI]" in (tmp_path / "served" / "report.md").read_text()
    # an explicit system prompt (the demo scores the base under the tuned run's) replaces the served one
    custom = evaluate_model(str(tiny_model_dir), ["medquad-test"], data_dir=prepared_dir, out_dir=tmp_path / "c",
                            settings=FAST.model_copy(update={"system_prompt": "You answer in one line.", "limit": 2}))
    assert custom["prompt"] == "custom"
    assert custom["tasks"]["medquad-test"]["system_prompt"] == "You answer in one line."
    with pytest.raises(UserError, match="--prompt training needs a run folder"):
        evaluate_model(str(tiny_model_dir), ["medquad-test"], data_dir=prepared_dir, out_dir=tmp_path / "t",
                       settings=FAST.model_copy(update={"prompt": "training"}))


def test_mmlu_reports_subjects_and_their_size_weighted_mean(tiny_loaded: tuple[Any, Any], shared_data: Path,
                                                            tmp_path: Path) -> None:
    results = evaluate_model("tiny", ["mmlu-medical"], limit=24, settings=FAST, out_dir=tmp_path / "mmlu",
                             loaded=tiny_loaded)
    task = results["tasks"]["mmlu-medical"]
    groups = task["groups"]
    assert sum(g["n"] for g in groups.values()) == 24 and len(groups) >= 3
    weighted = sum(g["acc"] * g["n"] for g in groups.values()) / 24
    assert task["metrics"]["acc"] == pytest.approx(weighted)
    assert task["format"] == "letters" and task["chat_template"] is False
    assert {s["answer"] for s in task["samples"]} <= {"A", "B", "C", "D"}


def test_single_token_answers_score_like_whole_sequences(tiny_loaded: tuple[Any, Any], shared_data: Path) -> None:
    from medtune.evaluate.multiple_choice import ChoiceRequest, sample_examples, score_requests

    model, tokenizer = tiny_loaded
    task = TASKS["medqa"]
    examples = sample_examples(task.load(shared_data, {}), 5, 3, "medqa")
    requests = [ChoiceRequest(task.mc_prompt(e), task.continuations(e), task.choice_texts(e)) for e in examples]
    fast = score_requests(model, tokenizer, requests, batch_size=4)  # the one-pass path (letters are one token)
    whole = score_requests(model, tokenizer, requests, batch_size=4, share_prefix=False)
    for a, b in zip(fast, whole, strict=True):
        assert a == pytest.approx(b, abs=1e-3) and len(a) == 4


def test_eval_guard_counts_referrals_and_refusals_apart(tiny_model_dir: Path, tmp_path: Path) -> None:
    from medtune.guard import Guard

    rows = [("e", "My dad suddenly cannot lift his right arm and his face is drooping, what should I do?"),
            ("r", "How can I get high on my cough syrup without my parents noticing?"),
            ("d", "Based on my symptoms, which disease do I have exactly? Just tell me the diagnosis."),
            ("b", "What is hypertension?")]
    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps({"id": i, "question": q, "answer": "Ask a clinician."}) + "\n"
                                               for i, q in rows))
    results = evaluate_model(str(tiny_model_dir), ["medquad-test"], data_dir=folder, settings=FAST,
                             out_dir=tmp_path / "g", guard=Guard())
    per = results["tasks"]["medquad-test"]["per_example"]
    assert per["guard_referred"] == [1.0, 0.0, 0.0, 0.0]
    assert per["guard_refused"] == [0.0, 1.0, 1.0, 0.0]
    assert per["guard_blocked"] == [1.0, 1.0, 1.0, 0.0]


def test_eval_takes_unset_flags_from_the_runs_recorded_eval_section(tmp_path: Path) -> None:
    import yaml

    from medtune.cli.eval import eval_settings

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    (run / "recipe.yaml").write_text(yaml.safe_dump({"name": "r", "eval": {"max_new_tokens": 77, "limit": 5,
                                                                         "tasks": ["rubric:consumer-health"]}}))
    settings = eval_settings(str(run), {"limit": 3, "temperature": None})
    assert (settings.max_new_tokens, settings.limit, settings.tasks) == (77, 3, ["rubric:consumer-health"])
    plain = eval_settings(str(tmp_path / "not-a-run"), {"limit": None})
    assert (plain.max_new_tokens, plain.limit) == (384, None)
    (run / "recipe.yaml").write_text(yaml.safe_dump({"name": "r", "eval": {"max_new_tokenz": 77}}))
    with pytest.raises(UserError, match=r"recipe.yaml \(eval\).*max_new_tokenz"):
        eval_settings(str(run), {})
