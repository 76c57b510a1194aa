"""NaN and inf stop where they appear, named, before they reach an advantage or a weight."""

import pytest
import torch

from actors.reward import RewardActor
from rlhf_ray.config import LearnerConfig, PPOConfig
from rlhf_ray.models import load_policy
from rlhf_ray.ppo.update import actor_loss


def nan_for_long_responses(prompt: list[int], response: list[int]) -> float:
    return float("nan") if len(response) > 2 else 1.0


def test_a_reward_function_that_returns_nan_stops_the_scoring_naming_it():
    actor = RewardActor(function=f"{__name__}:nan_for_long_responses")
    assert actor.score([([1], [2]), ([1], [2, 3])]) == [1.0, 1.0]
    with pytest.raises(FloatingPointError, match=r"reward.function test_nonfinite:nan_for_long_responses gave a "
                                                 r"non-finite reward to 1 of 2 responses \(positions \[1\]"):
        actor.score([([1], [2]), ([1], [2, 3, 4])])


def test_a_nan_policy_loss_is_refused_before_backward_naming_rows_and_inputs(tiny_model_dir):
    policy = load_policy(tiny_model_dir)
    ids = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]])
    act = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])[:, 1:]
    mb = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "action_mask": act,
          "old_logprobs": torch.zeros(act.shape), "advantages": torch.ones(act.shape), "row_id": torch.tensor([4, 7])}
    loss, _ = actor_loss(policy, mb, PPOConfig(), LearnerConfig())
    assert torch.isfinite(loss)
    mb["advantages"][1, 2] = float("nan")
    with pytest.raises(FloatingPointError, match=r"PPO policy loss is nan on rows \[4, 7\]; non-finite advantages"):
        actor_loss(policy, mb, PPOConfig(), LearnerConfig())
    assert all(p.grad is None for p in policy.parameters())  # nothing was back-propagated
