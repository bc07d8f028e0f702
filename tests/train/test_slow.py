"""Slow end-to-end checks: SmolLM2 through the `medtune train` CLI, and 2 CPU processes (gloo) via `accelerate launch`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smollm2_tiny_recipe_end_to_end(shared_data: Path, isolated_home: Path) -> None:
    pytest.importorskip("medtune.data.pipeline", reason="data pipeline (medtune prepare) not available yet")
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from medtune.cli import get_app
    from medtune.runs import list_runs

    result = CliRunner().invoke(get_app(), ["train", str(REPO / "recipes/smollm2-135m/tiny.yaml"), "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    (run,) = list_runs()
    info, summary = run.info(), run.summary_data()
    assert info["status"] == "completed" and info["base_model"] == "smollm2-135m-instruct"
    assert Path(info["prepared_dir"]).is_dir() and run.data_manifest.is_file()
    assert "<|im_start|>" in run.chat_template.read_text()
    assert summary["steps"] == 2
    assert summary["processes"] == 1 and summary["final_loss"] > 0 and run.loss_curve.is_file()
    weights = load_file(run.adapter / "adapter_model.safetensors")
    assert all(w.abs().sum() > 0 for name, w in weights.items() if "lora_B" in name)  # B starts at zero
    metrics = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert [m["step"] for m in metrics if m["type"] == "train"] == [1, 2]


@pytest.mark.slow
def test_two_cpu_processes_with_accelerate_launch(tiny_model_dir: Path, isolated_home: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.train.conftest import QUESTIONS, splits_for, tiny_recipe
        from medtune.train.trainer import train_recipe
        from pathlib import Path
        model = Path({str(tiny_model_dir)!r})
        rows = [{{"question": q, "answer": a}} for q, a in QUESTIONS] * 2
        train_recipe(tiny_recipe(model, max_steps=2), splits=splits_for(model, rows))
    """))
    env = {**os.environ, "MEDTUNE_HOME": str(isolated_home), "OMP_NUM_THREADS": "1"}
    # `--cpu` would take accelerate's single-process (mpirun) path; the multi-process launcher (torchrun
    # underneath) starts 2 processes that find no GPU and join a gloo group.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(REPO / "configs" / "accelerate" / "ddp_cpu.yaml"), str(script)]
    proc = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((isolated_home / "runs").iterdir())
    assert len(runs) == 1  # one shared run folder, created by the main process
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["processes"] == 2  # both ranks joined one process group
    # the adapter, saved by both ranks through Trainer.save_model (the FSDP/DeepSpeed-safe path), is complete and loads
    from safetensors.torch import load_file

    from medtune.models import load_causal_lm

    adapter = runs[0] / "adapter"
    assert sorted(p.name for p in adapter.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in key for key in weights)
    assert all(w.abs().sum() > 0 for key, w in weights.items() if "lora_B" in key)  # B starts at zero: it trained
    assert summary["trainable_params"] == sum(w.numel() for w in weights.values())
    model = load_causal_lm(str(runs[0]))
    assert hasattr(model, "peft_config")
    loaded = {k: v for k, v in model.state_dict().items() if "lora_B" in k}
    assert loaded and max((v - weights[k.replace(".default", "")]).abs().max().item() for k, v in loaded.items()) == 0


SMOLLM2_STEPS = """
import sys
sys.path.insert(0, {repo!r})
from tests.train.conftest import QUESTIONS
from medtune.config import recipe_from_dict
from medtune.models import SMOLLM2_ALIAS, load_tokenizer
from medtune.train.dataset import rows_to_prompt_completion
from medtune.train.trainer import train_recipe

recipe = recipe_from_dict({{
    "name": "sigkill-resume",
    "model": {{"name": SMOLLM2_ALIAS, "max_seq_length": 128}},
    "lora": {{"r": 4, "alpha": 8, "target_modules": "attention"}},
    "train": {{"max_steps": {steps}, "epochs": 10, "batch_size": 2, "gradient_accumulation_steps": 1,
              "learning_rate": 1e-3, "logging_steps": 1, "save_steps": 2, "gradient_checkpointing": False}},
}})
rows = [{{"question": q, "answer": a}} for q, a in QUESTIONS]  # 3 steps an epoch: the run crosses 2 epoch ends
train = rows_to_prompt_completion(rows, load_tokenizer(SMOLLM2_ALIAS))
train_recipe(recipe, resume="--resume" in sys.argv, splits=(train, None))
"""


