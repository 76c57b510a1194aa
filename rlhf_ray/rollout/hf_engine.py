"""The fallback rollout engine on transformers `generate`: slow, but needs nothing beyond torch + transformers."""

from dataclasses import replace
from pathlib import Path

import torch
from transformers import GenerationConfig

from ..device import torch_device
from ..models import load_policy, load_tokenizer
from ..weight_codec import make_weight_group, receive_state_dict, unpack_state_dict
from .types import Rollouts, SamplingParams


def eos_ids(model, tokenizer) -> set[int]:
    """Every id that ends a response: the tokenizer's EOS and the model's generation_config EOS id(s)."""
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    return ids | {tokenizer.eos_token_id}


def left_pad(prompt_ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompt_ids)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompt_ids])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
    return ids, mask


def cut_at_eos(tokens: list[int], logprobs: list[float], eos: set[int]) -> tuple[list[int], list[float], str]:
    """Keep tokens up to and including the first EOS, as vLLM does; HF pads finished rows after it."""
    for i, token in enumerate(tokens):
        if token in eos:
            return tokens[: i + 1], logprobs[: i + 1], "stop"
    return tokens, logprobs, "length"


class HFEngine:
    """Same interface as VLLMEngine. Log-probs match vLLM's default 'raw_logprobs': log_softmax of the raw
    logits (before temperature, penalties, top-k/top-p), i.e. the policy at temperature 1."""

    # **_vllm_only: max_model_len, kv_cache_gib, ... are accepted and ignored so one config drives either engine.
    def __init__(self, model_dir: str | Path, dtype: str = "float32", seed: int = 0, **_vllm_only):
        self.device = torch_device()
        self.model = load_policy(model_dir, dtype).to(self.device).eval()
        self.tokenizer = load_tokenizer(model_dir, padding_side="left")
        self.eos = eos_ids(self.model, self.tokenizer)
        # Per-call seeds come from here when a call gives none: new samples every call, reproducible per run.
        self.rng = torch.Generator().manual_seed(seed)

    def generation_config(self, sampling: SamplingParams) -> GenerationConfig:
        sample = {} if sampling.greedy else {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": max(sampling.top_k, 0),  # 0 = off (HF would otherwise default to 50)
        }
        return GenerationConfig(
            max_new_tokens=sampling.max_tokens,
            do_sample=not sampling.greedy,
            repetition_penalty=sampling.repetition_penalty,
            eos_token_id=sorted(self.eos),
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,  # raw logits, before any processor: the same thing vLLM's log-probs use
            **sample,
        )

    def generate(self, prompt_ids: list[list[int]], sampling: SamplingParams,
                 prompt_seeds: list[int] | None = None) -> Rollouts:
        """n samples per prompt; with prompt_seeds (one per prompt) each prompt is sampled alone under its seed."""
        if prompt_seeds is None:
            return self._generate(prompt_ids, sampling)
        if len(prompt_seeds) != len(prompt_ids):
            raise ValueError(f"{len(prompt_seeds)} prompt seeds for {len(prompt_ids)} prompts")
        out = Rollouts()
        for index, (prompt, seed) in enumerate(zip(prompt_ids, prompt_seeds)):
            part = self._generate([prompt], replace(sampling, seed=seed))
            for j in range(len(part)):
                out.append(index, prompt, part.response_ids[j], part.response_logprobs[j], part.texts[j],
                           part.finish_reasons[j])
        return out

    @torch.no_grad()
    def _generate(self, prompt_ids: list[list[int]], sampling: SamplingParams) -> Rollouts:
        # Each prompt n times in a row (HF refuses num_return_sequences > 1 when greedy; vLLM allows it).
        rows = [p for p in prompt_ids for _ in range(sampling.n)]
        ids, mask = left_pad(rows, self.tokenizer.pad_token_id)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            seed = sampling.seed if sampling.seed is not None else int(torch.randint(2**62, (1,), generator=self.rng))
            torch.manual_seed(seed)  # HF samples from the global RNG; fork_rng keeps that change local
            out = self.model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                generation_config=self.generation_config(sampling),
            )
        tokens = out.sequences[:, ids.shape[1]:]
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1)
        logprobs = logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        rollouts = Rollouts()
        for row in range(tokens.shape[0]):
            index = row // sampling.n
            response, lps, reason = cut_at_eos(tokens[row].tolist(), logprobs[row].tolist(), self.eos)
            text = self.tokenizer.decode(response, skip_special_tokens=True)
            rollouts.append(index, prompt_ids[index], response, lps, text, reason)
        return rollouts

    @torch.no_grad()
    def answer_logprobs(self, prompt_ids: list[list[int]], answer_ids: list[list[int]],
                        batch_size: int = 16) -> list[list[float]]:
        """Teacher-forced log-probs (temperature 1) of each answer's tokens after its prompt."""
        from ..ppo.batch import make_sequences, sequence_logprobs

        out: list[list[float]] = [[] for _ in answer_ids]
        rows = [i for i, a in enumerate(answer_ids) if a]  # an empty answer has no tokens to score
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            ids, attn, act = make_sequences([prompt_ids[i] for i in chunk], [answer_ids[i] for i in chunk],
                                            self.tokenizer.pad_token_id)
            lp = sequence_logprobs(self.model, ids.to(self.device), attn.to(self.device), action_mask=act)
            for row, i in enumerate(chunk):
                out[i] = lp[row][act[row].bool()].tolist()
        return out

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state_dict)

    def load_weights_blob(self, blob: bytes) -> None:
        self.load_weights(unpack_state_dict(blob))

    def init_weight_group(self, addr: str, port: int, rank_offset: int, world_size: int) -> None:
        self._weight_group = make_weight_group(addr, port, rank_offset, world_size)

    def receive_weights(self, meta: list, bucket_bytes: int) -> None:
        self.load_weights(receive_state_dict(self._weight_group, meta, bucket_bytes))
