"""Every actor resolves the configured precision for the node it runs on: a cluster's nodes may differ."""

import ray

from rlhf_ray.device import Precision, resolve_precision


class NodePrecision:
    """Mixin of the actors that compute: resolve `auto` here, not on the driver's node, and say what was picked."""

    precision: Precision | None = None

    def _resolve_precision(self, requested: str, knob: str = "model.mixed_precision") -> Precision:
        self.precision = resolve_precision(requested, knob=knob)
        return self.precision

    def node_precision(self) -> dict:
        p = self.precision
        return {"node": ray.util.get_node_ip_address(), "mode": p and p.mode, "emulated": p and p.emulated,
                "reason": p and p.reason}
