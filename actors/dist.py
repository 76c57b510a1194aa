"""What every DeepSpeed actor group needs: a rendezvous address on rank 0 and the process-group init."""

import os
import socket

import ray

from rlhf_ray.device import dist_backend


def node_address() -> tuple[str, int]:
    """This node's IP and a free port, for rank 0 to host the process group."""
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    return ray.util.get_node_ip_address(), port


def init_process_group(addr: str, port: int, rank: int, world_size: int) -> None:
    """One DeepSpeed job over Ray actors: gloo on CPU, NCCL on GPU (rlhf_ray.device)."""
    import deepspeed

    os.environ.update(MASTER_ADDR=addr, MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK="0")
    deepspeed.init_distributed(dist_backend=dist_backend(), auto_mpi_discovery=False)
