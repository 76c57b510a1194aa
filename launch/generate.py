"""`rlhf-ray generate POLICY` and `rlhf-ray chat POLICY`: sample from a policy (a run folder's latest checkpoint, a
model folder or an asset) through the rollout engine a run uses (RolloutActors), prompts rendered with the chat
template; batch mode from a prompt file to JSONL, or an interactive conversation."""

import json
import logging
from collections.abc import Callable, Iterable

from rlhf_ray.config import Config, ConfigError
from rlhf_ray.data import load_prompt_rows
from rlhf_ray.data.tokenize import render_prompt
from rlhf_ray.models import load_tokenizer
from rlhf_ray.progress import Progress
from rlhf_ray.rollout.types import concat

from .cluster import init_ray
from .evaluate import policy_dir, rollout_group
from .trainer import encode_prompts, sampling_params

log = logging.getLogger("rlhf_ray.generate")


def prompt_rows(cfg: Config, prompt_file: str | None, prompts: list[str]) -> list[dict]:
    """Prompts from a file (any prompt-only format: data.prompt_paths' loader) and/or given as text."""
    rows = [{"prompt": p, "format": "plain"} for p in prompts]
    if prompt_file:
        data = cfg.data.model_copy(update={"prompt_paths": [prompt_file]})
        file_rows, (report,) = load_prompt_rows(data)
        log.info("prompts: %s", report.summary())
        rows += list(file_rows)
    if not rows:
        raise ConfigError("generate needs prompts: --prompts FILE and/or --prompt TEXT")
    return rows


def run_generate(cfg: Config, policy: str, rows: list[dict], write: Callable[[dict], None],
                 show_progress: bool = True) -> int:
    """rollout.n_samples responses to each prompt, sampled as the rollout section says (temperature 0: greedy), in
    chunks of 64 prompts; each response handed to `write` as a JSON-ready row. Returns the number written."""
    folder = policy_dir(policy)
    tok = load_tokenizer(folder)
    ids = encode_prompts(cfg, tok, rows)
    init_ray(cfg.cluster)
    group = rollout_group(cfg, folder, "generate")
    progress = Progress(len(rows), "generate", unit="prompt", logger=log, bar=show_progress)
    written = 0
    try:
        for start in range(0, len(ids), 64):
            chunk = ids[start : start + 64]
            rollouts = concat(group.run_sharded(
                "generate", chunk, rank_args=lambda rank, at=start: (sampling_params(cfg, cfg.run.seed * 100003 + rank + at),)))
            for j, (i, response) in enumerate(zip(rollouts.prompt_index, rollouts.response_ids)):
                row = rows[start + i]
                write({"prompt": row["prompt"], "format": row["format"], "sample": j % cfg.rollout.n_samples,
                       "response": tok.decode(response, skip_special_tokens=True),
                       "finish": rollouts.finish_reasons[j], "tokens": len(response)})
                written += 1
            progress.update(len(chunk))
    finally:
        group.kill()
        progress.close()
    return written


def run_chat(cfg: Config, policy: str, lines: Iterable[str], say: Callable[[str], None], system: str | None = None) -> list[dict]:
    """A conversation with the policy: each line the user's turn, the policy's answer (one sample, the rollout
    section's sampling) said back and kept in the history. '/reset' starts over, '/exit' (or the end of input) stops.
    Returns the last conversation's messages."""
    folder = policy_dir(policy)
    tok = load_tokenizer(folder)
    init_ray(cfg.cluster)
    group = rollout_group(cfg, folder, "chat", num_actors=1)
    start = [{"role": "system", "content": system}] if system else []
    messages, turn = list(start), 0
    try:
        for line in lines:
            text = line.strip()
            if text == "/exit":
                break
            if text == "/reset":
                messages = list(start)
                say("(conversation reset)")
                continue
            if not text:
                continue
            messages.append({"role": "user", "content": text})
            prompt = render_prompt(tok, json.dumps(messages), "messages", cfg.data.chat_template)
            room = cfg.rollout.max_model_len - cfg.rollout.max_new_tokens
            ids = tok(prompt, add_special_tokens=False)["input_ids"]
            if len(ids) > room:
                say(f"(the conversation has {len(ids)} tokens, more than rollout.max_model_len - max_new_tokens = "
                    f"{room}: its start is cut; /reset starts over)")
            rollouts = group.run("generate", [ids[-room:]], sampling_params(cfg, cfg.run.seed + turn, n=1))[0]
            answer = tok.decode(rollouts.response_ids[0], skip_special_tokens=True)
            messages.append({"role": "assistant", "content": answer})
            say(answer)
            turn += 1
    finally:
        group.kill()
    return messages
