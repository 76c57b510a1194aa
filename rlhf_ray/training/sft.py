"""Supervised fine-tuning data and loss (Ray-free): prompt + gold response + EOS, the loss on the response only."""

import torch
import torch.nn.functional as F

from ..data.tokenize import EncodeStats, encode_sequence, pad_batch, render_prompt


def encode_sft(tokenizer, rows, max_len: int, max_response_len: int, use_chat_template: bool = True,
               on_overlong: str = "truncate") -> tuple[list[dict], EncodeStats]:
    """Prompt rows with a gold answer -> [{'input_ids', 'prompt_len', 'index'}], truncated (counted) as RM pairs are:
    the response to max_response_len, then the prompt from the left to fit max_len."""
    stats, out = EncodeStats(), []
    for index, row in enumerate(rows):
        prompt_text = render_prompt(tokenizer, row["prompt"], row["format"], use_chat_template)
        ids, cut = encode_sequence(tokenizer, prompt_text, row["gold"], max_len, max_response_len)
        if cut and on_overlong == "skip":
            stats.skipped[f"over-long {'+'.join(cut)}"] += 1
            continue
        for part in cut:
            stats.truncated[part] += 1
        answer = tokenizer(row["gold"], add_special_tokens=False)["input_ids"][: max_response_len - 1]
        out.append({"input_ids": ids, "prompt_len": len(ids) - len(answer) - 1, "index": index})
        stats.pairs += 1
    return out, stats


def sft_batch(examples: list[dict], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, loss_mask): loss_mask marks the response tokens (EOS included) to predict."""
    ids, mask = pad_batch([e["input_ids"] for e in examples], pad_id)
    loss_mask = torch.zeros_like(mask)
    for i, e in enumerate(examples):
        loss_mask[i, e["prompt_len"] : len(e["input_ids"])] = 1
    return ids, mask, loss_mask


def response_nll(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed next-token NLL over its masked tokens, and their count (logits at t predict token t+1)."""
    target_mask = loss_mask[:, 1:].float()
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # fp32: a bf16 log-softmax over 49k logits loses digits
    nll = -logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return (nll * target_mask).sum(-1), target_mask.sum(-1)
