"""One PPO minibatch: the actor and critic losses (CleanRL ppo.py style, each detail visible)."""

import torch

from ..algorithms import POLICY_LOSSES, clipped_value_loss, masked_mean
from ..config import LearnerConfig, PPOConfig
from .batch import sequence_logprobs


def actor_loss(policy, mb: dict[str, torch.Tensor], ppo: PPOConfig, learner: LearnerConfig):
    """Clipped surrogate on the response tokens, minus an optional entropy bonus."""
    logprobs, entropy = sequence_logprobs(policy, mb["input_ids"], mb["attention_mask"], with_entropy=True,
                                          entropy_grad=learner.entropy_coef > 0, action_mask=mb["action_mask"])
    mask = mb["action_mask"]
    policy_loss = POLICY_LOSSES.get(ppo.policy_loss)
    loss, stats = policy_loss(logprobs, mb["old_logprobs"], mb["advantages"], mask, clip_low=ppo.clip,
                              clip_high=ppo.clip_high, dual_clip=ppo.dual_clip, agg=ppo.loss_agg)
    entropy_mean = masked_mean(entropy, mask)
    # Entropy bonus keeps exploration alive when the reward pushes towards one answer.
    loss = loss - learner.entropy_coef * entropy_mean
    check_finite(loss, "PPO policy loss", mb)
    return loss, stats | {"entropy": entropy_mean.detach(), "policy_loss": loss.detach()}


def critic_loss(critic, mb: dict[str, torch.Tensor], ppo: PPOConfig):
    """Clipped value loss; V at position t is the value of the state before response token t+1. critic: a value
    model (rlhf_ray.models.as_value_model), or the DeepSpeed engine around one."""
    values = critic(mb["input_ids"], mb["attention_mask"])[:, :-1]
    loss, stats = clipped_value_loss(values, mb["old_values"], mb["returns"], mb["action_mask"], clip=ppo.value_clip,
                                     agg=ppo.loss_agg)
    check_finite(loss, "PPO value loss", mb)
    return loss, stats | {"value_loss": loss.detach()}


def check_finite(loss: torch.Tensor, what: str, mb: dict[str, torch.Tensor]) -> None:
    """A NaN or inf loss stops the step before its backward (through AdamW it would reach every weight), naming the
    rows and which of their inputs, if any, were not finite."""
    if bool(torch.isfinite(loss)):
        return
    rows = mb["row_id"].tolist() if "row_id" in mb else "(no row ids)"
    bad = [k for k in ("advantages", "returns", "old_logprobs", "old_values") if k in mb and not torch.isfinite(mb[k]).all()]
    why = (f"non-finite {', '.join(bad)} in the batch" if bad
           else "its inputs are finite: the forward overflowed (a learning rate too high?)")
    raise FloatingPointError(f"{what} is {loss.item()} on rows {rows}; {why}. The step was not applied")
