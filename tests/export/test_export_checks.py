"""Export checks that fail only on real faults: the GGUFs score the reference model's greedy continuation
teacher-forced; a resized vocabulary, a wrong stop token, a wrong chat template, a perplexity rise or (f16) a decisive
greedy divergence fail, a near-tie divergence passes and is reported as a tie; `medtune export` exits non-zero on a
bad GGUF."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.inference.conftest import make_lora_run, tiny_model_dir  # noqa: F401  (fixture)

from medtune.errors import UserError
from medtune.export.checks import (
    MAX_PPL_RATIO,
    TIE_MARGIN,
    GgufSide,
    Reference,
    Scores,
    check_file,
    check_gguf_files,
    log_softmax,
    score_positions,
)

needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason="needs llama-cpp-python (scripts/install.sh)")
VOCAB = 6
END = 2  # the end-of-turn token of the synthetic model


class WordTokenizer:
    """Decodes token ids as ``t<id>`` words."""

    def decode(self, ids: list[int]) -> str:
        return " ".join(f"t{i}" for i in ids)


def logits_for(continuation: list[int], margin: float = 3.0, runner_up: dict[int, int] | None = None) -> np.ndarray:
    """Logits over VOCAB tokens where each continuation token wins by ``margin`` (over ``runner_up[position]``, else
    over token 5)."""
    logits = np.zeros((len(continuation), VOCAB))
    for position, token in enumerate(continuation):
        logits[position, token] = margin
        logits[position, (runner_up or {}).get(position, 5)] = 0.5
    return logits


def scores(logits: np.ndarray, continuation: list[int]) -> Scores:
    return score_positions(log_softmax(logits), continuation)


GREEDY = [[3, 4, 1, END], [4, 3, END]]
PROMPTS = [[1, 5], [1, 3]]


def fake_reference(ref_scores: list[Scores] | None = None) -> Reference:
    return Reference(
        description="adapter model on its unquantized base, float32, cpu", n_tokens=4, questions=["q1?", "q2?"],
        messages=[[{"role": "user", "content": "q1?"}], [{"role": "user", "content": "q2?"}]],
        rendered=["<u>q1?", "<u>q2?"], prompts=PROMPTS, greedy=GREEDY,
        scores=ref_scores or [scores(logits_for(c), c) for c in GREEDY], n_vocab=VOCAB, end_of_turn=END,
        end_ids={END}, tie_margin=TIE_MARGIN, scored=[([1, 2], [3, 4])], held_out_source="built-in",
        tokenizer=WordTokenizer())


def fake_side(side_scores: list[Scores] | None = None, **changes: Any) -> GgufSide:
    """A GGUF that matches the reference, with ``changes`` planted."""
    values: dict[str, Any] = {
        "n_vocab": VOCAB, "eos": END, "eot": 0, "end_of_turn_is_eog": True, "rendered": ["<u>q1?", "<u>q2?"],
        "rendered_ids": [list(p) for p in PROMPTS],
        "scores": side_scores or [scores(logits_for(c) + 0.001, c) for c in GREEDY]}
    return GgufSide(**{**values, **changes})


def test_score_positions_gives_the_margin_over_the_best_other_token() -> None:
    logprobs = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]))
    result = score_positions(logprobs, [0, 1])
    assert result.argmax == [0, 2]
    assert result.target == pytest.approx([np.log(0.5), np.log(0.2)])
    assert result.best_other == pytest.approx([np.log(0.3), np.log(0.7)])  # below its target / above it


def test_a_matching_gguf_passes_with_its_deltas_and_perplexities_reported() -> None:
    result, failures = check_file("m-f16.gguf", "f16", fake_reference(), fake_side())
    assert failures == []
    assert result["exact"] and result["agreement"] == 1.0 and result["ties"] == [] and result["template"] == "identical"
    assert result["positions"] == 7 and result["mean_abs_delta_logprob"] < 1e-9  # a constant shift: same log-probs
    assert result["ppl_ratio"] == pytest.approx(1.0) and result["max_ppl_ratio"] == MAX_PPL_RATIO["f16"]
    assert [row["matching_prefix"] for row in result["prompts"]] == [4, 3]


def test_the_demo_runs_near_tie_passes_and_is_reported_as_a_tie() -> None:
    # the README demo's run: at the last position of a prompt the model's two best tokens have log-probs -1.0373 and
    # -1.0384 (' in' vs '-'); the f16 GGUF picks the other one
    ref = np.full((3, VOCAB), -20.0)
    ref[0, 4] = ref[1, 3] = -0.01
    ref[2, END], ref[2, 5] = -1.0373, -1.0384  # the continuation's token vs the runner-up
    got = ref.copy()
    got[2, END], got[2, 5] = -1.0380, -1.0377  # flipped by 0.0003 nats
    reference = fake_reference([scores(logits_for(GREEDY[0]), GREEDY[0]),
                                score_positions(ref, GREEDY[1])])
    side = fake_side([scores(logits_for(GREEDY[0]), GREEDY[0]), score_positions(got, GREEDY[1])])
    result, failures = check_file("m-f16.gguf", "f16", reference, side)
    assert failures == []  # passes
    assert not result["exact"] and result["decisive_divergences"] == 0 and result["first_divergence"] is None
    assert result["ties"] == [{"prompt": 2, "question": "q2?", "position": 2, "expected": "'t2' (id 2)",
                               "got": "'t5' (id 5)", "reference_margin": 0.0011, "reference_logprob": -1.0373,
                               "gguf_logprob_of_expected": -1.038}]
    assert result["prompts"][1]["matching_prefix"] == 2 and result["agreement"] == pytest.approx(6 / 7, abs=1e-4)


def test_a_decisive_divergence_fails_f16_and_is_reported_for_a_quantized_file() -> None:
    # the reference prefers t1 over t5 by 2.5 nats at prompt 1 position 2; the GGUF picks t5 (by 0.1 nats)
    flipped = logits_for(GREEDY[0])
    flipped[2, 5] = 3.1
    side = fake_side([scores(flipped, GREEDY[0]), scores(logits_for(GREEDY[1]), GREEDY[1])])
    result, failures = check_file("m-f16.gguf", "f16", fake_reference(), side)
    assert len(failures) == 1 and result["decisive_divergences"] == 1 and result["ties"] == []
    assert failures[0].startswith("m-f16.gguf does not reproduce the greedy tokens of the model users trained: "
                                  "prompt 1 ('q1?'), position 2: expected 't1' (id 1), got 't5' (id 5)")
    assert "margin 2.500 nats is above the tie tolerance 0.05" in failures[0]
    quantized, quantized_failures = check_file("m-q4_k_m.gguf", "q4_k_m", fake_reference(), side)
    assert quantized["decisive_divergences"] == 1 and quantized_failures == []  # reported, not a fault (ppl below)
    assert quantized["ppl_ratio"] < MAX_PPL_RATIO["q4_k_m"]


def test_a_wrong_chat_template_fails() -> None:
    side = fake_side(rendered=["<u>q1?", "<user>q2?"], rendered_ids=[PROMPTS[0], [1, 1, 3]])
    result, failures = check_file("m-f16.gguf", "f16", fake_reference(), side)
    assert result["template"] == "differs" and len(failures) == 1
    assert failures[0].startswith("m-f16.gguf: wrong chat template: llama.cpp renders the served prompt 2 "
                                  "differently from the model at character 2: expected '<u>q2?', got '<user>q2?'")
    same_text = fake_side(rendered_ids=[PROMPTS[0], [1, 4, 3]])  # same text, other ids: another tokenizer
    assert "same text but other token ids" in check_file("m.gguf", "f16", fake_reference(), same_text)[1][0]


@pytest.mark.parametrize(("changes", "says"), [
    ({"eos": 0}, "the GGUF's EOS is 0 (the model's end tokens: [2]) and it does end generation"),
    ({"end_of_turn_is_eog": False}, "it does not end generation at 't2' (id 2)"),
])
def test_a_wrong_stop_token_fails(changes: dict[str, Any], says: str) -> None:
    result, failures = check_file("m-f16.gguf", "f16", fake_reference(), fake_side(**changes))
    assert len(failures) == 1 and failures[0].startswith("m-f16.gguf: wrong stop token: ") and says in failures[0]
    assert result["exact"]  # the log-probs alone would have passed


def test_a_resized_vocabulary_fails() -> None:
    result, failures = check_file("m-f16.gguf", "f16", fake_reference(), fake_side(n_vocab=VOCAB + 1, scores=None))
    assert failures == ["m-f16.gguf: vocabulary of 7 tokens, the model users trained has 6 (a resized vocabulary: "
                        "token ids no longer mean the same tokens)"]
    assert "ppl_ratio" not in result  # the ids do not mean the same tokens: nothing is compared


def test_a_perplexity_rise_fails_above_the_levels_limit() -> None:
    # the same greedy choices everywhere, but each continuation token is less likely: margin 3.0 -> 2.2 nats
    flat = fake_side([scores(logits_for(c, margin=2.2), c) for c in GREEDY])
    result, failures = check_file("m-f16.gguf", "f16", fake_reference(), flat)
    assert result["exact"] and 1.10 < result["ppl_ratio"] < 1.50
    assert failures == [f"m-f16.gguf: perplexity of the model's own continuation {result['ppl_gguf']:.4g} vs the "
                        f"model's {result['ppl_reference']:.4g}: ratio {result['ppl_ratio']:.4g} is above 1.1 for f16"]
    assert check_file("m-q4_k_m.gguf", "q4_k_m", fake_reference(), flat)[1] == []  # q4_k_m's own, looser limit
    flatter = fake_side([scores(logits_for(c, margin=1.6), c) for c in GREEDY])
    assert "above 1.5 for q4_k_m" in check_file("m-q4_k_m.gguf", "q4_k_m", fake_reference(), flatter)[1][0]


def test_check_gguf_files_runs_each_file_at_its_level_and_the_held_out_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import medtune.export.checks as checks
    import medtune.export.gguf as gguf

    flipped = logits_for(GREEDY[0])
    flipped[2, 5] = 3.1
    sides = {"m-f16.gguf": fake_side(),
             "m-q4_k_m.gguf": fake_side([scores(flipped, GREEDY[0]), scores(logits_for(GREEDY[1]), GREEDY[1])])}
    monkeypatch.setattr(checks, "gguf_side", lambda file, reference: sides[file.name])
    monkeypatch.setattr(gguf, "perplexity_llamacpp", lambda file, scored: {"m-f16.gguf": 4.0}.get(file.name, 4.4))
    files = [Path("m-f16.gguf"), Path("m-q4_k_m.gguf")]
    report = check_gguf_files(fake_reference(), files)
    quant = report["files"]["m-q4_k_m.gguf"]
    assert report["passed"] and report["tie_margin"] == TIE_MARGIN
    assert quant["level"] == "q4_k_m" and quant["ppl_increase"] == pytest.approx(0.1) and not quant["exact"]
    assert report["files"]["m-f16.gguf"]["level"] == "f16" and report["files"]["m-f16.gguf"]["perplexity"] == 4.0
    assert check_gguf_files(fake_reference(), files, max_ppl_increase=0.15)["passed"]
    failed = check_gguf_files(fake_reference(), files, max_ppl_increase=0.05)
    assert not failed["passed"] and "m-q4_k_m.gguf" in failed["failures"][0] and "+10.0%" in failed["failures"][0]
    # the same quantized file in the f16 slot fails on its decisive divergence
    sides["m-f16.gguf"] = sides["m-q4_k_m.gguf"]
    assert "does not reproduce the greedy tokens" in check_gguf_files(fake_reference(), files)["failures"][0]


def test_the_cli_prints_ties_as_ties(capsys: pytest.CaptureFixture[str]) -> None:
    from medtune.cli.export import print_checks

    tie = {"prompt": 2, "question": "q2?", "position": 2, "expected": "' in' (id 281)", "got": "'-' (id 29)",
           "reference_margin": 0.0011, "reference_logprob": -1.0373, "gguf_logprob_of_expected": -1.038}
    print_checks({"reference": "model, float32, cpu", "n_prompts": 4, "n_tokens": 32, "tie_margin": 0.05,
                  "held_out": {"answers": 4}, "failures": [],
                  "files": {"m-f16.gguf": {"template": "identical", "exact": False, "decisive_divergences": 0,
                                           "mean_abs_delta_logprob": 0.0021, "ppl_ratio": 1.002,
                                           "max_ppl_ratio": 1.1, "agreement": 0.99, "ties": [tie],
                                           "perplexity": 5.1}}})
    out = " ".join(capsys.readouterr().out.split())
    assert "m-f16.gguf: template identical, mean |delta log-prob| 0.0021, continuation perplexity x1.002" in out
    assert "greedy agreement 99% (0 changed beyond the tie tolerance, 1 tie(s))" in out
    assert "tie (not a fault): prompt 2, position 2: expected ' in' (id 281), got '-' (id 29); the model's own " \
           "margin 0.0011 nats <= 0.05" in out


def test_a_failed_export_is_not_served(tmp_path: Path) -> None:
    from medtune.errors import UserError
    from medtune.export.checks import ExportCheckError
    from medtune.inference.llamacpp_backend import find_gguf
    from medtune.serve.engine import serve_command

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
    assert f16["template"] == "identical" and f16["stop"]["eos"] == 2 and f16["n_vocab"] == 49152
    assert f16["exact"] and f16["decisive_divergences"] == 0 and f16["positions"] == 32
    assert f16["mean_abs_delta_logprob"] < 0.02 and abs(f16["ppl_ratio"] - 1) < 0.02  # f16 only rounds the weights
    assert 0.5 < q4["ppl_ratio"] <= q4["max_ppl_ratio"] == 1.5 and q4["mean_abs_delta_logprob"] > f16["mean_abs_delta_logprob"]
    assert all(row["matching_prefix"] == 16 for row in f16["prompts"])
    assert verify["held_out"]["source"].endswith("prepared/test.jsonl") and verify["held_out"]["answers"] == 2
    assert f16["perplexity"] > 1 and q4["perplexity"] > 1 and "ppl_increase" in q4
    assert json.loads((tmp_path / "out" / "export.json").read_text())["gguf"].endswith("q4_k_m.gguf")
    # the same files under a limit just below the measured change fail
    files = [tmp_path / "out" / "smol-run-f16.gguf", tmp_path / "out" / "smol-run-q4_k_m.gguf"]
    reference = load_reference(smol_run, True, ["What are the symptoms of type 2 diabetes?"], 8, 2)
    strict = check_gguf_files(reference, files, max_ppl_increase=q4["ppl_increase"] - 1e-3)
    assert not strict["passed"] and "--max-ppl-increase" in strict["failures"][0]


def set_gguf_metadata(gguf_file: Path, key: str, edit: Any) -> None:
    """Plant a fault in place: ``edit(value part)`` changes one metadata field (same size)."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_file, "r+")
    field = reader.get_field(key)
    assert field is not None, key
    edit(field.parts[field.data[0]])
    reader.data.flush()


