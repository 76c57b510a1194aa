"""Prompt rendering (chat template or raw) and pair encoding with explicit, counted truncation."""

import json
from collections import Counter
from dataclasses import dataclass, field

import torch

from .hh_rlhf import dialogue_to_messages


def render_prompt(tokenizer, prompt: str, fmt: str, use_chat_template: bool = True) -> str:
    """The text the model sees before its response: the chat template when the tokenizer has one."""
    if not (use_chat_template and getattr(tokenizer, "chat_template", None)):
        return messages_as_text(json.loads(prompt)) if fmt == "messages" else prompt
    if fmt == "messages":
        messages = json.loads(prompt)
    else:
        messages = dialogue_to_messages(prompt) if fmt == "hh_dialogue" else [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def messages_as_text(messages: list[dict]) -> str:
    """Chat messages for a model without a chat template, in HH-RLHF's dialogue style."""
    names = {"user": "Human", "assistant": "Assistant", "system": "System"}
    return "".join(f"\n\n{names[m['role']]}: {m['content']}" for m in messages) + "\n\nAssistant:"


@dataclass
class EncodeStats:
    pairs: int = 0
    skipped: Counter = field(default_factory=Counter)
    truncated: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        parts = [f"{self.pairs} pairs encoded"]
        parts += [f"{n} truncated ({k})" for k, n in sorted(self.truncated.items())]
        parts += [f"{n} skipped ({k})" for k, n in sorted(self.skipped.items())]
        return ", ".join(parts)


def encode_sequence(tokenizer, prompt_text: str, response: str, max_len: int, max_response_len: int):
    """ids of prompt + response + EOS (every scored sequence ends in EOS), and which parts were cut."""
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    if getattr(tokenizer, "add_bos_token", False) and tokenizer.bos_token_id is not None:
        prompt_ids = [tokenizer.bos_token_id] + prompt_ids
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    cut = []
    if len(response_ids) + 1 > max_response_len:
        response_ids, cut = response_ids[: max_response_len - 1], cut + ["response"]
    response_ids = response_ids + [tokenizer.eos_token_id]
    room = max_len - len(response_ids)
    if len(prompt_ids) > room:
        prompt_ids, cut = prompt_ids[len(prompt_ids) - room :], cut + ["prompt"]  # keep the prompt's end
    return prompt_ids + response_ids, cut


def encode_pairs(tokenizer, rows, max_len: int, max_response_len: int, use_chat_template: bool = True,
                 on_overlong: str = "truncate") -> tuple[list[dict], EncodeStats]:
    """Rows with prompt/chosen/rejected/format -> [{'chosen_ids', 'rejected_ids', 'index'}], with counts."""
    stats, out = EncodeStats(), []
    for index, row in enumerate(rows):
        prompt_text = render_prompt(tokenizer, row["prompt"], row["format"], use_chat_template)
        chosen, cut_c = encode_sequence(tokenizer, prompt_text, row["chosen"], max_len, max_response_len)
        rejected, cut_r = encode_sequence(tokenizer, prompt_text, row["rejected"], max_len, max_response_len)
        cut = sorted(set(cut_c + cut_r))
        if cut and on_overlong == "skip":
            stats.skipped[f"over-long {'+'.join(cut)}"] += 1
            continue
        for part in cut:
            stats.truncated[part] += 1
        out.append({"chosen_ids": chosen, "rejected_ids": rejected, "index": index})
        stats.pairs += 1
    return out, stats


def pad_batch(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence: (input_ids, attention_mask)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask
