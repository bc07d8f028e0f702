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
