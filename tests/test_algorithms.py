"""Each algorithm against an independent reference: a plain Python loop, a hand computation or a second formula."""

import math

import pytest
import torch

from rlhf_ray.algorithms import (
    ADVANTAGE_ESTIMATORS,
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    RunningMoments,
    bradley_terry_loss,
    clipped_value_loss,
    entropy_from_logits,
    gae_advantages,
    kl_penalty,
    last_token_index,
    logprobs_from_logits,
    make_kl_controller,
    masked_mean,
    masked_var,
    masked_whiten,
    normalize_scores,
    ppo_policy_loss,
    preference_accuracy,
    shape_token_rewards,
)

# Rows padded on the left, on the right, on both sides, and not at all.
MASK = torch.tensor(
    [
        [0, 0, 1, 1, 1, 1],
        [1, 1, 1, 0, 0, 0],
        [0, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1],
    ],
    dtype=torch.float64,
)


def rand(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def valid(row_values, row_mask):
    return [float(v) for v, m in zip(row_values, row_mask) if m]


# ---------------------------------------------------------------- masked statistics
def test_masked_mean_and_var_match_plain_python():
    x = rand((4, 6), 0)
    flat = [v for r in range(4) for v in valid(x[r], MASK[r])]
    mean = sum(flat) / len(flat)
    var = sum((v - mean) ** 2 for v in flat) / (len(flat) - 1)
    assert masked_mean(x, MASK).item() == pytest.approx(mean)
    assert masked_var(x, MASK).item() == pytest.approx(var)
    per_row = masked_mean(x, MASK, dim=-1)
    for r in range(4):
        vals = valid(x[r], MASK[r])
        assert per_row[r].item() == pytest.approx(sum(vals) / len(vals))


def test_masked_mean_of_empty_row_is_zero_not_nan():
    x = torch.ones(2, 3)
    mask = torch.tensor([[0, 0, 0], [1, 1, 0]])
    assert masked_mean(x, mask, dim=-1).tolist() == [0.0, 1.0]


def test_masked_whiten_ignores_padding_values():
    x = rand((4, 6), 1)
    poisoned = x.clone()
    poisoned[MASK == 0] = 1e6  # padding content must not leak into the statistics
    w = masked_whiten(poisoned, MASK)
    assert masked_mean(w, MASK).item() == pytest.approx(0.0, abs=1e-9)
    assert masked_var(w, MASK).item() == pytest.approx(1.0, rel=1e-6)
    assert torch.all(w[MASK == 0] == 0)
    kept = masked_whiten(x, MASK, shift_mean=False)
    assert masked_mean(kept, MASK).item() == pytest.approx(masked_mean(x, MASK).item(), rel=1e-9)


def test_logprobs_and_entropy_match_torch_distributions():
    logits = rand((2, 5, 7), 2)
    tokens = torch.randint(0, 7, (2, 5), generator=torch.Generator().manual_seed(0))
    dist = torch.distributions.Categorical(logits=logits)
    assert torch.allclose(logprobs_from_logits(logits, tokens), dist.log_prob(tokens).float(), atol=1e-5)
    assert torch.allclose(entropy_from_logits(logits), dist.entropy().float(), atol=1e-5)


# ---------------------------------------------------------------- GAE
def gae_reference(rewards, values, mask, gamma, lam):
    """Plain loop over the real tokens of each row only: padding is simply not part of the trajectory."""
    adv = [[0.0] * len(r) for r in rewards]
    for b in range(len(rewards)):
        idx = [t for t in range(len(rewards[b])) if mask[b][t]]
        last_gae, next_v = 0.0, 0.0
        for t in reversed(idx):
            delta = rewards[b][t] + gamma * next_v - values[b][t]
            last_gae = delta + gamma * lam * last_gae
            adv[b][t] = last_gae
            next_v = values[b][t]
    return adv


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.99, 0.9), (0.5, 1.0), (1.0, 0.0)])
def test_gae_matches_plain_loop_with_padding_on_both_sides(gamma, lam):
    rewards, values = rand((4, 6), 3), rand((4, 6), 4)
    adv, ret = gae_advantages(rewards, values, MASK, gamma, lam)
    ref = gae_reference(rewards.tolist(), values.tolist(), MASK.tolist(), gamma, lam)
    assert torch.allclose(adv, torch.tensor(ref, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(ret, (torch.tensor(ref, dtype=torch.float64) + values) * MASK, atol=1e-12)
    assert ADVANTAGE_ESTIMATORS.get("gae") is gae_advantages


def test_gae_is_unchanged_by_garbage_in_padding():
    rewards, values = rand((4, 6), 5), rand((4, 6), 6)
    adv, _ = gae_advantages(rewards, values, MASK, 1.0, 0.95)
    r2, v2 = rewards.clone(), values.clone()
    r2[MASK == 0], v2[MASK == 0] = 100.0, -100.0
    adv2, _ = gae_advantages(r2, v2, MASK, 1.0, 0.95)
    assert torch.allclose(adv, adv2)


def test_gae_hand_computed():
    # One row, 3 tokens, gamma=1, lam=1: advantage = sum of future rewards - V_t.
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.2, 0.1]])
    adv, ret = gae_advantages(r, v, torch.ones(1, 3), 1.0, 1.0)
    assert adv[0].tolist() == pytest.approx([0.5, 0.8, 0.9])
    assert ret[0].tolist() == pytest.approx([1.0, 1.0, 1.0])


