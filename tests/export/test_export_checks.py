"""Export checks that can fail: the f16 GGUF must reproduce the adapter model's greedy tokens on served prompts,
quantized GGUFs report agreement and perplexity change, and `medtune export` exits non-zero on a bad GGUF."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from tests.inference.conftest import make_lora_run, tiny_model_dir  # noqa: F401  (fixture)

from medtune.errors import UserError
from medtune.export.checks import Reference, check_gguf_files, first_divergence

needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason="needs llama-cpp-python (scripts/install.sh)")


class WordTokenizer:
    """Decodes token ids as ``t<id>`` words."""

    def decode(self, ids: list[int]) -> str:
        return " ".join(f"t{i}" for i in ids)


def fake_reference() -> Reference:
    return Reference(description="adapter model on its unquantized base, float32, cpu", n_tokens=4,
                     questions=["q1?", "q2?"], prompts=[[1, 2], [3, 4]], greedy=[[5, 6, 7, 8], [9, 10, 2]],
                     scored=[([1, 2], [5, 6])], held_out_source="built-in", stop_ids={2}, tokenizer=WordTokenizer())


def fake_llama(monkeypatch: pytest.MonkeyPatch, greedy: dict[str, list[list[int]]], ppl: dict[str, float]) -> None:
    """Replace llama.cpp's side with fixed greedy tokens and perplexities per file name."""
    import medtune.export.gguf as gguf

    monkeypatch.setattr(gguf, "greedy_ids_llamacpp", lambda file, prompts, n, stops: greedy[file.name])
    monkeypatch.setattr(gguf, "perplexity_llamacpp", lambda file, scored: ppl[file.name])


def test_first_divergence() -> None:
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 9, 3]) == 1
    assert first_divergence([1, 2, 3], [1, 2]) == 2  # the GGUF stopped early
    assert first_divergence([1, 2], [1, 2, 3]) == 2


