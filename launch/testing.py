"""Hooks that let tests stop a production run at a known point; inert unless their environment variable is set."""

import logging
import os
import time

log = logging.getLogger("rlhf_ray.testing")

HANG_AFTER = "RLHF_RAY_TEST_HANG_AFTER"


def hang_if_asked(iteration: int) -> None:
    """RLHF_RAY_TEST_HANG_AFTER=N: stop after iteration N's rows so a test can kill the job at a known point."""
    if os.environ.get(HANG_AFTER) == str(iteration):
        log.warning("%s=%d: hanging until killed", HANG_AFTER, iteration)
        while True:
            time.sleep(1)