# ---------------------------------------------------------------- PPO policy and value losses
def test_ppo_clip_is_two_sided_hand_values():
    old = torch.zeros(1, 4)
    ratio = torch.tensor([[1.5, 0.5, 1.5, 0.5]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    loss, stats = ppo_policy_loss(ratio.log(), old, adv, torch.ones(1, 4), clip_low=0.2)
    # per token max(-A r, -A clip(r)): A>0,r=1.5 -> -1.2; A>0,r=.5 -> -.5; A<0,r=1.5 -> 1.5; A<0,r=.5 -> .8
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.5 + 0.8) / 4)
    assert stats["clip_frac"].item() == pytest.approx(0.5)


def test_ppo_loss_matches_elementwise_reference_and_ignores_padding():
    logp, old, adv = rand((4, 6), 7) * 0.3, rand((4, 6), 8) * 0.3, rand((4, 6), 9)
    loss, _ = ppo_policy_loss(logp, old, adv, MASK, clip_low=0.2, clip_high=0.28)
    vals = []
    for b in range(4):
        for t in range(6):
            if MASK[b, t]:
                r = math.exp(logp[b, t] - old[b, t])
                a = adv[b, t].item()
                vals.append(max(-a * r, -a * min(max(r, 0.8), 1.28)))
    assert loss.item() == pytest.approx(sum(vals) / len(vals))


def test_ppo_gradient_vanishes_outside_trust_region():
    logp = torch.tensor([[math.log(1.5), math.log(0.5)]], requires_grad=True)
    adv = torch.tensor([[1.0, -1.0]])  # both tokens already moved past the clip in the advantage's direction
    loss, _ = ppo_policy_loss(logp, torch.zeros(1, 2), adv, torch.ones(1, 2))
    loss.backward()
    assert torch.all(logp.grad == 0)


def test_dual_clip_bounds_negative_advantages_only():
    ratio = torch.tensor([[10.0, 10.0]])
    adv = torch.tensor([[-1.0, 1.0]])
    loss, stats = ppo_policy_loss(ratio.log(), torch.zeros(1, 2), adv, torch.ones(1, 2), dual_clip=3.0)
    # A<0, r=10: max(10, 1.2)=10 -> min(10, 3)=3.   A>0, r=10: max(-10, -1.2) = -1.2.
    assert loss.item() == pytest.approx((3.0 - 1.2) / 2)
    assert stats["dual_clip_frac"].item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="dual_clip"):
        ppo_policy_loss(ratio.log(), torch.zeros(1, 2), adv, torch.ones(1, 2), dual_clip=0.5)


