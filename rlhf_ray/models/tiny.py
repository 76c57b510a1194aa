"""Tiny Llama-family models with a tokenizer trained here, for tests: no download, built in about a second."""

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "<|im_end|>", "unk_token": "<unk>"}
# ChatML, as SmolLM2-Instruct uses: the assistant turn ends with the EOS token.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def default_corpus(rows: int = 400) -> list[str]:
    """Text of the shipped HH-RLHF rows: enough to learn a small English byte-level BPE."""
    from ..config import DataConfig
    from ..data import load_pairs

    pairs, _ = load_pairs(DataConfig(source="hh_rlhf"))
    pairs = pairs.select(range(min(rows, len(pairs))))
    return [p + c + r for p, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])]


def build_tiny_tokenizer(vocab_size: int = 512, corpus: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Byte-level BPE (every string encodes, nothing is unknown) with ChatML specials and a chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = list(SPECIAL.values()) + ["<|im_start|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus if corpus is not None else default_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL, additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(
    dest: str | Path,
    *,
    vocab_size: int = 512,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 256,
    max_positions: int = 1024,
    seed: int = 0,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> Path:
    """Save a random-weight Llama and its tokenizer as a normal HF directory (head dim 64: vLLM CPU needs it)."""
    dest = Path(dest)
    tokenizer = tokenizer or build_tiny_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest
