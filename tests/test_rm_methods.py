"""Secrets of RLHF II reward-model methods (ALGORITHMS.md §1.1-§1.3) against hand computations and loops."""

import math

import pytest
import torch

from rlhf_ray.algorithms import (
    CONTRASTIVE_PRESETS,
    adaptive_margin,
    apply_flip,
    bradley_terry_loss,
    contrastive_inputs,
    contrastive_loss,
    flip_bottom,
    flipped_strength,
    preference_strength,
    simcse_loss,
    sinkhorn,
    smoothing_weights,
    strength_groups,
    swav_loss,
    total_rm_loss,
)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# ---------------------------------------------------------------- preference strength (§1.1)


def test_strength_mean_and_population_std_by_hand():
    # M=3 members, N=2 pairs. Differences: pair 0 -> (1, 2, 3), pair 1 -> (2, -1, 1).
    chosen = torch.tensor([[1.0, 2.0], [2.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
    rejected = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    mean, std = preference_strength(chosen, rejected)
    # pair 0: mean 2, population var (1+0+1)/3; pair 1: mean 2/3, var ((4/3)^2+(5/3)^2+(1/3)^2)/3 = 14/9.
    assert torch.allclose(mean, torch.tensor([2.0, 2.0 / 3.0], dtype=torch.float64))
    assert torch.allclose(std, torch.tensor([math.sqrt(2.0 / 3.0), math.sqrt(14.0) / 3.0], dtype=torch.float64))
    # The unbiased (divide by M-1) std would differ: guard against it explicitly.
    assert not torch.allclose(std[0], torch.tensor(1.0, dtype=torch.float64))


def test_strength_single_member_has_zero_std_and_rejects_bad_shapes():
    mean, std = preference_strength(torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 2.0]]))
    assert torch.equal(mean, torch.tensor([2.0, -1.0]))
    assert torch.equal(std, torch.zeros(2))
    with pytest.raises(ValueError):
        preference_strength(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError):
        preference_strength(torch.zeros(3), torch.zeros(3))


# ---------------------------------------------------------------- flipping (§1.2.1)


def test_flip_marks_exactly_bottom_q():
    mu = torch.tensor([0.5, -3.0, 2.0, 1.0, -1.0, 4.0, 0.0, 3.0, -0.5, 6.0])
    mask = flip_bottom(mu, 0.2)
    assert mask.dtype == torch.bool and mask.shape == (10,)
    assert mask.nonzero().flatten().tolist() == [1, 4]  # -3.0 and -1.0
    # 10 %: only the very lowest; 30 %: the three lowest.
    assert flip_bottom(mu, 0.1).nonzero().flatten().tolist() == [1]
    assert flip_bottom(mu, 0.3).nonzero().flatten().tolist() == [1, 4, 8]
    # 0.7 * 90 is 62.99999999999999 in floats; the fraction means 63 pairs.
    assert int(flip_bottom(torch.arange(90.0), 0.7).sum()) == 63
    assert int(flip_bottom(mu, 0.0).sum()) == 0 and bool(flip_bottom(mu, 1.0).all())


def test_flip_rounds_down_and_breaks_ties_by_index():
    # Four pairs tie at the lowest value; floor(0.25 * 10) = 2 -> the two lowest indices among the ties.
    mu = torch.tensor([1.0, -2.0, 5.0, -2.0, 3.0, -2.0, 0.0, -2.0, 4.0, 2.0])
    assert flip_bottom(mu, 0.25).nonzero().flatten().tolist() == [1, 3]
    assert int(flip_bottom(torch.arange(8.0), 0.2).sum()) == 1  # floor(1.6), where rounding would give 2
    with pytest.raises(ValueError):
        flip_bottom(mu, 1.5)


