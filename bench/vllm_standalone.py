"""Rollout speed: a standalone vLLM engine against the RolloutActor, on the same prompts, sampling and batch.

    python bench/vllm_standalone.py --engine vllm  --policy DIR --prompts prompts.jsonl --out vllm.json
    python bench/vllm_standalone.py --engine actor --policy DIR --prompts prompts.jsonl --out actor.json

`vllm`: vllm.LLM in this process, with the engine arguments a RolloutActor passes on this device (dtype, max_model_len,
the KV cache, eager mode and whole-prompt prefill on CPU). `actor`: a RolloutActor in a local Ray (loopback), timed
from the driver around `generate.remote`, as the trainer's rollout phase sees it. Both send the same requests (prompt
i's samples seeded seed + i*n, the sampled tokens' log-probs), so with the same weights they generate the same tokens:
the output's `tokens_sha` shows it and the two runs do equal work. `--batch` prompts per call, as a PPO iteration
sends them; the first call is warm-up. Prints and writes generated tokens/s.
"""

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the RolloutActor's in-process engine core
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def standalone(args):
    """A generate(prompts) -> token lists function on vllm.LLM, requests built as VLLMEngine builds them."""
    import torch
    import vllm
    from vllm.inputs import TokensPrompt

    cpu = not torch.cuda.is_available()
    extra = {"enable_chunked_prefill": False, "max_num_batched_tokens": max(args.max_model_len, 4096)} if cpu else {}
    llm = vllm.LLM(model=args.policy, dtype=args.dtype, max_model_len=args.max_model_len, seed=args.seed,
                   enforce_eager=cpu, kv_cache_memory_bytes=int(args.kv_cache_gib * 2**30),
                   distributed_executor_backend="uni", **extra)

    def generate(prompts, seed):
        params = [vllm.SamplingParams(n=args.n, max_tokens=args.max_tokens, temperature=args.temperature,
                                      top_p=args.top_p, seed=seed + i * args.n, logprobs=0, skip_special_tokens=True)
                  for i in range(len(prompts))]
        out = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        return [list(c.token_ids) for r in out for c in r.outputs]

    return generate, {"vllm": vllm.__version__, "threads": torch.get_num_threads()}


def actor(args):
    """The same function through a RolloutActor (1 CPU reserved, --threads torch threads, as the quickstart's)."""
    import ray

    from actors.group import ActorGroup
    from actors.rollout import RolloutActor
    from launch.cluster import init_ray
    from rlhf_ray.config import ClusterConfig, ResourceSpec
    from rlhf_ray.rollout.types import SamplingParams

    init_ray(ClusterConfig(num_cpus=4))
    group = ActorGroup(RolloutActor, 1, ResourceSpec(num_cpus=1, threads=args.threads), args.policy, name="rollout",
                       engine="vllm", dtype=args.dtype, max_model_len=args.max_model_len,
                       kv_cache_gib=args.kv_cache_gib, seed=args.seed)
    rollout = group.actors[0]

    def generate(prompts, seed):
        sampling = SamplingParams(n=args.n, max_tokens=args.max_tokens, temperature=args.temperature,
                                  top_p=args.top_p, seed=seed)
        return ray.get(rollout.generate.remote(prompts, sampling)).response_ids

    return generate, {"ray": ray.__version__, "threads": args.threads}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=("vllm", "actor"), default="vllm")
    p.add_argument("--policy", required=True)
    p.add_argument("--prompts", required=True, help="JSONL rows with input_ids (the tokens the RolloutActor gets)")
    p.add_argument("--n", type=int, default=4, help="samples per prompt")
    p.add_argument("--batch", type=int, default=4, help="prompts per generate call")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--max-model-len", type=int, default=256)
    p.add_argument("--kv-cache-gib", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2, help="the actor's torch threads (--engine actor)")
    p.add_argument("--calls", type=int, default=4, help="timed generate calls after the warm-up call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out")
    args = p.parse_args()

    generate, versions = (standalone if args.engine == "vllm" else actor)(args)
    rows = [json.loads(line)["input_ids"] for line in open(args.prompts) if line.strip()]
    rates, tokens_per_call, digest = [], [], hashlib.sha256()
    for call in range(args.calls + 1):
        start = (call * args.batch) % len(rows)
        batch = [rows[(start + i) % len(rows)] for i in range(args.batch)]
        t0 = time.perf_counter()
        responses = generate(batch, args.seed + 1000 * call)
        seconds = time.perf_counter() - t0
        tokens = sum(map(len, responses))
        if call:  # the first call compiles and warms the caches
            rates.append(tokens / seconds)
            tokens_per_call.append(tokens)
            digest.update(json.dumps(responses).encode())
    result = {"engine": args.engine, "tokens_per_s": statistics.median(rates), "tokens_per_s_calls": rates,
              "tokens_per_call": tokens_per_call, "tokens_sha": digest.hexdigest()[:16], "dtype": args.dtype} | versions
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
