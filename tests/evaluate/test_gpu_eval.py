"""`evaluate_model` on a GPU: a QLoRA run is loaded by the device policy onto CUDA in nf4, as it was trained
(skipped without CUDA; the CPU fallback is tested in tests/inference/test_device_policy.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.inference.conftest import make_lora_run


@pytest.mark.gpu
def test_gpu_evaluate_model_runs_a_qlora_run_on_cuda_in_nf4(tiny_model_dir: Path, prepared_dir: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("bitsandbytes")
    from medtune import models
    from medtune.config import EvalConfig
    from medtune.evaluate.runner import evaluate_model

    (prepared_dir / "manifest.json").write_text("{}")
    run = make_lora_run(tmp_path / "qlora-run", str(tiny_model_dir), quantization="nf4", dtype="auto",
                        prepared_dir=prepared_dir)
    loaded: list[Any] = []  # what evaluate_model loads, recorded on the way out
    monkeypatch.setattr(models, "load_causal_lm", lambda *args, _load=models.load_causal_lm, **kwargs:
                        loaded.append(_load(*args, **kwargs)) or loaded[-1])
    results = evaluate_model(str(run), ["medquad-test"], limit=2, out_dir=tmp_path / "eval",
                             settings=EvalConfig(max_new_tokens=4, batch_size=2))
    (model,) = loaded
    assert model.device.type == "cuda" and getattr(model, "is_loaded_in_4bit", False)
    assert hasattr(model, "peft_config")  # the adapter, on its nf4 base
    task = results["tasks"]["medquad-test"]
    assert task["n"] == 2 and task["metrics"]["tokens_per_s"] > 0
