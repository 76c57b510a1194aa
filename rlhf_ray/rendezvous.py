"""Rendezvous stores that listen on one address. torch's TCPStore master listens on every interface unless it is
handed a socket, so rank 0 opens one bound to its node's address (loopback on a local run) and the store serves on it.
"""

import socket
from datetime import timedelta

import torch.distributed as dist

_held: dict[int, socket.socket] = {}  # port -> listening socket, until this process's store() takes it


def open_port(host: str) -> int:
    """A port listening on `host` only, held by this process for its rank-0 store()."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    _held[port] = sock
    return port


def tcp_store(host: str, port: int, rank: int, world_size: int, timeout: timedelta) -> dist.TCPStore:
    """A group's store: rank 0 serves it on the socket open_port(host) left here, the other ranks connect to it. A
    port this process did not open (rank 0 given an outside address) is listened on where torch listens."""
    sock = _held.pop(port, None) if rank == 0 else None
    if sock is None:
        return dist.TCPStore(host, port, world_size, is_master=rank == 0, timeout=timeout)
    # detach(): the store owns the descriptor from now on; the socket object must not close it when collected.
    return dist.TCPStore(host, port, world_size, is_master=True, timeout=timeout, master_listen_fd=sock.detach())
