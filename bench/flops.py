"""Model FLOPs per token of a Llama-style model and this machine's measured matmul rate, shared by the benchmarks.

FLOPs count real tokens only (padding is waste, not work): per token a forward costs 2 x the linear weights, plus
2 x hidden x vocab for an LM head, plus causal attention 2 x layers x heads x head_dim x (sequence length); a
backward costs twice the forward.
"""

import json
import time
from pathlib import Path

import torch


def matmul_gflops(dtype: torch.dtype, threads: int | None = None, n: int = 1024, seconds: float = 1.0,
                  device: str = "cpu") -> float:
    """Square n x n matmuls for about `seconds` after one warm-up (an emulated bf16 one can take seconds alone).
    threads: torch's CPU threads (None: leave them); on a GPU use n = 8192 or so to reach its dense peak."""
    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    sync()
    repeats, t0 = 0, time.perf_counter()
    while not repeats or time.perf_counter() - t0 < seconds:
        a @ b
        repeats += 1
        if repeats % 10 == 0:
            sync()
    sync()
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


class ModelFlops:
    """Forward FLOPs per token of a Llama-style model from its HF config (a config.json path or its dict)."""

    def __init__(self, config: Path | dict):
        c = config if isinstance(config, dict) else json.loads(Path(config).read_text())
        d, layers, heads = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"]
        head_dim = c.get("head_dim") or d // heads
        kv = c.get("num_key_value_heads", heads)
        per_layer = d * heads * head_dim * 2 + d * kv * head_dim * 2 + 3 * d * c["intermediate_size"]
        self.linear = 2 * layers * per_layer
        self.lm_head = 2 * d * c["vocab_size"]
        self.attn_coef = 2 * layers * heads * head_dim

    def forward(self, tokens: float, seq_len: float, head_tokens: float = 0.0) -> float:
        """tokens through the body, head_tokens of them through the LM head as well."""
        return tokens * (self.linear + self.attn_coef * seq_len) + head_tokens * self.lm_head


def learner_flops(model: ModelFlops, tokens: float, generated: float, sequences: int, epochs: int,
                  critic: bool = True) -> dict[str, float]:
    """Model FLOPs of one PPO iteration's experience and learn phases: `tokens` real tokens in `sequences` rows,
    `generated` of them response tokens (log-probs need the LM head on responses only); the critic shares the
    policy's backbone. experience: policy + reference forward (+ critic); learn: epochs x forward + backward."""
    length = tokens / sequences
    lm = model.forward(tokens, length, head_tokens=generated)
    value = model.forward(tokens, length) if critic else 0.0
    return {"experience": 2 * lm + value, "learn": epochs * 3 * (lm + value)}
