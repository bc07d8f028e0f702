"""Tiny random-weight models with the study's real tokenizer layouts, built locally (no hub download).

Used by the tests (the pad token, the GGUF round trip) and by ``bench/gpu_smoke.py --model llama3-tiny``.

Two vocabularies, the same special tokens and chat template:

- ``vocab="small"``: a byte-level BPE of a few hundred tokens trained on a few sentences, with the special tokens
  of Llama-3, Llama-3.1 or Mistral v0.2 after it. Fast (under a second), enough for the pad-token logic and for
  training, but llama.cpp's converter refuses it: ``convert_hf_to_gguf.py`` recognises a BPE tokenizer by the
  hash of its token ids for a fixed test text, and no small vocabulary reproduces Llama-3's ("BPE pre-tokenizer
  was not recognized").
- ``vocab="meta"``: Meta's own 128,000 Llama-3 BPE ranks (``tokenizer.model`` of Meta's ``llama-models`` package,
  the file Llama-3 and 3.1 ship as ``original/tokenizer.model``) turned into a ``tokenizer.json`` by transformers'
  ``TikTokenConverter``, with Llama-3's pre-tokenizer regex and its 256 special tokens: 128,256 ids, token for
  token Meta-Llama-3-8B-Instruct's, so llama.cpp converts it as ``llama-bpe`` like the real model. It needs the
  file: ``pip install --no-deps llama-models==0.3.0`` (a 6.6 MB wheel; only its ``tokenizer.model`` is read,
  the package is never imported) or ``MEDTUNE_LLAMA3_TOKENIZER_MODEL=/path/to/tokenizer.model``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Meta-Llama-3-8B-Instruct's chat template (no system-prompt default, BOS before the first message).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
#: Mistral-7B-Instruct-v0.2's chat template.
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


def reserved(numbers: range) -> list[str]:
    """Llama-3's reserved special tokens with these numbers."""
    return [f"<|reserved_special_token_{i}|>" for i in numbers]


#: The special tokens in id order after the regular vocabulary, as Meta's tokenizer.py lays them out (ids
#: 128000-128255 in the real tokenizers).
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", *reserved(range(0, 4)), "<|start_header_id|>",
                   "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>", *reserved(range(5, 251))]
LLAMA31_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", *reserved(range(0, 2)), "<|finetune_right_pad_id|>",
                    "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
                    "<|eot_id|>", "<|python_tag|>", *reserved(range(3, 248))]
#: Llama-3-style chat tokens and nothing unused: no pad candidate at all.
BARE_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
LAYOUTS = {"llama3": LLAMA3_SPECIALS, "llama31": LLAMA31_SPECIALS, "bare": BARE_SPECIALS}

#: What the small BPE is trained on when no texts are given.
DEFAULT_TEXTS = [
    "What is hypertension? Hypertension is persistently high blood pressure in the arteries.",
    "What causes influenza? Influenza is caused by influenza viruses that infect the airways.",
    "How is anemia treated? Treatment depends on the cause, for example iron supplements.",
    "What are symptoms of asthma? Wheezing, shortness of breath, chest tightness and coughing.",
]
META_LLAMA3_PACKAGE = "llama_models"
META_LLAMA3_HINT = ("pip install --no-deps llama-models==0.3.0 (Meta's package; only its llama3/tokenizer.model is "
                    "read), or set MEDTUNE_LLAMA3_TOKENIZER_MODEL to a Llama-3 original/tokenizer.model")


def meta_llama3_ranks_file() -> Path | None:
    """Meta's Llama-3 ``tokenizer.model`` (tiktoken BPE ranks) when it is on this machine, else None.

    ``MEDTUNE_LLAMA3_TOKENIZER_MODEL`` first, then ``llama_models/llama3/tokenizer.model`` of an installed
    ``llama-models`` (located without importing it: installed with ``--no-deps`` it would not import).
    """
    from medtune.models import _package_dir

    named = os.environ.get("MEDTUNE_LLAMA3_TOKENIZER_MODEL")
    if named:
        return Path(named) if Path(named).is_file() else None
    folder = _package_dir(META_LLAMA3_PACKAGE)
    found = folder / "llama3" / "tokenizer.model" if folder is not None else None
    return found if found is not None and found.is_file() else None


