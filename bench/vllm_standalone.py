"""A standalone vLLM engine on the benchmark's prompts: the rollout speed that the RolloutActor is held to.

    python bench/vllm_standalone.py --policy DIR --prompts prompts.jsonl --n 4 --max-tokens 48 --batch 4 --out out.json

vllm.LLM directly, with the engine arguments a RolloutActor passes on this device (dtype, max_model_len, the KV cache,
eager mode and whole-prompt prefill on CPU), plain sampling (no log-probs, one SamplingParams): `--batch` prompts per
generate call, as a PPO iteration sends them; the first call is warm-up. Prints and writes generated tokens/s.
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the RolloutActor's in-process engine core


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    p.add_argument("--calls", type=int, default=4, help="timed generate calls after the warm-up call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out")
    args = p.parse_args()

    import torch
    import vllm
    from vllm.inputs import TokensPrompt

    cpu = not torch.cuda.is_available()
    extra = {"enable_chunked_prefill": False, "max_num_batched_tokens": max(args.max_model_len, 4096)} if cpu else {}
    llm = vllm.LLM(model=args.policy, dtype=args.dtype, max_model_len=args.max_model_len, seed=args.seed,
                   enforce_eager=cpu, kv_cache_memory_bytes=int(args.kv_cache_gib * 2**30),
                   distributed_executor_backend="uni", **extra)
    rows = [json.loads(line)["input_ids"] for line in open(args.prompts) if line.strip()]
    sampling = vllm.SamplingParams(n=args.n, max_tokens=args.max_tokens, temperature=args.temperature,
                                   top_p=args.top_p, seed=args.seed)
    rates, tokens_per_call = [], []
    for call in range(args.calls + 1):
        start = (call * args.batch) % len(rows)
        batch = [TokensPrompt(prompt_token_ids=rows[(start + i) % len(rows)]) for i in range(args.batch)]
        t0 = time.perf_counter()
        out = llm.generate(batch, sampling, use_tqdm=False)
        seconds = time.perf_counter() - t0
        tokens = sum(len(c.token_ids) for r in out for c in r.outputs)
        if call:  # the first call compiles and warms the caches
            rates.append(tokens / seconds)
            tokens_per_call.append(tokens)
    result = {"tokens_per_s": statistics.median(rates), "tokens_per_s_calls": rates,
              "tokens_per_call": tokens_per_call, "vllm": vllm.__version__, "dtype": args.dtype,
              "threads": torch.get_num_threads()}
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