def test_apply_flip_swaps_only_marked_pairs_and_strength_turns_positive():
    chosen = torch.tensor([1.0, 2.0, 3.0])
    rejected = torch.tensor([10.0, 20.0, 30.0])
    mask = torch.tensor([False, True, False])
    c, r = apply_flip(chosen, rejected, mask)
    assert torch.equal(c, torch.tensor([1.0, 20.0, 3.0]))
    assert torch.equal(r, torch.tensor([10.0, 2.0, 30.0]))
    # Per-pair data of more than one dimension (e.g. equal-length token rows) is swapped row-wise.
    c2, r2 = apply_flip(torch.zeros(3, 4), torch.ones(3, 4), mask)
    assert c2[1].eq(1).all() and c2[0].eq(0).all() and r2[1].eq(0).all() and r2[2].eq(1).all()
    mu = torch.tensor([0.5, -5.86, 9.16])
    assert torch.equal(flipped_strength(mu, mask), torch.tensor([0.5, 5.86, 9.16]))


# ---------------------------------------------------------------- soft labels and margin (§1.2.2, §1.2.4)


def test_smoothing_weights_only_on_negative_strength():
    mu = torch.tensor([-5.86, 0.0, 0.0027, -0.1, 9.16])
    assert torch.allclose(smoothing_weights(mu, 0.1), torch.tensor([0.1, 0.0, 0.0, 0.1, 0.0]))
    assert torch.allclose(smoothing_weights(mu), torch.tensor([0.1, 0.0, 0.0, 0.1, 0.0]))  # default alpha 0.1


def test_smoothed_loss_matches_hand_formula():
    chosen = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64)
    rejected = torch.tensor([0.0, 2.0, 0.5], dtype=torch.float64)
    mu = torch.tensor([0.7, -1.5, -0.2], dtype=torch.float64)
    alpha = 0.2
    loss = bradley_terry_loss(chosen, rejected, label_smoothing=smoothing_weights(mu, alpha))
    # Pair 0 (mu > 0): vanilla. Pairs 1, 2 (mu < 0): -(1-a) log s(D) - a log s(-D).
    deltas = [1.0, -2.0, 0.0]
    alphas = [0.0, alpha, alpha]
    hand = [-(1 - a) * log_sigmoid(d) - a * log_sigmoid(-d) for d, a in zip(deltas, alphas)]
    assert loss.item() == pytest.approx(sum(hand) / 3, rel=1e-12)
    # A wrong rule (smoothing every pair) would give a different number.
    uniform = bradley_terry_loss(chosen, rejected, label_smoothing=alpha)
    assert uniform.item() != pytest.approx(loss.item(), rel=1e-6)


def test_soft_label_plus_margin_matches_combined_formula():
    chosen = torch.tensor([1.0, 0.0], dtype=torch.float64)
    rejected = torch.tensor([0.0, 2.0], dtype=torch.float64)
    mu = torch.tensor([0.5, -1.0], dtype=torch.float64)
    loss = bradley_terry_loss(
        chosen, rejected, margin=adaptive_margin(mu), label_smoothing=smoothing_weights(mu, 0.1), reduction="none"
    )
    # z = D - mu = (0.5, -1.0); alpha = (0, 0.1).
    expected = [-log_sigmoid(0.5), -0.9 * log_sigmoid(-1.0) - 0.1 * log_sigmoid(1.0)]
    assert loss.tolist() == pytest.approx(expected, rel=1e-12)


def test_margin_equals_formula_and_raises_loss_monotonically():
    chosen = torch.tensor([2.0, 1.0], dtype=torch.float64)
    rejected = torch.tensor([0.5, 1.5], dtype=torch.float64)
    mu = torch.tensor([3.0, -2.0], dtype=torch.float64)
    m = adaptive_margin(mu)
    assert torch.equal(m, mu)  # raw signed mean, scale 1
    assert torch.equal(adaptive_margin(mu, scale=0.5), mu * 0.5)
    loss = bradley_terry_loss(chosen, rejected, margin=m, reduction="none")
    # -log s(D - mu): D = (1.5, -0.5), z = (-1.5, 1.5).
    assert loss.tolist() == pytest.approx([-log_sigmoid(-1.5), -log_sigmoid(1.5)], rel=1e-12)
    # Same rewards, larger positive margin -> strictly larger loss.
    losses = [bradley_terry_loss(chosen, rejected, margin=torch.full((2,), s)).item() for s in (-2.0, 0.0, 1.0, 4.0)]
    assert all(a < b for a, b in zip(losses, losses[1:]))