def test_seq_mean_token_mean_aggregation():
    logp = torch.zeros(2, 3)
    adv = torch.tensor([[1.0, 1.0, 1.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    tok, _ = ppo_policy_loss(logp, logp, adv, mask, agg="token_mean")
    seq, _ = ppo_policy_loss(logp, logp, adv, mask, agg="seq_mean_token_mean")
    assert tok.item() == pytest.approx(-(3 + 4) / 4)
    assert seq.item() == pytest.approx(-(1 + 4) / 2)


def test_clipped_value_loss_hand_values():
    old = torch.tensor([[0.0, 0.0]])
    new = torch.tensor([[1.0, 0.1]])
    ret = torch.tensor([[1.0, 1.0]])
    loss, stats = clipped_value_loss(new, old, ret, torch.ones(1, 2), clip=0.2)
    # token 0: unclipped 0, clipped (0.2-1)^2=.64 -> .64 ; token 1: (0.1-1)^2=.81 both -> .81
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81) / 2)
    assert stats["vf_clip_frac"].item() == pytest.approx(0.5)
    plain, _ = clipped_value_loss(new, old, ret, torch.ones(1, 2), clip=None)
    assert plain.item() == pytest.approx(0.5 * (0.0 + 0.81) / 2)


# ---------------------------------------------------------------- KL
def test_kl_estimators_hand_values():
    lp, ref = torch.tensor([-1.0]), torch.tensor([-2.0])
    assert kl_penalty(lp, ref, "k1").item() == pytest.approx(1.0)
    assert kl_penalty(lp, ref, "k2").item() == pytest.approx(0.5)
    assert kl_penalty(lp, ref, "k3").item() == pytest.approx(math.exp(-1) - 1 + 1)
    with pytest.raises(KeyError, match="k4"):
        KL_ESTIMATORS.get("k4")


def test_k1_and_k3_are_unbiased_for_the_true_kl():
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    true_kl = float((p * (p / q).log()).sum())
    samples = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    lp, lq = p.log()[samples], q.log()[samples]
    assert kl_penalty(lp, lq, "k1").mean().item() == pytest.approx(true_kl, abs=5e-3)
    assert kl_penalty(lp, lq, "k3").mean().item() == pytest.approx(true_kl, abs=5e-3)
    assert torch.all(kl_penalty(lp, lq, "k3") >= 0)


def test_fixed_kl_controller_does_not_move():
    ctl = make_kl_controller("fixed", 0.05)
    ctl.update(current_kl=100.0, n_steps=64)
    assert isinstance(ctl, FixedKLController) and ctl.value == 0.05


def test_adaptive_kl_controller_follows_ziegler_formula():
    ctl = make_kl_controller("adaptive", 0.2, target=6.0, horizon=10_000)
    assert isinstance(ctl, AdaptiveKLController)
    ctl.update(current_kl=9.0, n_steps=256)  # error clipped to +0.2
    assert ctl.value == pytest.approx(0.2 * (1 + 0.2 * 256 / 10_000))
    v = ctl.value
    ctl.update(current_kl=5.4, n_steps=256)  # error -0.1
    assert ctl.value == pytest.approx(v * (1 - 0.1 * 256 / 10_000))
    fresh = make_kl_controller("adaptive", 1.0, target=1.0, horizon=1)
    fresh.load_state_dict(ctl.state_dict())
    assert fresh.value == ctl.value and fresh.target == 6.0
    with pytest.raises(ValueError, match="target"):
        make_kl_controller("adaptive", 0.2)


# ---------------------------------------------------------------- reward shaping
def test_last_token_index_with_both_side_padding():
    assert last_token_index(MASK).tolist() == [5, 2, 3, 5]
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        last_token_index(torch.tensor([[1, 0], [0, 0]]))


def test_shape_token_rewards_plain_loop():
    lp, ref = rand((4, 6), 10), rand((4, 6), 11)
    scores = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    rewards, kl = shape_token_rewards(scores, lp, ref, MASK, kl_coef=0.1, kl_estimator="k1")
    for b in range(4):
        idx = [t for t in range(6) if MASK[b, t]]
        for t in range(6):
            want = 0.0
            if t in idx:
                want = -0.1 * (lp[b, t] - ref[b, t]).item() + (scores[b].item() if t == idx[-1] else 0.0)
            assert rewards[b, t].item() == pytest.approx(want)
    assert torch.all(kl[MASK == 0] == 0)


def test_running_moments_match_concatenated_statistics():
    chunks = [rand((n,), 20 + n) * 3 + 1 for n in (5, 1, 17, 2)]
    m = RunningMoments()
    for c in chunks:
        m.update(c)
    allv = torch.cat(chunks)
    assert m.mean == pytest.approx(allv.mean().item())
    assert m.std == pytest.approx(allv.std().item())
    m2 = RunningMoments()
    m2.load_state_dict(m.state_dict())
    assert m2.std == m.std


def test_normalize_scores_scale_norm_clip():
    first = torch.tensor([1.0, 3.0])
    m = RunningMoments()
    scaled = normalize_scores(first, m, "scale")
    assert scaled.tolist() == pytest.approx((first / first.std()).tolist())  # mean kept
    m = RunningMoments()
    normed = normalize_scores(first, m, "norm", clip=0.5)
    assert normed.tolist() == pytest.approx([-0.5, 0.5])
    with pytest.raises(ValueError, match=r"not finite for batch rows \[1\]: \[nan\]"):
        normalize_scores(torch.tensor([1.0, float("nan")]), None)
    with pytest.raises(ValueError, match=r"not finite for batch rows \[0, 2\]: \[inf, -inf\]"):
        normalize_scores(torch.tensor([float("inf"), 1.0, float("-inf")]), None)


# ---------------------------------------------------------------- Bradley-Terry
def test_bradley_terry_matches_formula_with_margin_and_smoothing():
    c, r = torch.tensor([2.0, -1.0, 0.3]), torch.tensor([1.0, 0.5, 0.3])
    margin = torch.tensor([0.5, -1.0, 0.0])
    alpha = torch.tensor([0.0, 0.1, 0.1])

    def log_sigmoid(z):
        return -math.log1p(math.exp(-z))

    want = []
    for i in range(3):
        z = c[i].item() - r[i].item() - margin[i].item()
        a = alpha[i].item()
        want.append(-(1 - a) * log_sigmoid(z) - a * log_sigmoid(-z))
    got = bradley_terry_loss(c, r, margin=margin, label_smoothing=alpha, reduction="none")
    assert got.tolist() == pytest.approx(want)
    assert bradley_terry_loss(c, r).item() == pytest.approx(
        sum(-log_sigmoid(c[i].item() - r[i].item()) for i in range(3)) / 3
    )


def test_positive_margin_raises_the_loss_and_gradient_pushes_chosen_up():
    c = torch.tensor([1.0], requires_grad=True)
    r = torch.tensor([0.0])
    base = bradley_terry_loss(c, r)
    with_margin = bradley_terry_loss(c, r, margin=2.0)
    assert with_margin.item() > base.item()
    with_margin.backward()
    assert c.grad.item() < 0  # descending the loss raises the chosen reward


def test_preference_accuracy_counts_ties_as_wrong():
    assert preference_accuracy(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])).item() == pytest.approx(1 / 3)
