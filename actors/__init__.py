"""Ray actors, one module per role. Every worker that runs one imports this package first, on whatever node it is."""

from rlhf_ray.environment import apply_node_defaults

apply_node_defaults()  # DeepSpeed's accelerator for this node's hardware, not the driver's
