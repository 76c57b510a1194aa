#!/usr/bin/env bash
# Start a Ray node of an rlhf_ray cluster on this machine: the head without HEAD, a worker joining HEAD=IP:PORT.
#   NODE_IP=10.0.0.1 launch/recipes/ray_node.sh                   # head: GCS on :6379, Jobs API on 10.0.0.1:8265
#   NODE_IP=10.0.0.2 HEAD=10.0.0.1:6379 RESOURCES='{"rollout_node": 8}' launch/recipes/ray_node.sh   # a worker
# A role's `resources.custom` in the config (e.g. {rollout_node: 1}) then puts it on such nodes. The head's
# dashboard (and Jobs API) listens on NODE_IP only, never on every interface. NUM_CPUS, NUM_GPUS; RAY_PORT,
# RAY_DASHBOARD_PORT (head); BLOCK=1 stays in the foreground; DRY_RUN=1 prints the command instead of running it.
set -euo pipefail
NODE_IP=${NODE_IP:?set NODE_IP to this node\'s address on the cluster network (127.0.0.1 for one machine)}
if [ -z "${HEAD:-}" ]; then
  cmd=(ray start --head --node-ip-address="$NODE_IP" --port="${RAY_PORT:-6379}"
       --dashboard-host="$NODE_IP" --dashboard-port="${RAY_DASHBOARD_PORT:-8265}")
else
  cmd=(ray start --address="$HEAD" --node-ip-address="$NODE_IP")
fi
cmd+=(--disable-usage-stats)
[ -n "${NUM_CPUS:-}" ] && cmd+=(--num-cpus="$NUM_CPUS")
[ -n "${NUM_GPUS:-}" ] && cmd+=(--num-gpus="$NUM_GPUS")
[ -n "${RESOURCES:-}" ] && cmd+=(--resources="$RESOURCES")
[ -n "${BLOCK:-}" ] && cmd+=(--block)
if [ -n "${DRY_RUN:-}" ]; then
  echo "${cmd[*]}"
else
  exec "${cmd[@]}"
fi