def _train_steps(script: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the SmolLM2 training script to its end with MEDTUNE_HOME=home, one thread (same float sums)."""
    env = {**os.environ, "MEDTUNE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _train_records(run_root: Path) -> list[dict]:
    """The train records of a run's metrics.jsonl (complete lines only: a live run may be writing one)."""
    path = run_root / "metrics.jsonl"
    lines = path.read_text().split("\n")[:-1] if path.is_file() else []
    return [r for r in map(json.loads, lines) if r["type"] == "train"]


def _kill_after_checkpoint(proc: subprocess.Popen, runs: Path) -> tuple[Path, object]:
    """SIGKILL ``proc`` once its run has a complete checkpoint and has logged a step past it."""
    import signal
    import time

    from medtune.runs import RunDir
    from medtune.train.resume import latest_checkpoint

    deadline = time.monotonic() + 400
    while proc.poll() is None and time.monotonic() < deadline:
        for root in runs.glob("*/checkpoints"):
            point = latest_checkpoint(RunDir(root.parent))
            logged = [r["step"] for r in _train_records(root.parent)] if point else []
            if point and max(logged, default=0) > point.step:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return root.parent, point
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the run ended (exit {proc.poll()}) before it could be killed between checkpoints")


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_planned_step_and_the_same_adapter(isolated_home: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from medtune.models import SMOLLM2_ALIAS, resolve_model_path

    resolve_model_path(SMOLLM2_ALIAS)  # convert the GGUF once, before anything is timed
    steps = 8
    script = tmp_path / "train_smollm2.py"
    script.write_text(SMOLLM2_STEPS.format(repo=str(REPO), steps=steps))
    baseline_home = tmp_path / "baseline_home"
    (baseline_home / "cache").mkdir(parents=True)
    (baseline_home / "cache" / "models").symlink_to((isolated_home / "cache" / "models").resolve())
    _train_steps(script, baseline_home)  # the uninterrupted run
    (baseline,) = (baseline_home / "runs").iterdir()

    env = {**os.environ, "MEDTUNE_HOME": str(isolated_home), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed, point = _kill_after_checkpoint(proc, isolated_home / "runs")
    assert json.loads((killed / "run.json").read_text())["status"] == "running"
    assert not (killed / "adapter").exists()  # the killed session never finished
    assert max(r["step"] for r in _train_records(killed)) > point.step  # steps the resume must not duplicate
    at_checkpoint = load_file(point.checkpoint / "adapter_model.safetensors")

    _train_steps(script, isolated_home, "--resume")
    (resumed,) = (isolated_home / "runs").iterdir()  # the same run folder, continued
    info, summary = (json.loads((resumed / name).read_text()) for name in ("run.json", "summary.json"))
    assert info["status"] == "completed" and info["steps"] == summary["steps"] == steps
    assert summary["resumed_from_step"] == point.step
    records, expected = _train_records(resumed), _train_records(baseline)
    assert [r["step"] for r in records] == list(range(1, steps + 1))  # no step twice
    assert [r["loss"] for r in records] == pytest.approx([r["loss"] for r in expected], rel=1e-6)
    base_summary = json.loads((baseline / "summary.json").read_text())
    assert summary["tokens"] == base_summary["tokens"]  # same batches in the same order
    assert summary["session_tokens"] == summary["tokens"] - point.tokens < summary["tokens"]
    assert summary["tokens_per_s"] == pytest.approx(summary["session_tokens"] / summary["seconds"], rel=0.01)

    # Same seeds, data order, RNG and optimizer state on the same CPU with one thread: bit-identical
    # here; 1e-6 leaves room for kernel nondeterminism. The control (the adapter at the checkpoint)
    # shows that the tolerance is far below what training moves the weights.
    final = load_file(resumed / "adapter" / "adapter_model.safetensors")
    reference = load_file(baseline / "adapter" / "adapter_model.safetensors")
    assert final.keys() == reference.keys()
    assert max((final[k] - reference[k]).abs().max().item() for k in final) <= 1e-6
    control = max((at_checkpoint[k] - reference[k]).abs().max().item() for k in final)
    assert control > 1e-4, control
