"""Hooks that let tests stop a production run at a known point; inert unless their environment variable is set."""

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("rlhf_ray.testing")

HANG_AFTER = "RLHF_RAY_TEST_HANG_AFTER"
HANG_FILE = "RLHF_RAY_TEST_HANG_FILE"


def hang_if_asked(point: int | str) -> None:
    """RLHF_RAY_TEST_HANG_AFTER=POINT: hang at this point until killed, so a test can kill the job there. Points are
    an iteration number (after its rows are written) or a named moment such as `rm_update:2` (inside round 2's RM
    update). RLHF_RAY_TEST_HANG_FILE names a file touched when the hang starts."""
    if os.environ.get(HANG_AFTER) == str(point):
        log.warning("%s=%s: hanging until killed", HANG_AFTER, point)
        if os.environ.get(HANG_FILE):
            Path(os.environ[HANG_FILE]).touch()
        while True:
            time.sleep(1)
