"""The comparison machinery of bench/eval_vs_lmeval.py, run for real on a tiny random Llama.

lm-eval runs its installed ``medqa_4options`` (YAML + ``preprocess_medqa``) with only the dataset pointed at the
local file, and must choose what medtune chooses, with the same per-option log-likelihoods.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from medtune.evaluate.multiple_choice import sample_examples
from medtune.evaluate.tasks import TASKS

lm_eval = pytest.importorskip("lm_eval")
BENCH = Path(__file__).resolve().parents[2] / "bench" / "eval_vs_lmeval.py"


def _bench() -> Any:
    """Import bench/eval_vs_lmeval.py as a module."""
    spec = importlib.util.spec_from_file_location("eval_vs_lmeval", BENCH)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_lmeval_configs_change_only_the_dataset_location(shared_data: Path, tmp_path: Path) -> None:
    bench = _bench()
    manager = bench.lmeval_task_manager(["medqa", "mmlu-medical"])
    examples = sample_examples(TASKS["mmlu-medical"].load(shared_data, {}), 12, 3, "mmlu-medical")
    configs = bench.lmeval_configs(manager, "mmlu-medical", examples, tmp_path / "mmlu")
    assert {c["task"] for c in configs} == {f"mmlu_{e.meta['subject']}" for e in examples}
    for config in configs:
        assert config["dataset_path"] == "json" and config["dataset_name"] is None and config["test_split"] == "test"
        assert Path(config["dataset_kwargs"]["data_files"]["test"]).is_file()
        assert "fewshot_split" not in config
        assert config["doc_to_choice"] == ["A", "B", "C", "D"] and config["description"].startswith("The following")
    medqa_examples = sample_examples(TASKS["medqa"].load(shared_data, {}), 3, 3, "medqa")
    (medqa,) = bench.lmeval_configs(manager, "medqa", medqa_examples, tmp_path / "medqa")
    assert medqa["task"] == "medqa_4options"
    assert medqa["doc_to_text"].__module__ == "lm_eval.tasks.medqa.preprocess_medqa"
    assert not {"training_split", "validation_split"} & set(medqa)


def test_lmeval_side_chooses_what_medtune_chooses(tiny_model_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    bench = _bench()
    limit, seed = 5, 11
    examples = sample_examples(TASKS["medqa"].load(shared_data, {}), limit, seed, "medqa")
    manager = bench.lmeval_task_manager(["medqa"])
    configs = bench.lmeval_configs(manager, "medqa", examples, tmp_path / "docs")
    theirs = bench.run_lmeval(tiny_model_dir, configs, manager, batch_size=4)
    ours = bench.run_medtune(tiny_model_dir, "medqa", limit, seed, 4, tmp_path / "medtune")
    assert list(ours.picked) == [e.id for e in examples]
    assert theirs.picked == ours.picked
    for item, scores in ours.loglikelihoods.items():
        assert scores == pytest.approx(theirs.loglikelihoods[item], abs=1e-4)
    assert theirs.acc == pytest.approx(ours.acc)
    row = bench.compare(ours, theirs)
    assert row["n"] == limit and row["agreement"] == 1.0 and row["first_disagreements"] == []
    assert bench.failed_tasks({"medqa": row}) == []
    # the check can fail: one changed choice in five is 0.8 agreement, and the accuracies may move apart
    flipped = bench.Side({**theirs.picked, examples[0].id: (theirs.picked[examples[0].id] + 1) % 4},
                         theirs.loglikelihoods, theirs.acc + 0.2, theirs.seconds)
    worse = bench.compare(ours, flipped)
    assert worse["agreement"] == 0.8 and worse["first_disagreements"] == [examples[0].id]
    assert worse["acc_diff_points"] == pytest.approx(-20.0)
    assert bench.failed_tasks({"medqa": worse}) == ["medqa"]
    assert row["max_abs_loglik_diff"] < 1e-4
    # same choices, but one option's log-likelihood 0.05 nats off: the log-likelihood check alone fails it
    shifted = {**theirs.loglikelihoods}
    first = examples[0].id
    shifted[first] = [v - 0.05 if i != theirs.picked[first] else v for i, v in enumerate(shifted[first])]
    drift = bench.compare(ours, bench.Side(theirs.picked, shifted, theirs.acc, theirs.seconds))
    assert drift["agreement"] == 1.0 and drift["max_abs_loglik_diff"] == pytest.approx(0.05, abs=1e-3)
    assert bench.failed_tasks({"medqa": drift}) == ["medqa"]


def test_forward_flops_match_torch_flop_counter(tiny_model_dir: Path) -> None:
    """The roofline's work count agrees with torch's own FLOP counter on a real forward pass: linear layers and the
    last-position head exactly; attention as the causal half of the counter's full square."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from medtune.models import load_causal_lm

    bench = _bench()
    model = load_causal_lm(str(tiny_model_dir), dtype="float32")
    model.set_attn_implementation("eager")  # attention as matmuls, which the counter sees (its CPU SDPA kernel not)
    length = 37
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(input_ids=torch.randint(0, model.config.vocab_size, (1, length)), logits_to_keep=1)
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    attention = sum(n for op, n in counts.items() if "bmm" in op)
    linear = counter.get_total_flops() - attention
    config = model.config
    width = config.num_attention_heads * (getattr(config, "head_dim", None)
                                          or config.hidden_size // config.num_attention_heads)
    ours_attention = config.num_hidden_layers * 2 * width * length * (length + 1)
    assert attention > 0 and linear > 0
    assert bench.forward_flops(model, [length]) - ours_attention == linear
    assert ours_attention == pytest.approx(attention * (length + 1) / (2 * length))
    # every position's logits (lm-eval) costs the head length - 1 more times
    head = 2 * model.config.hidden_size * model.config.vocab_size
    assert bench.forward_flops(model, [length], None) - bench.forward_flops(model, [length]) == (length - 1) * head
    assert bench.linear_gflops(model, tokens=64, repeats=1) > 0
