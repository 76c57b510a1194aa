"""MetaRM's math (rlhf_ray.algorithms.metarm) against hand computations and finite differences."""

import math

import pytest
import torch

from rlhf_ray.algorithms import bradley_terry_loss
from rlhf_ray.algorithms.metarm import MetaAscent, difference_loss, metarm_step


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_difference_loss_by_hand():
    # k=3: pairs (0,1), (0,3), (1,3) have gaps 1, 3, 2; normaliser 2/k^2 = 2/9 (not 1/C(3,2) = 1/3).
    assert difference_loss(torch.tensor([[0.0, 1.0, 3.0]])).item() == pytest.approx(2 / 9 * (sig(1) + sig(3) + sig(2)))
    # k=2: one pair, normaliser 2/4.
    assert difference_loss(torch.tensor([[0.5, -1.5]])).item() == pytest.approx(0.5 * sig(2.0))
    # A prompt whose responses all tie: sigma(0) = 0.5 for each of C(k,2) pairs -> (k-1)/(2k); mean over prompts.
    tie, spread = torch.tensor([[2.0, 2.0, 2.0]]), torch.tensor([[0.0, 1.0, 3.0]])
    both = difference_loss(torch.cat([tie, spread]))
    assert difference_loss(tie).item() == pytest.approx(1 / 3)
    assert both.item() == pytest.approx((1 / 3 + 2 / 9 * (sig(1) + sig(3) + sig(2))) / 2)
    # The sign of a gap does not matter; only responses of the same prompt are compared.
    assert difference_loss(torch.tensor([[3.0, 1.0, 0.0]])).item() == pytest.approx(difference_loss(spread).item())
    with pytest.raises(ValueError, match="k >= 2"):
        difference_loss(torch.tensor([[1.0]]))


