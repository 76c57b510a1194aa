"""The rollout engine on vLLM: batched sampling with the sampled tokens' log-probs, and live weight updates."""

import os
from pathlib import Path

import torch

from ..device import accelerator
from ..weight_codec import pack_state_dict
from .types import Rollouts, SamplingParams
from .vllm_logging import quiet_vllm_logs

EXTENSION = "rlhf_ray.rollout.worker_extension.WeightSyncExtension"


def import_vllm():
    """Import vLLM lazily (importing rlhf_ray stays light), after the env defaults it reads, or say what to do."""
    # In-process engine core: ~3 s start instead of ~22 s, and no __main__ guard needed. setdefault: env wins.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    quiet_vllm_logs()
    try:
        import vllm
    except (ImportError, RuntimeError, OSError) as err:  # e.g. a CUDA torchvision beside CPU torch
        raise ImportError(
            f"rollout engine 'vllm' needs the vllm package, which cannot be imported ({err}). "
            "Install the `cpu` or `gpu` extra, or use rollout engine 'hf' (slow fallback)."
        ) from err
    return vllm


def kv_cache_bytes(kv_cache_gib: float | None) -> int | None:
    """A fixed KV cache size. CPU needs one (else vLLM refuses to start); on GPU None = gpu_memory_utilization."""
    if kv_cache_gib is None and accelerator() == "cpu":
        kv_cache_gib = 1
    return None if kv_cache_gib is None else int(kv_cache_gib * 2**30)


def to_vllm_sampling(sampling: SamplingParams, seed: int | None):
    from vllm import SamplingParams as VSamplingParams

    return VSamplingParams(
        n=sampling.n,
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k if sampling.top_k > 0 else 0,  # vLLM: 0 = off
        repetition_penalty=sampling.repetition_penalty,
        seed=seed,
        logprobs=0,  # 0 top alternatives: vLLM still returns the sampled token's log-prob
        skip_special_tokens=True,
    )


class VLLMEngine:
    """A vLLM LLM in this process. Log-probs are vLLM's default 'raw_logprobs': log_softmax of the model's
    logits before temperature, penalties, top-k/top-p (i.e. the policy at temperature 1)."""

    def __init__(
        self,
        model_dir: str | Path,
        dtype: str = "float32",
        max_model_len: int = 1024,
        seed: int = 0,
        kv_cache_gib: float | None = None,
        enforce_eager: bool | None = None,
        gpu_memory_utilization: float = 0.5,
        **llm_kwargs,
    ):
        vllm = import_vllm()
        # vLLM rewinds a seeded request's generator after a partial (chunked) prefill, which CPU generators cannot
        # do ("CPU Generator does not use offset"): on CPU a prompt is prefilled whole.
        if accelerator() == "cpu":
            llm_kwargs.setdefault("enable_chunked_prefill", False)
            llm_kwargs.setdefault("max_num_batched_tokens", max(max_model_len, 4096))  # a whole prompt fits a step
        # VLLM_CPU_KVCACHE_SPACE (whole GiB), when set, overrides kv_cache_memory_bytes on CPU.
        self.llm = vllm.LLM(
            model=str(model_dir),
            dtype=dtype,
            max_model_len=max_model_len,
            seed=seed,
            # None: eager on CPU (compiling costs more than it saves), CUDA graphs on GPU.
            enforce_eager=accelerator() == "cpu" if enforce_eager is None else enforce_eager,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_memory_bytes=kv_cache_bytes(kv_cache_gib),
            distributed_executor_backend="uni",
            worker_extension_cls=EXTENSION,
            use_tqdm_on_load=False,  # a bar per load, one log line per update in a Ray actor
            **llm_kwargs,
        )

    def generate(self, prompt_ids: list[list[int]], sampling: SamplingParams,
                 prompt_seeds: list[int] | None = None) -> Rollouts:
        """n samples per prompt; prompt_seeds (one per prompt) make a prompt's samples independent of its batch."""
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids]
        # vLLM seeds sample j of a request with seed + j; give each prompt its own range, or prompts share streams.
        if prompt_seeds is not None and len(prompt_seeds) != len(prompts):
            raise ValueError(f"{len(prompt_seeds)} prompt seeds for {len(prompts)} prompts")
        seeds = prompt_seeds if prompt_seeds is not None else [
            None if sampling.seed is None else sampling.seed + i * sampling.n for i in range(len(prompts))]
        params = [to_vllm_sampling(sampling, seed) for seed in seeds]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        rollouts = Rollouts()
        # vLLM returns outputs in input order; each holds its n completions.
        for index, (prompt, request) in enumerate(zip(prompt_ids, outputs)):
            for completion in request.outputs:
                tokens = list(completion.token_ids)
                logprobs = [step[token].logprob for token, step in zip(tokens, completion.logprobs)]
                # "stop" (EOS) or "length" (max_tokens), as vLLM names them.
                rollouts.append(index, prompt, tokens, logprobs, completion.text, completion.finish_reason)
        return rollouts

    def answer_logprobs(self, prompt_ids: list[list[int]], answer_ids: list[list[int]]) -> list[list[float]]:
        """Teacher-forced log-probs (temperature 1) of each answer's tokens after its prompt: one prefill per pair
        (vLLM does not read the prefix cache for requests that return prompt log-probs)."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        params = VSamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0, detokenize=False)
        rows = [i for i, a in enumerate(answer_ids) if a]  # an empty answer has no tokens to score
        requests = [TokensPrompt(prompt_token_ids=list(prompt_ids[i]) + list(answer_ids[i])) for i in rows]
        out: list[list[float]] = [[] for _ in answer_ids]
        for i, request in zip(rows, self.llm.generate(requests, params, use_tqdm=False)):
            answer = answer_ids[i]
            steps = request.prompt_logprobs[len(request.prompt_token_ids) - len(answer):]
            out[i] = [step[token].logprob for token, step in zip(answer, steps)]
        return out

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.load_weights_blob(pack_state_dict(state_dict))

    def load_weights_blob(self, blob: bytes) -> None:
        self.llm.collective_rpc("reload_from_blob", args=(blob,))
        # Cached KV blocks were computed with the old weights.
        self.llm.reset_prefix_cache()

    def init_weight_group(self, addr: str, port: int, rank_offset: int, world_size: int) -> None:
        self.llm.collective_rpc("init_weight_group", args=(addr, port, rank_offset, world_size))

    def receive_weights(self, meta: list, bucket_bytes: int) -> None:
        self.llm.collective_rpc("receive_weights", args=(meta, bucket_bytes))
        self.llm.reset_prefix_cache()
