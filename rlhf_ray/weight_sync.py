"""Moving policy weights from the learner to rollout engines; for now a byte codec (a collective transport comes later)."""

import torch
from safetensors.torch import load, save


def pack_state_dict(state_dict: dict[str, torch.Tensor]) -> bytes:
    """safetensors bytes: survives pickling through Ray and vLLM's collective_rpc, which turns tensors into lists."""
    tensors, seen = {}, set()
    for name, t in state_dict.items():
        t = t.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        # Tied weights (lm_head = embeddings) share storage, which safetensors refuses: copy the second one.
        tensors[name] = t.clone() if ptr in seen else t
        seen.add(ptr)
    return save(tensors)


def unpack_state_dict(blob: bytes) -> dict[str, torch.Tensor]:
    return load(blob)