def test_difference_loss_gradient_matches_finite_differences():
    r = torch.tensor([[0.3, -0.2, 1.1, 0.7], [0.0, 0.4, -0.9, 2.0]], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(difference_loss(r), r)
    h = 1e-6
    for idx in [(0, 0), (0, 2), (1, 3), (1, 1)]:
        up, down = r.detach().clone(), r.detach().clone()
        up[idx] += h
        down[idx] -= h
        fd = (difference_loss(up) - difference_loss(down)).item() / (2 * h)
        assert grad[idx].item() == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_meta_ascent_is_one_adam_ascent_step_with_its_own_state():
    g1, g2 = torch.tensor([0.5, -2.0, 0.0]), torch.tensor([1.0, 1.0, -1.0])
    lr, b1, b2, eps = 0.1, 0.9, 0.99, 1e-8
    ascent = MetaAscent([g1.shape], lr, betas=(b1, b2), eps=eps)
    (d1,) = ascent.delta([g1])
    # First Adam step: m_hat = g, v_hat = g^2 -> lr * g / (|g| + eps): up the gradient of J.
    assert d1.tolist() == pytest.approx((lr * g1 / (g1.abs() + eps)).tolist(), abs=1e-6)
    (d2,) = ascent.delta([g2])
    m = (1 - b1) * (b1 * g1 + g2)
    v = (1 - b2) * (b2 * g1**2 + g2**2)
    expected = lr * (m / (1 - b1**2)) / ((v / (1 - b2**2)).sqrt() + eps)
    assert d2.tolist() == pytest.approx(expected.tolist(), rel=1e-5)  # the moments persist across steps


class LinearRM(torch.nn.Module):
    """r(x) = w . x: small enough that every gradient has a closed form."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w, dtype=torch.float64))

    def forward(self, x):
        return x @ self.w


def closed_form_bt_grad(w, xc, xr):
    # L = -mean log sigma(w.(xc-xr)) -> dL/dw = -mean sigma(-w.(xc-xr)) (xc-xr)
    d = xc - xr
    return -(torch.sigmoid(-(d @ w))[:, None] * d).mean(0)


def fd_grad(f, w, h=1e-6):
    out = torch.zeros_like(w)
    for i in range(len(w)):
        up, down = w.clone(), w.clone()
        up[i] += h
        down[i] -= h
        out[i] = (f(up) - f(down)) / (2 * h)
    return out


def world():
    g = torch.Generator().manual_seed(3)
    xc, xr = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    meta = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)  # 2 prompts x k=4 responses
    return xc, xr, meta


@pytest.mark.parametrize("variant", ["restored", "alternating"])
def test_metarm_step_applies_the_gradient_taken_at_theta_prime(variant):
    """Plain SGD as the main optimizer: theta_new = theta - alpha * grad L(theta') (restored) or
    theta' - alpha * grad L(theta') (alternating), with theta' = theta + Delta, grad J by finite differences."""
    xc, xr, meta = world()
    w0 = torch.tensor([0.2, -0.4, 0.1], dtype=torch.float64)
    model = LinearRM(w0.tolist())
    alpha, eta = 0.5, 0.05
    opt = torch.optim.SGD(model.parameters(), lr=alpha)
    ascent = MetaAscent([w0.shape], eta, betas=(0.9, 0.999), eps=1e-12, dtype=torch.float64)
    stats = metarm_step(list(model.parameters()), lambda: bradley_terry_loss(model(xc), model(xr)),
                        lambda: difference_loss(model(meta)), opt, ascent, variant)

    grad_j = fd_grad(lambda w: difference_loss(meta @ w).item(), w0)
    delta = eta * grad_j / grad_j.abs()  # Adam's first step
    w_prime = w0 + delta
    grad_l = closed_form_bt_grad(w_prime, xc, xr)
    start = w0 if variant == "restored" else w_prime
    assert model.w.detach().tolist() == pytest.approx((start - alpha * grad_l).tolist(), abs=1e-8)
    assert stats["metarm/J"] == pytest.approx(difference_loss(meta @ w0).item())
    # The gradient at theta' is not the gradient at theta: the test would notice a step that ignored Delta.
    assert (grad_l - closed_form_bt_grad(w0, xc, xr)).abs().max() > 1e-3


@pytest.mark.parametrize("variant", ["restored", "alternating"])
def test_restored_adam_leaves_params_and_both_optimizer_states_as_specified(variant):
    xc, xr, meta = world()
    w0 = torch.tensor([0.2, -0.4, 0.1], dtype=torch.float64)
    model = LinearRM(w0.tolist())
    b1, b2, eps, lr, wd = 0.9, 0.95, 1e-8, 0.01, 0.1
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    ascent = MetaAscent([w0.shape], 0.05, betas=(0.8, 0.9), eps=eps, dtype=torch.float64)
    metarm_step(list(model.parameters()), lambda: bradley_terry_loss(model(xc), model(xr)),
                lambda: difference_loss(model(meta)), opt, ascent, variant)

    grad_j = torch.autograd.functional.jacobian(lambda w: difference_loss(meta @ w), w0)
    w_prime = w0 + 0.05 * grad_j / (grad_j.abs() + eps)
    g = closed_form_bt_grad(w_prime, xc, xr)
    # The main AdamW saw exactly one gradient, the one at theta'; the ascent's Adam exactly one, -grad J at theta.
    main = opt.state[model.w]
    assert main["exp_avg"].tolist() == pytest.approx(((1 - b1) * g).tolist(), rel=1e-9)
    assert main["exp_avg_sq"].tolist() == pytest.approx(((1 - b2) * g**2).tolist(), rel=1e-9)
    meta_state = ascent.optimizer.state[ascent.shadow[0]]
    assert meta_state["exp_avg"].tolist() == pytest.approx(((1 - 0.8) * -grad_j).tolist(), rel=1e-9)
    assert float(meta_state["step"]) == 1.0 and float(main["step"]) == 1.0
    start = w0 if variant == "restored" else w_prime
    adam = lr * g / (g.abs() + eps)  # first AdamW step; decoupled decay of the parameter it steps
    assert model.w.detach().tolist() == pytest.approx((start * (1 - lr * wd) - adam).tolist(), abs=1e-10)


def test_without_the_meta_term_it_is_the_plain_bt_step():
    xc, xr, _ = world()
    models = [LinearRM([0.2, -0.4, 0.1]) for _ in range(2)]
    opts = [torch.optim.AdamW(m.parameters(), lr=0.01) for m in models]
    metarm_step(list(models[0].parameters()), lambda: bradley_terry_loss(models[0](xc), models[0](xr)), None, opts[0],
                None)
    bradley_terry_loss(models[1](xc), models[1](xr)).backward()
    opts[1].step()
    assert torch.equal(models[0].w, models[1].w)


def test_unknown_variant_is_an_error():
    model = LinearRM([0.0])
    with pytest.raises(ValueError, match="unknown MetaRM variant"):
        metarm_step(list(model.parameters()), lambda: model.w.sum(), None, torch.optim.SGD(model.parameters(), lr=1),
                    None, "sgd")
