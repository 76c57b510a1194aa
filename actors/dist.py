"""What every DeepSpeed actor group needs: start-up around a rendezvous on rank 0, and ZeRO-3 gathers."""

import os
import warnings
from contextlib import contextmanager
from datetime import timedelta

import ray

from rlhf_ray.config import ResourceSpec
from rlhf_ray.device import dist_backend
from rlhf_ray.rendezvous import open_port, tcp_store

from .group import ActorGroup


def node_address() -> tuple[str, int]:
    """This node's Ray address (127.0.0.1 on a local run) and a port listening there only, for this actor to host a
    process group's store as its rank 0."""
    ip = ray.util.get_node_ip_address()
    return ip, open_port(ip)


def init_process_group(addr: str, port: int, rank: int, world_size: int) -> None:
    """One DeepSpeed job over Ray actors: gloo on CPU, NCCL on GPU (rlhf_ray.device)."""
    import deepspeed
    import torch.distributed as dist

    # DeepSpeed's ZeRO gathers call a torch collective that torch renamed: a deprecation notice at every start.
    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.* is deprecated", category=FutureWarning)

    os.environ.update(MASTER_ADDR=addr, MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK="0")
    # Our store, on the port rank 0 holds (DeepSpeed's env:// rendezvous would listen on every interface); DeepSpeed
    # then adopts the initialised group. 30 minutes: torch's and DeepSpeed's default.
    timeout = timedelta(minutes=30)
    dist.init_process_group(dist_backend(), rank=rank, world_size=world_size, timeout=timeout,
                            store=tcp_store(addr, port, rank, world_size, timeout))
    if dist_backend() == "gloo":
        # Only DeepSpeed's inference all-reduce uses its CPU shm op, and its JIT build takes minutes on 2 cores, again
        # whenever another ninja last touched the shared torch_extensions folder: never build it for training.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend=dist_backend(), auto_mpi_discovery=False)


def start_deepspeed_group(actor_cls, n: int, resources: ResourceSpec, *setup_args, name: str, **group_kwargs) -> ActorGroup:
    """n actors calling setup(addr, port, n, *setup_args) around rank 0's address; a failed setup frees the group
    (its placement group would otherwise keep the GPUs reserved)."""
    group = ActorGroup(actor_cls, n, resources, name=name, **group_kwargs)
    try:
        addr, port = ray.get(group.actors[0].master_address.remote())
        group.run("setup", addr, port, n, *setup_args)
    except BaseException:
        group.kill()
        raise
    return group


@contextmanager
def gathered(module, zero_stage: int):
    """The module's full parameters on every rank for the duration (a collective under ZeRO-3; else a no-op)."""
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(module.parameters()), enabled=zero_stage == 3):
        yield


@contextmanager
def gathered_param(param, zero_stage: int):
    """One parameter whole on every rank, rank 0's in-place changes kept (a collective under ZeRO-3; else a no-op)."""
    import deepspeed

    with deepspeed.zero.GatheredParameters([param], modifier_rank=0, enabled=zero_stage == 3):
        yield