def replace_bytes(old: bytes, new: bytes) -> Any:
    """An edit that replaces ``old`` by ``new`` (same length) in a string field."""
    assert len(old) == len(new)

    def edit(part: np.ndarray) -> None:
        data = part.tobytes()
        assert old in data
        part[:] = np.frombuffer(data.replace(old, new, 1), dtype=part.dtype)
    return edit


@pytest.mark.slow
@needs_llama_cpp
def test_faults_planted_in_a_real_smollm2_gguf_fail_the_checks(smol_run: Path, tmp_path: Path) -> None:
    import shutil

    from medtune.export.checks import load_reference
    from medtune.export.pipeline import export_model

    report = export_model(str(smol_run), quant="f16", out_dir=tmp_path / "out", verify=False)
    good = Path(report["gguf"])
    reference = load_reference(smol_run, True, ["What are the symptoms of type 2 diabetes?"], 12, 1)
    assert check_gguf_files(reference, [good])["passed"]

    def planted(name: str, key: str, edit: Any) -> list[str]:
        bad = tmp_path / f"{name}-f16.gguf"
        shutil.copy(good, bad)
        set_gguf_metadata(bad, key, edit)
        return check_gguf_files(reference, [bad])["failures"]

    # the template renders each role line with a space where the model was trained on a newline
    template = planted("template", "tokenizer.chat_template", replace_bytes(b"message['role'] + '\n'",
                                                                          b"message['role'] + ' '"))
    assert len(template) == 1 and template[0].startswith("template-f16.gguf: wrong chat template: llama.cpp renders "
                                                         "the served prompt 1 differently from the model")
    # EOS <|endoftext|> (0) instead of <|im_end|> (2)
    def to_zero(part: np.ndarray) -> None:
        part[0] = 0

    stop = planted("stop", "tokenizer.ggml.eos_token_id", to_zero)
    assert len(stop) == 1 and stop[0].startswith("stop-f16.gguf: wrong stop token: the GGUF's EOS is 0")


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
    error = " ".join(capsys.readouterr().err.split())
    assert "export check failed: adapter-f16.gguf does not reproduce the greedy tokens" in error
    exported = json.loads((out / "export.json").read_text())
    assert not exported["verify"]["passed"] and "gguf" not in exported
    assert "prompt 1 ('What are the symptoms of type 2 diabetes?'), position 0: expected '" in error
    assert exported["verify"]["files"]["adapter-f16.gguf"]["first_divergence"]["position"] == 0
    assert any("perplexity of the model's own continuation" in failure for failure in exported["verify"]["failures"])


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
