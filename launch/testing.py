"""Hooks that let tests stop a production run at a known point; inert unless their environment variable is set."""

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("rlhf_ray.testing")

HANG_AFTER = "RLHF_RAY_TEST_HANG_AFTER"
HANG_FILE = "RLHF_RAY_TEST_HANG_FILE"
RELEASE_FILE = "RLHF_RAY_TEST_RELEASE_FILE"


def hang_if_asked(point: int | str) -> None:
    """RLHF_RAY_TEST_HANG_AFTER=POINT: hang at this point until killed, so a test can kill the job there. Points:
    `ITERATION` (after its rows are written), `PHASE:ITERATION` and `PHASE:ITERATION:end` (as one of the iteration's
    timed phases begins and ends: rollout, score, hooks, experience, filter, learn, rollout_wait, sync),
    `checkpoint:ITERATION` (its learner shards written, the rest not yet) and `rm_update:ROUND` (inside the round's
    RM update). RLHF_RAY_TEST_HANG_FILE names a file touched when the hang starts; RLHF_RAY_TEST_RELEASE_FILE one
    whose appearance ends it (a test acts on the cluster meanwhile)."""
    if os.environ.get(HANG_AFTER) == str(point):
        log.warning("%s=%s: hanging until killed (or released)", HANG_AFTER, point)
        if os.environ.get(HANG_FILE):
            Path(os.environ[HANG_FILE]).touch()
        release = os.environ.get(RELEASE_FILE)
        while not (release and Path(release).exists()):
            time.sleep(0.5)
        log.warning("%s: released", RELEASE_FILE)
