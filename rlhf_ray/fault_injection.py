"""A test hook that makes an actor die where a test asks, as a crashed or OOM-killed one would; inert unless its
environment variable is set."""

import os
from pathlib import Path

DIE_AT = "RLHF_RAY_TEST_DIE_AT"  # ROLE:RANK:CALL[,...], e.g. rollout:1:3 = rollout rank 1's third generate call
DIE_DIR = "RLHF_RAY_TEST_DIE_DIR"  # a marker per point is left here: the restarted actor carries on


def die_if_asked(role: str, rank: int, call: int) -> None:
    point = f"{role}:{rank}:{call}"
    if point not in os.environ.get(DIE_AT, "").split(","):
        return
    marker = Path(os.environ[DIE_DIR]) / point.replace(":", "_")
    if marker.exists():
        return
    marker.touch()
    os._exit(1)  # no cleanup, no exception: the process is gone, as after a SIGKILL
