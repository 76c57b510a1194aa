"""The weight codecs (core layer): a safetensors byte blob (object-store transport) and a bucketed broadcast over a
standalone torch.distributed group (collective transport: gloo on CPU, NCCL on GPU). actors/weight_sync.py moves them."""

from datetime import timedelta

import torch
import torch.distributed as dist
from safetensors.torch import load, save

from .device import accelerator
from .rendezvous import tcp_store


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


# ---------------------------------------------------------------- collective transport
WeightMeta = list[tuple[str, tuple[int, ...], str]]  # (name, shape, dtype name), in broadcast order


def weight_metadata(state_dict: dict[str, torch.Tensor]) -> WeightMeta:
    return [(name, tuple(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in state_dict.items()]


def make_weight_group(addr: str, port: int, rank: int, world_size: int, timeout_s: float = 300.0):
    """A process group of {learner rank 0} + every rollout worker, outside any default group either side has.

    Built from a TCPStore so neither DeepSpeed's nor vLLM's own torch.distributed world is touched.
    """
    store = tcp_store(addr, port, rank, world_size, timedelta(seconds=timeout_s))
    prefix = dist.PrefixStore("rlhf_ray_weights", store)
    if accelerator() == "cuda":
        return dist.ProcessGroupNCCL(prefix, rank, world_size)
    return dist.ProcessGroupGloo(prefix, rank, world_size, timedelta(seconds=timeout_s))


def buckets(meta: WeightMeta, bucket_bytes: int) -> list[list[int]]:
    """Consecutive same-dtype parameters, at most bucket_bytes each (one oversized tensor is its own bucket)."""
    out, current, size, dtype = [], [], 0, None
    for i, (_, shape, dt) in enumerate(meta):
        nbytes = torch.Size(shape).numel() * torch.empty(0, dtype=getattr(torch, dt)).element_size()
        if current and (dt != dtype or size + nbytes > bucket_bytes):
            out.append(current)
            current, size = [], 0
        current.append(i)
        size += nbytes
        dtype = dt
    if current:
        out.append(current)
    return out


def broadcast_state_dict(group, state_dict: dict[str, torch.Tensor], bucket_bytes: int) -> None:
    """Sender (rank 0): flatten each bucket into one tensor and broadcast it."""
    meta = weight_metadata(state_dict)
    tensors = list(state_dict.values())
    device = torch.device(accelerator())
    for bucket in buckets(meta, bucket_bytes):
        flat = torch.cat([tensors[i].detach().reshape(-1) for i in bucket]).to(device)
        group.broadcast(flat, 0).wait()


def receive_state_dict(group, meta: WeightMeta, bucket_bytes: int) -> dict[str, torch.Tensor]:
    """Receiver: the same buckets in the same order, split back into named tensors."""
    out = {}
    device = torch.device(accelerator())
    for bucket in buckets(meta, bucket_bytes):
        sizes = [torch.Size(meta[i][1]).numel() for i in bucket]
        flat = torch.empty(sum(sizes), dtype=getattr(torch, meta[bucket[0]][2]), device=device)
        group.broadcast(flat, 0).wait()
        for i, part in zip(bucket, flat.split(sizes)):
            out[meta[i][0]] = part.view(meta[i][1])
    return out
