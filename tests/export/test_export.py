"""Export round trips: HF -> GGUF f16 (+ quantized) -> llama.cpp greedy answers == transformers', Modelfile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medtune.errors import UserError
from medtune.export.pipeline import export_model
from medtune.serve.engine import serve_command

pytest.importorskip("llama_cpp")


@pytest.mark.slow
def test_smollm2_export_roundtrip_with_modelfile(tmp_path: Path) -> None:
    report = export_model("smollm2-135m-instruct", quant="q4_k_m", ollama="medtune-smol", out_dir=tmp_path,
                          questions=["What are the symptoms of type 2 diabetes?"])
    f16, q4 = tmp_path / "smollm2-135m-instruct-f16.gguf", tmp_path / "smollm2-135m-instruct-q4_k_m.gguf"
    assert f16.is_file() and q4.is_file() and q4.stat().st_size < f16.stat().st_size
    check = report["verify"]["files"][f16.name]
    assert report["verify"]["passed"] and check["exact"], check["prompts"]  # 32 greedy tokens as transformers'
    assert all(row["matching_prefix"] == 32 for row in check["prompts"])
    assert report["verify"]["reference"].startswith("model, float32")
    assert 0.0 <= report["verify"]["files"][q4.name]["agreement"] <= 1.0
    modelfile = (tmp_path / "Modelfile").read_text()
    assert f"FROM {q4.resolve()}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert report["ollama"]["command"] == f"ollama create medtune-smol -f {tmp_path / 'Modelfile'}"
    assert json.loads((tmp_path / "export.json").read_text())["gguf"] == str(q4)
    # serve picks the exported GGUF recorded in export.json
    assert str(q4) in serve_command(str(tmp_path), engine="llamacpp")


@pytest.mark.slow
def test_adapter_folder_is_merged_before_conversion(tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from medtune.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(0)
    base_dir = tmp_path / "base"
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    base = LlamaForCausalLM.from_pretrained(base_dir)  # records base_model_name_or_path in the adapter
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)  # a non-trivial adapter
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    # a random 64-wide model has near-ties that f16 rounding flips: the greedy check is for real models
    report = export_model(str(adapter_dir), quant="f16", out_dir=tmp_path / "out", verify=False)
    merged = Path(report["hf_dir"])
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    assert json.loads((merged / "merge.json").read_text())["max_abs_logit_diff"] < 1e-4  # a float32 merge
    assert Path(report["gguf"]).is_file() and "verify" not in report


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(UserError, match="--quant"):
        export_model("smollm2-135m-instruct", quant="q3")
    with pytest.raises(UserError, match="--format"):
        export_model("smollm2-135m-instruct", fmt="onnx")


def test_serve_command_for_a_gguf_alias() -> None:
    command = serve_command("smollm2-135m-instruct", "127.0.0.1", 8123, engine="llamacpp")
    assert command[1:3] == ["-m", "llama_cpp.server"]
    assert command[command.index("--model") + 1].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert command[command.index("--port") + 1] == "8123" and "127.0.0.1" in command
    with pytest.raises(UserError, match="vllm"):
        serve_command("smollm2-135m-instruct", engine="vllm")
