"""The PPO learner alone on one device: tokens/s and MFU of its experience and update for a 135M and a ~1B model.

    python bench/gpu_learner.py [--models smollm2-135m,llama-1b] [--batch 8] [--prompt-len 384] [--response-len 128]

torch + transformers + this project's Ray-free core only (no Ray, vLLM or DeepSpeed), so it runs on any single GPU.
Random weights of each model's shape (throughput does not depend on the values): a policy, a frozen reference and a
critic (the policy's backbone with a scalar head, as rlhf_ray's critic). Per micro-batch it does what a learner rank
does: the experience forwards (policy and reference log-probs, critic values; rlhf_ray.ppo.batch) and the PPO update
(rlhf_ray.ppo.update's actor and critic losses, backward, fused AdamW over fp32 master weights) under bf16 autocast
where the device computes bf16 natively (rlhf_ray.device). MFU = model FLOPs (bench/flops.py) / time / the device's
measured dense matmul peak in that dtype. On a CPU it runs too (`--models tiny`), to check the script.
Writes gpu_learner.json and gpu_learner.md into --out.
"""

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from flops import ModelFlops, learner_flops, matmul_gflops

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Llama-shaped configs: SmolLM2-135M's own, TinyLlama-1.1B's (a ~1B Llama), and a tiny one to check the script.
SHAPES = {
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
    "llama-1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                     num_key_value_heads=4, vocab_size=32000, tie_word_embeddings=False),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True),
}


def build(shape: dict, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    from rlhf_ray.models import as_value_model

    config = LlamaConfig(max_position_embeddings=4096, pad_token_id=0, num_labels=1, **shape)
    torch.manual_seed(0)
    policy = LlamaForCausalLM(config).to(device)
    reference = LlamaForCausalLM(config).to(device).eval().requires_grad_(False)
    critic = as_value_model(LlamaForSequenceClassification(config).to(device))
    return config, policy, reference, critic


def batch(b: int, prompt: int, response: int, vocab: int, device: str) -> dict[str, torch.Tensor]:
    """b full-length rows: every token real, the last `response` of them actions (no padding: FLOPs = work)."""
    length = prompt + response
    ids = torch.randint(1, vocab, (b, length), device=device)
    act = torch.zeros(b, length - 1, dtype=torch.long, device=device)
    act[:, prompt - 1:] = 1
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "action_mask": act}


