"""One Ray node on 127.0.0.1 until SIGTERM: `python loopback_node.py '{"head": true, "num_cpus": 2, ...}'`, the JSON
being ray._private.parameter.RayParams fields plus `head`.

`ray start` cannot keep a node on loopback: it rewrites 127.0.0.1 to the machine's routable address, and with Ray's
loopback mode on (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) it refuses to add worker nodes. So this starts the node the way
ray.cluster_utils.Cluster does (a Node from explicit RayParams), one process per node, with loopback mode on for
every process the node starts (job drivers and workers included), so they resolve the cluster to 127.0.0.1 too."""

import json
import os
import signal
import sys
import time

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before ray reads its constants

import ray._private.node  # noqa: E402
from ray._private.parameter import RayParams  # noqa: E402
from ray._private.utils import write_ray_address  # noqa: E402


def main(spec: dict) -> None:
    head = spec.pop("head", False)
    params = RayParams(node_ip_address="127.0.0.1", node_name="127.0.0.1", min_worker_port=0, max_worker_port=0,
                       **spec)
    if not head:
        params.update_if_absent(include_log_monitor=False, node_manager_port=0)  # as cluster_utils: one machine
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit through atexit, which stops the node's processes
    node = ray._private.node.Node(params, head=head, shutdown_at_exit=True, spawn_reaper=True)
    if head:  # as `ray start` does: Ray Jobs resolve their drivers' "auto" address from this file in the temp dir,
        # and without it fall back to any Ray running on the machine (the test session's own, say)
        write_ray_address(node.gcs_address, params.temp_dir)
    print(f"node {node.node_id} up at {node.node_ip_address}, GCS {node.gcs_address}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