def test_margin_sits_inside_the_sigmoid_and_changes_the_gradient():
    # The printed Eq. 6 typo, log s(D) - mu, would leave the gradient of the vanilla loss unchanged.
    chosen = torch.tensor([1.0, 0.2], dtype=torch.float64, requires_grad=True)
    rejected = torch.tensor([0.0, 0.0], dtype=torch.float64)
    mu = torch.tensor([2.0, 1.0], dtype=torch.float64)
    (g_vanilla,) = torch.autograd.grad(bradley_terry_loss(chosen, rejected), chosen)
    (g_margin,) = torch.autograd.grad(bradley_terry_loss(chosen, rejected, margin=adaptive_margin(mu)), chosen)
    # d/dr_c of -log s(r_c - r_r - m) / N = -(1 - s(z)) / N with z = (1-2, 0.2-1).
    expected = [-(1 - 1 / (1 + math.exp(-z))) / 2 for z in (-1.0, -0.8)]
    assert g_margin.tolist() == pytest.approx(expected, rel=1e-12)
    assert (g_margin.abs() > g_vanilla.abs()).all()


def test_flip_then_margin_uses_negated_strength():
    # A pair with mu = -4 (chosen clearly worse by the ensemble) is flipped; the margin is then +4.
    chosen, rejected = torch.tensor([0.0]), torch.tensor([3.0])
    mu = torch.tensor([-4.0])
    mask = flip_bottom(mu, 1.0)
    c, r = apply_flip(chosen, rejected, mask)
    m = adaptive_margin(flipped_strength(mu, mask))
    loss = bradley_terry_loss(c, r, margin=m)
    assert loss.item() == pytest.approx(-log_sigmoid(3.0 - 4.0), rel=1e-6)
    assert smoothing_weights(flipped_strength(mu, mask), 0.1).item() == 0.0  # no longer "incorrect"


# ---------------------------------------------------------------- grouping (§1.1)


def test_strength_groups_sorted_equal_size():
    mu = torch.tensor([0.3, -1.0, 2.0, 0.0, 5.0, -2.0, 1.0, 0.3, 4.0, 3.0])
    groups = strength_groups(mu, 5)
    assert [g.tolist() for g in groups] == [[5, 1], [3, 0], [7, 6], [2, 9], [8, 4]]  # 0.3 tie: index 0 first
    # Each group's strengths lie at or above the previous group's.
    for lo, hi in zip(groups, groups[1:]):
        assert mu[lo].max() <= mu[hi].min()
    # Uneven N: sizes differ by at most one, all indices used once.
    uneven = strength_groups(torch.randn(23, generator=torch.Generator().manual_seed(0)), 10)
    assert sorted(len(g) for g in uneven) == [2] * 7 + [3] * 3
    assert sorted(torch.cat(uneven).tolist()) == list(range(23))
    by_size = strength_groups(mu, group_size=4)
    assert [len(g) for g in by_size] == [4, 4, 2] and by_size[0].tolist() == [5, 1, 3, 0]
    with pytest.raises(ValueError):
        strength_groups(mu)


# ---------------------------------------------------------------- contrastive (§1.3)


