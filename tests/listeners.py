"""Which addresses a process tree listens on (the tests that check listeners stay on loopback)."""

import psutil

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def listening_ips(procs: list[psutil.Process]) -> set[str]:
    """The local addresses of every listening TCP socket of procs (processes gone meanwhile are skipped)."""
    ips = set()
    for q in procs:
        try:
            ips |= {c.laddr.ip for c in q.net_connections("inet") if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            pass
    return ips


def this_session() -> list[psutil.Process]:
    """This test process and everything it started: the session's local Ray (GCS, raylet, every worker and actor)."""
    me = psutil.Process()
    return [me, *me.children(recursive=True)]
