"""Peak memory of an actor's process, for scaling experiments (`rlhf-ray scale`)."""

import resource

import psutil


class PeakMemory:
    """Mixin: the actor's peak host memory (its own peak RSS plus the current RSS of any engine subprocesses it
    started, e.g. vLLM's engine core) and, on a GPU, the peak CUDA memory torch allocated."""

    def peak_memory(self) -> dict[str, float]:
        import torch

        host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        host += sum(c.memory_info().rss for c in psutil.Process().children(recursive=True))
        out = {"host_gib": host / 2**30}
        if torch.cuda.is_available():
            out["gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
        return out
