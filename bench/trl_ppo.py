"""TRL's PPO trainer on the benchmark's workload: U updates, each timed, written as JSON. Runs in TRL's own venv.

    <trl venv>/bin/python bench/trl_ppo.py --policy DIR --reward DIR --prompts rows.jsonl --batch 16 --mini-batch 4 \
        --response-length 48 --ppo-epochs 1 --updates 4 --out trl.json

TRL removed its PPOTrainer after 1.12.0 (1.13 to 1.16 ship none); this needs trl==1.12.0, where it lives in
trl.experimental.ppo. The prompts come as token ids (the harness renders them as rlhf_ray does), one row per
sequence: TRL's PPO draws one response per prompt. The settings map onto PPOConfig as:
  --batch N        sequences per update = per_device_train_batch_size x gradient_accumulation_steps
  --mini-batch M   sequences per optimizer step: per_device_train_batch_size M, num_mini_batches N/M
  --updates U      total_episodes U x N (one trainer step is one update: generate, score, PPO epochs)
Traps handled here: TRL defaults to bf16 (on only with --bf16, which the harness passes where rlhf_ray's learner runs bf16
autocast: fp32 master weights in both, each system's own mixed-precision path); its
accelerator accumulates gradients over N/M mini-batches so the optimizer would not step once per mini-batch (reset to
1; huggingface/trl#5645); SmolLM2's pad token is its EOS, which TRL masks out of attention everywhere (pad with
<|endoftext|> instead); queries must be left-padded; responses stop at EOS (stop_token="eos"); its data loader
shuffles (replaced by one in file order, so that update k takes rlhf_ray's iteration-k prompts).
"""

import argparse
import json
import os
import platform
import statistics
import time

for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", required=True)
    p.add_argument("--reward", required=True, help="a scalar AutoModelForSequenceClassification folder; also the "
                   "value model's start")
    p.add_argument("--prompts", required=True, help="JSONL rows with input_ids, one per sequence")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--mini-batch", type=int, default=4)
    p.add_argument("--response-length", type=int, default=48)
    p.add_argument("--ppo-epochs", type=int, default=1)
    p.add_argument("--updates", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--kl-coef", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=2e-6)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true", help="TRL's bf16 mixed precision (fp32 weights, bf16 autocast)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if a.batch % a.mini_batch:
        p.error("--batch must be a multiple of --mini-batch")

    import torch
    import transformers
    import trl
    from datasets import Dataset
    from torch.utils.data import DataLoader
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        TrainerCallback,
    )

    try:
        import trl.experimental.ppo.ppo_trainer as ppo_module
        from trl.experimental.ppo import PPOConfig, PPOTrainer
    except ImportError as err:
        raise SystemExit(f"trl {trl.__version__} has no PPOTrainer ({err}): install trl==1.12.0") from err
    torch.set_num_threads(a.threads)
    transformers.set_seed(a.seed)

    tok = AutoTokenizer.from_pretrained(a.policy, padding_side="left")
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        tok.pad_token = "<|endoftext|>" if "<|endoftext|>" in tok.get_vocab() else tok.unk_token
    rows = [json.loads(line)["input_ids"] for line in open(a.prompts) if line.strip()]
    if len(rows) < a.batch * a.updates:
        raise SystemExit(f"{a.prompts}: {len(rows)} rows, {a.updates} updates of {a.batch} need {a.batch * a.updates}")
    dataset = Dataset.from_dict({"input_ids": rows[: a.batch * a.updates]})

    fp32 = {"dtype": torch.float32}
    policy = AutoModelForCausalLM.from_pretrained(a.policy, **fp32)
    ref = AutoModelForCausalLM.from_pretrained(a.policy, **fp32)
    reward = AutoModelForSequenceClassification.from_pretrained(a.reward, num_labels=1, **fp32)
    value = AutoModelForSequenceClassification.from_pretrained(a.reward, num_labels=1, **fp32)
    for model in (policy, ref, reward, value):
        model.config.pad_token_id = tok.pad_token_id
    policy.generation_config.pad_token_id = tok.pad_token_id

    steps = a.batch // a.mini_batch
    cfg = PPOConfig(
        output_dir=os.path.join(os.path.dirname(os.path.abspath(a.out)), "trl_output"), use_cpu=True, bf16=a.bf16,
        fp16=False, per_device_train_batch_size=a.mini_batch, gradient_accumulation_steps=steps,
        num_mini_batches=steps, num_ppo_epochs=a.ppo_epochs, total_episodes=a.updates * a.batch,
        response_length=a.response_length, local_rollout_forward_batch_size=a.batch, temperature=a.temperature,
        stop_token="eos", kl_coef=a.kl_coef, learning_rate=a.lr, lr_scheduler_type="constant",
        num_sample_generations=0, eval_strategy="no", save_strategy="no", report_to="none", logging_steps=1,
        disable_tqdm=True, seed=a.seed, data_seed=a.seed)

    # TRL's phases, from the module globals its train() looks up: rollout = batch_generation (its log-probs come from
    # the generation's logits); experience = the no-grad forward (reference) and get_reward calls (value, reward);
    # learn = the rest of the update (PPO epochs: forward, backward, optimizer steps).
    phase = {"rollout": 0.0, "experience": 0.0}

    def timed(fn, name=None):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            key = name or ("experience" if not torch.is_grad_enabled() else None)
            if key:
                phase[key] += time.perf_counter() - t0
            return out
        return wrapper

    ppo_module.batch_generation = timed(ppo_module.batch_generation, "rollout")
    ppo_module.forward = timed(ppo_module.forward)
    ppo_module.get_reward = timed(ppo_module.get_reward)

    class UpdateTimer(TrainerCallback):
        def __init__(self):
            self.update_s, self.phases, self.t0 = [], [], None

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            self.update_s.append(now - self.t0)
            self.phases.append(dict(phase, learn=now - self.t0 - phase["rollout"] - phase["experience"]))
            phase.update(rollout=0.0, experience=0.0)
            self.t0 = now
            print(f"trl_ppo: update {state.global_step}: {self.update_s[-1]:.1f} s", flush=True)

    timer = UpdateTimer()
    trainer = PPOTrainer(args=cfg, processing_class=tok, model=policy, ref_model=ref, reward_model=reward,
                         value_model=value, train_dataset=dataset, callbacks=[timer])
    trainer.accelerator.gradient_accumulation_steps = 1  # one optimizer step per mini-batch, as configured
    # Rows in file order, so update k takes the prompts of rlhf_ray's iteration k (TRL's loader shuffles them).
    trainer.dataloader = trainer.accelerator.prepare(DataLoader(
        trainer.train_dataset, batch_size=trainer.local_dataloader_batch_size, shuffle=False,
        collate_fn=trainer.data_collator, drop_last=True))
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    optimizer_steps, step = [0], optimizer.step

    def counted_step(*args, **kwargs):
        optimizer_steps[0] += 1
        return step(*args, **kwargs)

    optimizer.step = counted_step
    trainer.train()
    expected = a.updates * steps * a.ppo_epochs
    if optimizer_steps[0] != expected:
        raise SystemExit(f"TRL took {optimizer_steps[0]} optimizer steps, expected {expected}")
    steady = timer.phases[1:] or timer.phases  # the first update is warm-up, as in the harness
    result = {"update_s": timer.update_s, "phase_s": {k: statistics.median(p[k] for p in steady) for k in steady[0]},
              "phase_s_per_update": timer.phases,
              "optimizer_steps": optimizer_steps[0], "precision": "bf16" if a.bf16 else "fp32",
              "versions": {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
                           "python": platform.python_version(), "threads": torch.get_num_threads()}}
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