def optimizer_step(model, optimizer, loss) -> None:
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as the learner's grad_clip
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure(name: str, args, device: str, precision: str) -> dict:
    from rlhf_ray.config import LearnerConfig, PPOConfig
    from rlhf_ray.device import autocast
    from rlhf_ray.ppo.batch import sequence_logprobs
    from rlhf_ray.ppo.update import actor_loss, critic_loss

    config, policy, reference, critic = build(SHAPES[name], device)
    popt = torch.optim.AdamW(policy.parameters(), lr=1e-6, fused=True)
    copt = torch.optim.AdamW(critic.parameters(), lr=1e-6, fused=True)
    ppo, learner = PPOConfig(), LearnerConfig()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = {"experience": [], "learn": []}
    for step in range(args.steps + 1):  # step 0 warms up kernels and the allocator
        mb = batch(args.batch, args.prompt_len, args.response_len, config.vocab_size, device)
        sync()
        t0 = time.perf_counter()
        with torch.no_grad(), autocast(precision):
            old = sequence_logprobs(policy, mb["input_ids"], mb["attention_mask"], action_mask=mb["action_mask"])
            sequence_logprobs(reference, mb["input_ids"], mb["attention_mask"], action_mask=mb["action_mask"])
            values = critic(mb["input_ids"], mb["attention_mask"])[:, :-1]
        sync()
        t1 = time.perf_counter()
        mb |= {"old_logprobs": old.float(), "old_values": values.float(),
               "advantages": torch.randn_like(old, dtype=torch.float32),
               "returns": torch.randn_like(old, dtype=torch.float32)}
        with autocast(precision):
            loss = actor_loss(policy, mb, ppo, learner)[0]
        optimizer_step(policy, popt, loss)
        with autocast(precision):
            loss = critic_loss(critic, mb, ppo)[0]
        optimizer_step(critic, copt, loss)
        sync()
        t2 = time.perf_counter()
        if step:
            times["experience"].append(t1 - t0)
            times["learn"].append(t2 - t1)
        print(f"gpu_learner: {name} step {step}: experience {t1 - t0:.3f} s, learn {t2 - t1:.3f} s", flush=True)
    tokens = args.batch * (args.prompt_len + args.response_len)
    flops = learner_flops(ModelFlops(config.to_dict()), tokens, args.batch * args.response_len, args.batch, 1)
    out = {"model": name, "parameters_m": sum(p.numel() for p in policy.parameters()) / 1e6,
           "tokens_per_step": tokens}
    for phase in ("experience", "learn"):
        seconds = statistics.median(times[phase])
        out[phase] = {"s": seconds, "tokens_per_s": tokens / seconds, "tflops": flops[phase] / seconds / 1e12}
    both = out["experience"]["s"] + out["learn"]["s"]
    out["step"] = {"s": both, "tokens_per_s": tokens / both,
                   "tflops": (flops["experience"] + flops["learn"]) / both / 1e12}
    out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    del policy, reference, critic, popt, copt
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="smollm2-135m,llama-1b", help=f"comma-separated, of {', '.join(SHAPES)}")
    p.add_argument("--batch", type=int, default=8, help="sequences per micro-batch (one optimizer step)")
    p.add_argument("--prompt-len", type=int, default=384)
    p.add_argument("--response-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    p.add_argument("--precision", default="auto", help="auto | bf16 | none, as model.mixed_precision")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args()
    models = args.models.split(",")
    unknown = [m for m in models if m not in SHAPES]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {list(SHAPES)}")

    from rlhf_ray.device import accelerator, resolve_precision

    device = accelerator()
    precision = resolve_precision(args.precision)
    print(f"gpu_learner: {device}, {precision.reason}", flush=True)
    dtype = torch.bfloat16 if precision.mode == "bf16" else torch.float32
    peak = matmul_gflops(dtype, n=8192 if device == "cuda" else 1024, seconds=2.0, device=device) / 1e3
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    print(f"gpu_learner: {name}: measured dense {dtype} matmul peak {peak:.1f} TFLOP/s", flush=True)
    rows = [measure(m, args, device, precision.mode) for m in models]
    for r in rows:
        for phase in ("experience", "learn", "step"):
            r[phase]["mfu"] = r[phase]["tflops"] / peak
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": name, "precision": precision.mode,
              "matmul_peak_tflops": peak, "batch": args.batch, "prompt_len": args.prompt_len,
              "response_len": args.response_len, "torch": torch.__version__, "models": rows}
    lines = [f"# PPO learner on one device ({result['date']})", "",
             f"{name}; {'bf16 autocast' if precision.mode == 'bf16' else 'fp32'}; measured matmul peak {peak:.1f} "
             f"TFLOP/s; micro-batch {args.batch} x ({args.prompt_len} prompt + {args.response_len} response) tokens; "
             f"policy + reference + critic; median of {args.steps} steps.", "",
             "| model | params (M) | experience tokens/s | learn tokens/s | learn MFU | step tokens/s | step MFU | "
             "peak GiB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mem = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "-"
        lines.append(f"| {r['model']} | {r['parameters_m']:.0f} | {r['experience']['tokens_per_s']:.0f} | "
                     f"{r['learn']['tokens_per_s']:.0f} | {100 * r['learn']['mfu']:.0f} % | "
                     f"{r['step']['tokens_per_s']:.0f} | {100 * r['step']['mfu']:.0f} % | {mem} |")
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_learner.md").write_text(text)
    (args.out / "gpu_learner.json").write_text(json.dumps(result, indent=1))
    print(text)


if __name__ == "__main__":
    main()