def test_f16_mismatch_fails_naming_the_first_divergence(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_llama(monkeypatch, {"m-f16.gguf": [[5, 6, 7, 8], [9, 11, 2]]}, {"m-f16.gguf": 3.0})
    report = check_gguf_files(fake_reference(), [Path("m-f16.gguf")])
    assert not report["passed"] and len(report["failures"]) == 1
    assert report["files"]["m-f16.gguf"]["first_divergence"] == {
        "prompt": 2, "question": "q2?", "position": 1, "expected": "'t10' (id 10)", "got": "'t11' (id 11)"}
    assert "prompt 2 ('q2?'), position 1: expected 't10' (id 10), got 't11' (id 11)" in report["failures"][0]
    assert report["files"]["m-f16.gguf"]["agreement"] == pytest.approx((1 + 1 / 3) / 2, abs=1e-4)


def test_quantized_files_report_agreement_and_fail_only_above_max_ppl_increase(
        monkeypatch: pytest.MonkeyPatch) -> None:
    greedy = {"m-f16.gguf": [[5, 6, 7, 8], [9, 10, 2]], "m-q4_k_m.gguf": [[5, 6, 1, 1], [9, 10, 2]]}
    fake_llama(monkeypatch, greedy, {"m-f16.gguf": 4.0, "m-q4_k_m.gguf": 4.4})
    files = [Path("m-f16.gguf"), Path("m-q4_k_m.gguf")]
    report = check_gguf_files(fake_reference(), files)
    quant = report["files"]["m-q4_k_m.gguf"]
    assert report["passed"] and quant["ppl_increase"] == pytest.approx(0.1)
    assert not quant["exact"] and quant["agreement"] == pytest.approx(0.75)  # (2/4 + 3/3) / 2
    assert check_gguf_files(fake_reference(), files, max_ppl_increase=0.15)["passed"]
    failed = check_gguf_files(fake_reference(), files, max_ppl_increase=0.05)
    assert not failed["passed"] and "m-q4_k_m.gguf" in failed["failures"][0] and "+10.0%" in failed["failures"][0]


def test_a_failed_export_is_not_served(tmp_path: Path) -> None:
    from medtune.errors import UserError
    from medtune.export.checks import ExportCheckError
    from medtune.export.serve import serve_command
    from medtune.inference.llamacpp_backend import find_gguf

    (tmp_path / "m-f16.gguf").write_bytes(b"GGUF")
    failure = "m-f16.gguf does not reproduce the greedy tokens of the model users trained: prompt 1 ..."
    (tmp_path / "export.json").write_text(json.dumps({"verify": {"passed": False, "failures": [failure]}}))
    with pytest.raises(UserError, match="failed its check"):
        find_gguf(str(tmp_path))
    with pytest.raises(ExportCheckError):  # not re-exported and served
        serve_command(str(tmp_path), engine="llamacpp")
    assert find_gguf(str(tmp_path / "m-f16.gguf")) == tmp_path / "m-f16.gguf"  # an explicit file still works


@pytest.fixture
def smol_run(tmp_path: Path) -> Path:
    """SmolLM2 with a small random LoRA adapter, as a run whose prepared data has a test split."""
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "manifest.json").write_text("{}")
    rows = [{"question": "What is asthma?", "answer": "Asthma is a long-term disease of the airways that makes "
             "breathing hard at times."},
            {"question": "What is gout?", "answer": "Gout is a painful arthritis caused by uric acid crystals."}]
    (prepared / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return make_lora_run(tmp_path / "smol-run", "smollm2-135m-instruct", std=0.02, prepared_dir=prepared)


@pytest.mark.slow
@needs_llama_cpp
def test_adapter_run_export_passes_and_reports_the_quantized_perplexity(smol_run: Path, tmp_path: Path) -> None:
    from medtune.export.checks import load_reference
    from medtune.export.pipeline import export_model

    report = export_model(str(smol_run), quant="q4_k_m", out_dir=tmp_path / "out", check_prompts=2, n_tokens=16)
    verify = report["verify"]
    assert verify["passed"] and verify["reference"] == "adapter model on its unquantized base, float32, cpu"
    f16, q4 = verify["files"]["smol-run-f16.gguf"], verify["files"]["smol-run-q4_k_m.gguf"]
    assert f16["exact"] and all(row["matching_prefix"] == 16 for row in f16["prompts"])
    assert verify["held_out"]["source"].endswith("prepared/test.jsonl") and verify["held_out"]["answers"] == 2
    assert f16["perplexity"] > 1 and q4["perplexity"] > 1 and "ppl_increase" in q4
    assert json.loads((tmp_path / "out" / "export.json").read_text())["gguf"].endswith("q4_k_m.gguf")
    # the same files under a limit just below the measured change fail
    files = [tmp_path / "out" / "smol-run-f16.gguf", tmp_path / "out" / "smol-run-q4_k_m.gguf"]
    reference = load_reference(smol_run, True, ["What are the symptoms of type 2 diabetes?"], 8, 2)
    strict = check_gguf_files(reference, files, max_ppl_increase=q4["ppl_increase"] - 1e-3)
    assert not strict["passed"] and "--max-ppl-increase" in strict["failures"][0]


def negate_output_norm(gguf_file: Path) -> None:
    """Perturb one tensor in place: the final norm's weights change sign (every logit flips)."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_file, "r+")
    tensor = next(t for t in reader.tensors if t.name == "output_norm.weight")
    tensor.data[...] = -tensor.data
    reader.data.flush()


@pytest.mark.slow
@needs_llama_cpp
@pytest.mark.parametrize("bad", ["perturbed tensor", "other model"])
def test_export_cli_exits_non_zero_on_a_corrupted_or_mismatched_gguf(
        bad: str, smol_run: Path, tiny_model_dir: Path, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import medtune.export.gguf as gguf
    from medtune.cli import main

    real_convert = gguf.convert_hf_to_gguf

    def bad_convert(hf_dir: Path, out_file: Path, outtype: str = "f16") -> Path:
        if bad == "other model":  # a random 2-layer Llama with the same tokenizer
            return real_convert(tiny_model_dir, out_file, outtype)
        negate_output_norm(real_convert(hf_dir, out_file, outtype))
        return out_file

    monkeypatch.setattr(gguf, "convert_hf_to_gguf", bad_convert)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["medtune", "export", str(smol_run / "adapter"), "--quant", "f16", "--out",
                                      str(out), "--check-prompts", "2", "--check-tokens", "16"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "export check failed: adapter-f16.gguf does not reproduce the greedy tokens" in error
    assert "prompt 1" in error or "prompt 2" in error
    assert "position" in error and "expected '" in error and ", got " in error
    exported = json.loads((out / "export.json").read_text())
    assert not exported["verify"]["passed"] and "gguf" not in exported
    assert exported["verify"]["files"]["adapter-f16.gguf"]["first_divergence"]["position"] == 0


@pytest.mark.gpu
@needs_llama_cpp
def test_gpu_export_checks_against_the_adapter_model_on_cuda(smol_run: Path, tmp_path: Path) -> None:
    from medtune.export.pipeline import export_model

    report = export_model(str(smol_run), quant="f16", out_dir=tmp_path / "out", check_prompts=2, n_tokens=16)
    assert report["verify"]["reference"].endswith("float32, cuda:0")  # an fp32 run stays fp32 on the GPU
    assert report["verify"]["passed"], report["verify"]["failures"]


def _segfault(code: int) -> int:
    """Die the way a native crash does (module level, so a spawned child can import it)."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)
    return code


def _raise_user_error(path: str) -> None:
    raise UserError(f"{path}: bad file")


def test_a_crash_in_llama_cpp_becomes_one_clear_error() -> None:
    from medtune.export.gguf import run_in_child

    assert run_in_child(abs, -3) == 3
    with pytest.raises(UserError, match=r"llama.cpp crashed in _segfault\(7\)"):
        run_in_child(_segfault, 7)
    with pytest.raises(UserError, match="x.gguf: bad file"):  # errors raised in the child come back as they are
        run_in_child(_raise_user_error, "x.gguf")
