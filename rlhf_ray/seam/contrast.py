"""SEAM-Contrast worse answers: the gold answers of the nearest *other* prompts (ALGORITHMS.md §3.1, §6.5).

Prompts are embedded with the all-MiniLM-L6-v2 sentence encoder (mean pooling over tokens, L2-normalised, as its
sentence-transformers config says), neighbours are ranked by cosine similarity with plain torch top-k, and those at
or above `max_cosine` (the prompt itself, near-duplicates) are skipped; where fewer than k remain, the plain nearest
others fill up, as the paper's code does. An answer equal to the prompt's own gold answer is never returned.
"""

from pathlib import Path

import torch

ENCODER = "all-minilm-l6-v2"


@torch.no_grad()
def embed(texts: list[str], encoder_dir: str | Path, batch_size: int = 64, max_len: int = 256) -> torch.Tensor:
    """[N, d] unit vectors: the encoder's mean-pooled last hidden states."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder_dir, local_files_only=True)
    model = AutoModel.from_pretrained(encoder_dir, local_files_only=True).eval()
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_len,
                        return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1))
    return torch.cat(out) if out else torch.empty(0, 0)


def nearest_others(emb: torch.Tensor, k: int, max_cosine: float = 0.9, block: int = 1024) -> list[list[int]]:
    """For each row, up to k other rows by descending cosine: first those below max_cosine, then (fallback) the
    nearest of the rest. Rows are processed in blocks so memory stays [block, N]."""
    n = len(emb)
    out = []
    for start in range(0, n, block):
        sims = emb[start:start + block] @ emb.T
        rows = torch.arange(start, min(start + block, n))
        sims[torch.arange(len(rows)), rows] = -torch.inf  # never the prompt itself
        order = sims.argsort(dim=1, descending=True, stable=True)[:, : n - 1]  # the prompt itself (-inf) is last
        ranked = sims.gather(1, order)
        for r in range(len(rows)):
            below = ranked[r] < max_cosine
            out.append(torch.cat([order[r][below], order[r][~below]])[:k].tolist())
    return out


def contrast_answers(prompts: list[str], golds: list[str], k: int, encoder_dir: str | Path,
                     max_cosine: float = 0.9) -> list[list[str]]:
    """k worse answers per prompt: the gold answers of its nearest other prompts, skipping any equal to its own gold
    answer (so a prompt may get fewer than k when the set is small)."""
    if len(prompts) != len(golds):
        raise ValueError(f"{len(prompts)} prompts but {len(golds)} gold answers")
    emb = embed(prompts, encoder_dir)
    # Ask for a few more neighbours than k, since answers equal to the prompt's own gold are skipped.
    neighbours = nearest_others(emb, min(len(prompts) - 1, 2 * k), max_cosine) if len(prompts) > 1 else [[]]
    return [[golds[j] for j in near if golds[j].strip() != gold.strip()][:k] for near, gold in zip(neighbours, golds)]