def _meta_llama3_tokenizer(specials: list[str]) -> Any:
    """A ``tokenizers.Tokenizer`` over Meta's Llama-3 ranks: Llama-3's regex, byte-level BPE, BOS prepended."""
    from tokenizers import AddedToken, processors
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks_file = meta_llama3_ranks_file()
    if ranks_file is None:
        raise FileNotFoundError(f"the Llama-3 vocabulary (vocab='meta') is not on this machine: {META_LLAMA3_HINT}")

    class MetaRanks(TikTokenConverter):  # type: ignore[misc]
        """Reads the ranks file itself (the format is one 'base64-token rank' line each), so tiktoken is not needed."""

        @staticmethod
        def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
            lines = Path(tiktoken_url).read_text().split()
            return {base64.b64decode(token): int(rank) for token, rank in zip(lines[::2], lines[1::2], strict=True)}

    # the default pattern of TikTokenConverter is Llama-3's pat_str (llama_models/llama3/tokenizer.py); the special
    # tokens are added here, as converted() would, since its keyword for them changed across transformers versions
    tokenizer = MetaRanks(str(ranks_file)).converted()
    base = tokenizer.get_vocab_size()
    tokenizer.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in specials])
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    assert bos == base == 128000, f"{ranks_file}: {base} ranks, not Llama-3's 128,000"
    # as Meta-Llama-3's tokenizer.json: ByteLevel offsets, then <|begin_of_text|> before every sequence
    tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    return tokenizer


def _small_bpe(texts: Sequence[str], initial: list[str]) -> Any:
    """A byte-level BPE of at most 400 tokens trained on ``texts`` (``initial`` special tokens get ids 0, 1, ...)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=initial)
    tokenizer.train_from_iterator(list(texts), trainer)
    return tokenizer


def build_tokenizer(layout: str = "llama3", vocab: str = "small", texts: Sequence[str] | None = None) -> Any:
    """A fast tokenizer with ``layout``'s special tokens and chat template, and no pad token (as shipped).

    Args:
        layout: ``llama3`` (Meta-Llama-3: reserved tokens, no ``<|finetune_right_pad_id|>``), ``llama31``,
            ``bare`` (Llama-3's chat tokens only) or ``mistral`` (v0.2: ``<unk>`` ``<s>`` ``</s>`` = 0, 1, 2).
        vocab: ``small`` (a BPE trained on ``texts``) or ``meta`` (Meta's 128,000 Llama-3 ranks; not for mistral).
        texts: what the small BPE is trained on (default :data:`DEFAULT_TEXTS`).

    Raises:
        FileNotFoundError: ``vocab="meta"`` without Meta's ranks file (see :func:`meta_llama3_ranks_file`).
    """
    from transformers import PreTrainedTokenizerFast

    if vocab not in ("small", "meta"):
        raise ValueError(f"vocab={vocab!r}: small or meta")
    if layout == "mistral":
        if vocab == "meta":
            raise ValueError("vocab='meta' is Llama-3's; mistral has the small vocabulary only")
        tokenizer = _small_bpe(texts or DEFAULT_TEXTS, ["<unk>", "<s>", "</s>"])
        assert [tokenizer.token_to_id(t) for t in ("<unk>", "<s>", "</s>")] == [0, 1, 2]
        tokenizer.add_special_tokens(["<unk>", "<s>", "</s>"])
        return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                       unk_token="<unk>", chat_template=MISTRAL_TEMPLATE)
    specials = LAYOUTS[layout]
    if vocab == "meta":
        tokenizer = _meta_llama3_tokenizer(specials)
    else:
        tokenizer = _small_bpe(texts or DEFAULT_TEXTS, [])
        tokenizer.add_special_tokens(specials)
    # Meta-Llama-3-8B-Instruct's tokenizer_config: BOS <|begin_of_text|>, EOS <|eot_id|> (the end of a turn)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   chat_template=LLAMA3_TEMPLATE)


def save_tiny_llama3(out: Path, layout: str = "llama3", vocab: str = "small", texts: Sequence[str] | None = None,
                     seed: int = 0) -> Path:
    """A tiny random model with Llama-3-8B's architecture, and ``layout``'s tokenizer, saved as an HF folder.

    2 layers, hidden 64, 4 query heads sharing 1 key/value head (Llama-3-8B's 32:8 grouping), MLP 3.5x hidden,
    RoPE theta 500,000, RMSNorm eps 1e-5, untied input and output embeddings, vocabulary = the tokenizer's, bf16
    weights, the tokenizer saved without a pad token (as Meta ships it). A folder that already holds a
    ``config.json`` is returned as it is.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if (out / "config.json").is_file():
        return out
    tokenizer = build_tokenizer(layout, vocab, texts)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=224, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=8192,
                         rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                         tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).bfloat16()  # Meta ships bf16 weights
    end_of_text = tokenizer.convert_tokens_to_ids("<|end_of_text|>") if layout != "mistral" else None
    stops = [end_of_text, tokenizer.eos_token_id] if end_of_text is not None else tokenizer.eos_token_id
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=stops)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
