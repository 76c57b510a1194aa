"""Token batches for PPO: prompt + response sequences, their masks, and log-probs under a causal LM."""

import torch

from ..algorithms import entropy_from_logits, logprobs_from_logits


def make_sequences(prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int):
    """Right-padded [prompt + response] rows.

    Returns input_ids [B, L], attention_mask [B, L] and action_mask [B, L-1], where action_mask[b, t] = 1
    when token t+1 is a response token (the position whose log-prob PPO optimises).
    """
    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    empty = [i for i, r in enumerate(response_ids) if not r]
    if empty:
        raise ValueError(f"empty responses at rows {empty}")
    width = max(len(p) + len(r) for p, r in zip(prompt_ids, response_ids))
    batch = len(prompt_ids)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    action_mask = torch.zeros((batch, width - 1), dtype=torch.long)
    for b, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        n = len(p) + len(r)
        input_ids[b, :n] = torch.tensor(p + r)
        attention_mask[b, :n] = 1
        action_mask[b, len(p) - 1 : n - 1] = 1
    return input_ids, attention_mask, action_mask


def action_values(values: list[list[float]], action_mask: torch.Tensor) -> torch.Tensor:
    """Per-response-token values (e.g. the rollout engine's log-probs) placed at their action positions: [B, L-1],
    0 elsewhere. Row b's list must hold one value per action position of row b."""
    out = torch.zeros(action_mask.shape, dtype=torch.float32)
    for b, row in enumerate(values):
        positions = action_mask[b].nonzero().flatten()
        if len(positions) != len(row):
            raise ValueError(f"row {b}: {len(row)} values for {len(positions)} response tokens")
        out[b, positions] = torch.tensor(row, dtype=torch.float32)
    return out


def sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, temperature: float = 1.0,
                      with_entropy: bool = False, entropy_grad: bool = True, action_mask: torch.Tensor | None = None):
    """log p(token t+1 | tokens <= t) for t in [0, L-1): [B, L-1] (and the entropy per position).

    With action_mask, the LM head and log-softmax run only from the batch's first action position on (positions
    before it hold 0): the prompt's [B, L, vocab] logits are most of the cost and no loss reads them.
    entropy_grad=False computes the entropy outside autograd: a statistic then costs no [B, L, vocab] graph memory.
    """
    width = input_ids.shape[1]
    first = 0
    if action_mask is not None and action_mask.any():
        first = int(action_mask.any(0).nonzero()[0])
    # logits_to_keep=k: the head runs on the last k positions only (L - first of them; the last is dropped below).
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=width - first).logits[:, :-1]
    if temperature != 1.0:
        logits = logits / temperature
    logprobs = _left_pad(logprobs_from_logits(logits, input_ids[:, first + 1 :]), first)
    if not with_entropy:
        return logprobs
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        entropy = entropy_from_logits(logits if entropy_grad else logits.detach())
    return logprobs, _left_pad(entropy, first)


def _left_pad(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (n, 0)) if n else x


def trim_padding(mb: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cut the right padding every row shares: [B, L] tensors to the longest row, [B, L-1] ones to one less.

    A micro-batch of short rows then costs what its rows need, not what the longest row of the iteration needs.
    """
    full = mb["attention_mask"].shape[1]
    width = max(int(mb["attention_mask"].sum(1).max()), 2)
    return {k: v if v.dim() < 2 else v[:, :width] if v.shape[1] == full else v[:, : width - 1] for k, v in mb.items()}