def simcse_reference(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """Eq. 9 with plain Python loops."""
    n = z1.shape[0]
    total = 0.0
    for i in range(n):
        sims = [torch.nn.functional.cosine_similarity(z1[i], z2[j], dim=0).item() / tau for j in range(n)]
        total += -(sims[i] - math.log(sum(math.exp(s) for s in sims)))
    return total / n


def test_simcse_hand_value_for_orthogonal_identical_views():
    tau = 0.05
    z = torch.eye(3, dtype=torch.float64) * torch.tensor([[2.0], [0.5], [7.0]], dtype=torch.float64)  # norms ignored
    # cos = 1 on the diagonal, 0 elsewhere: l_i = log(1 + 2 exp(-1/tau)).
    assert simcse_loss(z, z, tau).item() == pytest.approx(math.log1p(2 * math.exp(-1 / tau)), rel=1e-9)


def test_simcse_matches_loop_and_is_lowest_for_identical_views():
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(6, 8, generator=g, dtype=torch.float64)
    noisy = z1 + 0.05 * torch.randn(6, 8, generator=g, dtype=torch.float64)
    unrelated = torch.randn(6, 8, generator=g, dtype=torch.float64)
    for z2 in (z1, noisy, unrelated):
        assert simcse_loss(z1, z2, 0.05).item() == pytest.approx(simcse_reference(z1, z2, 0.05), rel=1e-9)
    same, near = simcse_loss(z1, z1).item(), simcse_loss(z1, noisy).item()
    shuffled = simcse_loss(z1, z1[torch.tensor([1, 2, 3, 4, 5, 0])]).item()
    assert same <= near < simcse_loss(z1, unrelated).item()
    assert same < shuffled


def test_simcse_upcasts_half_precision():
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    assert simcse_loss(z, z).dtype == torch.float32


def test_contrastive_inputs_response_and_difference():
    hc = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    hr = torch.tensor([[0.5, 0.0], [1.0, 1.0]])
    assert torch.equal(contrastive_inputs(hc, hr, "response"), torch.cat([hc, hr]))
    d = torch.tensor([[0.5, 2.0], [2.0, 3.0]])
    assert torch.equal(contrastive_inputs(hc, hr, "difference"), torch.cat([d, -d]))
    with pytest.raises(ValueError):
        contrastive_inputs(hc, hr, "pairs")


def swav_sinkhorn_reference(scores: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """SwAV's own `distributed_sinkhorn` (facebookresearch/swav, main_swav.py) on one process, in the exp domain."""
    q = torch.exp(scores / eps).t()
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t()


def test_sinkhorn_codes_are_doubly_stochastic():
    g = torch.Generator().manual_seed(0)
    batch, k = 12, 5
    scores = torch.nn.functional.normalize(torch.randn(batch, k, generator=g, dtype=torch.float64), dim=-1)
    codes = sinkhorn(scores, epsilon=0.05, n_iters=3)
    assert torch.allclose(codes, swav_sinkhorn_reference(scores, 0.05, 3), rtol=1e-9, atol=1e-12)
    # Normalisation: each sample's code sums to 1 (exact after the last step) ...
    assert codes.shape == (batch, k) and (codes >= 0).all()
    assert torch.allclose(codes.sum(dim=1), torch.ones(batch, dtype=torch.float64), atol=1e-12)
    # ... and at convergence each prototype gets the equal share B/K of the mass.
    converged = sinkhorn(scores, epsilon=0.05, n_iters=500)
    assert torch.allclose(converged.sum(dim=1), torch.ones(batch, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(converged.sum(dim=0), torch.full((k,), batch / k, dtype=torch.float64), atol=1e-6)
    # Sinkhorn scaling only: log q_bk - s_bk / eps = a_b + c_k (rank-one additive), an independent check.
    resid = converged.log() - scores / 0.05
    resid = resid - resid.mean(dim=1, keepdim=True) - resid.mean(dim=0, keepdim=True) + resid.mean()
    assert resid.abs().max() < 1e-8
    # Huge scores must not overflow; the codes are targets, without gradient.
    big = (scores * 100).requires_grad_()
    out = sinkhorn(big, 0.05, 3)
    assert torch.isfinite(out).all() and not out.requires_grad


def swav_reference(z1, z2, protos, tau, eps, iters):
    """Eq. 7-8 written out per sample, with the module's Sinkhorn codes."""
    c = torch.nn.functional.normalize(protos, dim=-1)
    s1 = torch.nn.functional.normalize(z1, dim=-1) @ c.T
    s2 = torch.nn.functional.normalize(z2, dim=-1) @ c.T
    q1, q2 = sinkhorn(s1, eps, iters), sinkhorn(s2, eps, iters)
    total = 0.0
    for b in range(z1.shape[0]):
        p1 = torch.softmax(s1[b] / tau, dim=0)
        p2 = torch.softmax(s2[b] / tau, dim=0)
        total += -(q2[b] * p1.log()).sum().item() - (q1[b] * p2.log()).sum().item()
    return total / z1.shape[0]


def test_swav_matches_reference_and_prefers_agreeing_views():
    k, dim = 4, 4
    protos = torch.eye(k, dim, dtype=torch.float64)
    # 8 samples, two per prototype, so the equal-partition constraint is satisfied by hard assignments.
    assign = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    g = torch.Generator().manual_seed(0)
    z1 = protos[assign] + 0.05 * torch.randn(8, dim, generator=g, dtype=torch.float64)
    z2_agree = protos[assign] + 0.05 * torch.randn(8, dim, generator=g, dtype=torch.float64)
    z2_disagree = protos[(assign + 1) % k] + 0.05 * torch.randn(8, dim, generator=g, dtype=torch.float64)
    agree = swav_loss(z1, z2_agree, protos)
    disagree = swav_loss(z1, z2_disagree, protos)
    assert torch.isfinite(agree) and torch.isfinite(disagree)
    assert agree.item() < disagree.item()
    assert disagree.item() > 5 * agree.item()
    for z2 in (z2_agree, z2_disagree):
        assert swav_loss(z1, z2, protos, 0.1, 0.05, 3).item() == pytest.approx(
            swav_reference(z1, z2, protos, 0.1, 0.05, 3), rel=1e-9
        )


def test_swav_gradients_reach_features_and_prototypes():
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(16, 8, generator=g, requires_grad=True)
    z2 = (z1.detach() + 0.1 * torch.randn(16, 8, generator=g)).requires_grad_()
    protos = torch.randn(20, 8, generator=g, requires_grad=True)
    loss = swav_loss(z1, z2, protos)
    loss.backward()
    assert torch.isfinite(loss)
    for t in (z1, z2, protos):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_presets_and_total_loss():
    assert CONTRASTIVE_PRESETS["simcse"].beta == 1.0 and CONTRASTIVE_PRESETS["simcse"].temperature == 0.05
    swav, diff = CONTRASTIVE_PRESETS["swav"], CONTRASTIVE_PRESETS["swav_diff"]
    assert (swav.n_prototypes, swav.beta, swav.mode) == (50, 0.1, "response")
    assert (diff.n_prototypes, diff.beta, diff.mode) == (20, 0.5, "difference")
    assert (swav.temperature, swav.sinkhorn_epsilon, swav.sinkhorn_iters, swav.dropout) == (0.1, 0.05, 3, 0.05)
    # The dispatcher routes to the right loss with the preset's hyperparameters.
    g = torch.Generator().manual_seed(3)
    hc1, hr1 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    hc2, hr2 = hc1 + 0.01, hr1 - 0.01
    cfg = CONTRASTIVE_PRESETS["swav_diff"]
    v1, v2 = contrastive_inputs(hc1, hr1, cfg.mode), contrastive_inputs(hc2, hr2, cfg.mode)
    protos = torch.randn(20, 8, generator=g)
    assert torch.equal(contrastive_loss(v1, v2, cfg, protos), swav_loss(v1, v2, protos, 0.1, 0.05, 3))
    assert torch.equal(contrastive_loss(v1, v2, CONTRASTIVE_PRESETS["simcse"]), simcse_loss(v1, v2, 0.05))
    with pytest.raises(ValueError):
        contrastive_loss(v1, v2, cfg)  # SwAV without prototypes
    bt, cl = torch.tensor(0.7), torch.tensor(2.0)
    assert total_rm_loss(bt, cl, cfg.beta).item() == pytest.approx(0.7 + 0.5 * 2.0)
