"""Host memory that a process has freed but glibc still holds: handed back to the OS after each heavy actor call.

glibc's malloc keeps freed heap pages for reuse, so a training step's transient tensors (activations, a weight
blob) leave an actor GBs larger while it idles, memory that the other actors on the node cannot use. Measured on a
SmolLM2-135M training loop (fwd/bwd, AdamW): 3.56 GB resident after a step, 2.13 GB with malloc_trim after it.
"""

import ctypes
import functools


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc; elsewhere there is nothing to trim
    except (OSError, AttributeError):
        return None


def trim_host_memory() -> None:
    """Return free heap memory to the OS (a no-op where libc has no malloc_trim)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def trims_host_memory(method):
    """Decorator for an actor method that allocates much and frees it: trim when it returns (or raises)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        finally:
            trim_host_memory()

    return wrapper
