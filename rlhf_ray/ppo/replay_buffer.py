"""The replay buffer: the experiences of the current PPO iteration, as row-aligned tensors.

On-policy PPO refills it every iteration; SEAM filtering drops rows before the PPO epochs; its state
goes into every checkpoint so a resumed run sees what the interrupted one last learned from.
"""

import torch


class ReplayBuffer:
    def __init__(self) -> None:
        self.data: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return next(iter(self.data.values())).shape[0] if self.data else 0

    def clear(self) -> None:
        self.data = {}

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        """Append rows; every tensor must have the same number of rows, and the same keys as what is held."""
        rows = {k: v.shape[0] for k, v in batch.items()}
        if len(set(rows.values())) > 1:
            raise ValueError(f"experience tensors disagree on the number of rows: {rows}")
        if self.data and set(batch) != set(self.data):
            raise ValueError(f"experience keys {sorted(batch)} differ from the buffer's {sorted(self.data)}")
        if not self.data:
            self.data = {k: v.detach().cpu() for k, v in batch.items()}
            return
        self.data = {k: _cat_padded(self.data[k], batch[k].detach().cpu()) for k in self.data}

    def filter(self, keep: list[int]) -> None:
        """Keep only these rows (e.g. the SEAM filter), in the given order."""
        index = torch.as_tensor(keep, dtype=torch.long)
        self.data = {k: v[index] for k, v in self.data.items()}

    def state_dict(self) -> dict:
        return {k: v.clone() for k, v in self.data.items()}

    def load_state_dict(self, state: dict) -> None:
        self.data = {k: v.clone() for k, v in state.items()}


def _cat_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-concatenate, right-padding the sequence dimension with zeros (masks stay 0 on padding)."""
    if a.dim() > 1 and a.shape[1] != b.shape[1]:
        width = max(a.shape[1], b.shape[1])
        a, b = (torch.nn.functional.pad(x, (0, width - x.shape[1])) for x in (a, b))
    return torch.cat([a, b])
