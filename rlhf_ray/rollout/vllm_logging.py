"""vLLM's console kept to what a user can act on: its INFO lines off by default (VLLM_LOGGING_LEVEL, the user's value
wins), and the warnings it prints on every CPU start about settings this project chose on purpose left out.

The filters sit on the loggers that emit those warnings: vLLM rebuilds its handlers (dictConfig) when an engine
starts, which would drop a filter on a handler. Any other vLLM warning still reaches the console, and the engine's
whole log is there with VLLM_LOGGING_LEVEL=INFO (or DEBUG).
"""

import logging
import os
import warnings

# logger -> (message part, why it is expected here)
EXPECTED_WARNINGS = {
    "vllm.model_executor.model_loader.reload.layerwise": [
        ("RotaryEmbedding: Failed to load weights", "a rotary cos/sin cache is computed, never loaded: vLLM puts it "
                                                    "back at every weight sync"),
    ],
    "vllm.triton_utils.importing": [("doesn't include CPU backend", "vLLM's CPU build runs without Triton")],
    "vllm.platforms.cpu": [
        ("Triton is not installed", "the same"),
        ("Reset SSM cache type", "no state-space layers in these models"),
    ],
    "vllm.config.vllm": [
        ("Model Runner V2 requires Triton", "the same: vLLM takes its V1 runner"),
        ("Enforce eager set", "eager on CPU: compiling costs more than it saves (VLLMEngine)"),
        ("Inductor compilation was disabled", "the same"),
    ],
    "vllm.v1.worker.cpu_worker": [
        ("is not found in LD_PRELOAD", "tcmalloc/iomp are speed hints for vLLM's own server, not installed by pip"),
        ("torch.set_num_threads` after the thread binding", "threads come from resources.threads; said at every call"),
    ],
    "vllm.utils.torch_utils": [("is set; leaving Torch threads", "OMP_NUM_THREADS is resources.threads, on purpose")],
    "vllm.engine.arg_utils": [
        ("officially support disabling chunked prefill", "chunked prefill is off on CPU for seeded sampling"),
        ("The global random seed is set to", "every request carries its own seed (rollout seeds)"),
    ],
}


class ExpectedWarnings(logging.Filter):
    def __init__(self, parts: list[str]):
        super().__init__()
        self.parts = parts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(part in message for part in self.parts)


def quiet_vllm_logs() -> None:
    """Before vLLM is imported (some of these warn on import): its INFO level off unless the user set one, and a
    filter on each logger above, once per process."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.reduce_op.*", category=FutureWarning)
    for name, expected in EXPECTED_WARNINGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExpectedWarnings) for f in logger.filters):
            logger.addFilter(ExpectedWarnings([part for part, _ in expected]))
