"""Theory diagnostics against values computed independently on tiny models."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from sast_deploy.evaluation.diagnostics import (Objective, beta_bound, diagnose, held_out_subset, per_example,
                                                sam_gap, secant_smoothness)
from sast_deploy.model import SNN, LayerSpec, NetworkSpec


def tiny_net(theta=1.0, k=2.0, alpha=0.9, extra_ops=()):
    spec = NetworkSpec((6,), 3, [LayerSpec([{"kind": "linear", "out": 5}, *extra_ops], alpha, theta),
                                 LayerSpec([{"kind": "linear", "out": 4}], alpha, theta)], k=k)
    return SNN(spec).double().eval()


def data(B=6, T=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, B, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (B,), generator=g)


def flat_loss(model, x, y):
    """L as a function of a flat parameter vector, written with functional_call (independent of Objective)."""
    names = [(n, p.shape, p.numel()) for n, p in model.named_parameters()]

    def L(w):
        params, i = {}, 0
        for n, shape, size in names:
            params[n] = w[i:i + size].view(shape)
            i += size
        return F.cross_entropy(functional_call(model, params, (x,)), y)
    return L


def test_secant_of_a_quadratic_is_its_hessian_norm():
    # isotropic: every direction gives exactly c
    c = 3.7
    out = secant_smoothness(lambda w: c * w, torch.zeros(20, dtype=torch.float64), [0.1, 1.0, 10.0], 5)
    assert out["beta_hat"] == pytest.approx(c, rel=1e-12)
    assert out["beta_hat_per_radius"] == pytest.approx([c] * 3, rel=1e-12)
    # anisotropic, 2-D: ratios lie in [lambda_min, lambda_max] and many directions reach ||H||
    H = torch.tensor([[5.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    eig = np.linalg.eigvalsh(H.numpy())
    out = secant_smoothness(lambda w: H @ w, torch.tensor([0.3, -1.0], dtype=torch.float64), [0.5], 400)
    ratios = np.array(out["ratios"][0])
    assert ratios.min() >= eig[0] - 1e-9 and ratios.max() <= eig[1] + 1e-9
    assert out["beta_hat"] == pytest.approx(eig[1], rel=1e-3)


def test_sigma_min_and_grad_norms_match_independent_autograd_and_numpy_svd():
    model = tiny_net()
    x, y = data()
    out = per_example(model, x, y)
    params = dict(model.named_parameters())
    for i in range(x.shape[1]):
        xi = x[:, i:i + 1]
        J = torch.autograd.functional.jacobian(lambda *ps: functional_call(model, dict(zip(params, ps)), (xi,))[0],
                                               tuple(params.values()))
        J = torch.cat([j.reshape(3, -1) for j in J], dim=1).numpy()
        sv = np.linalg.svd(J @ J.T, compute_uv=False)
        assert out["sigma_min_JJt"][i] == pytest.approx(sv.min(), rel=1e-8, abs=1e-12)
        loss = F.cross_entropy(model(xi), y[i:i + 1])
        gw = torch.autograd.grad(loss, list(params.values()))
        assert out["grad_w_norm"][i] == pytest.approx(float(torch.cat([g.reshape(-1) for g in gw]).norm()), rel=1e-9)
        xg = xi.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(F.cross_entropy(model(xg), y[i:i + 1]), xg)
        assert out["grad_x_norm"][i] == pytest.approx(float(gx.norm()), rel=1e-9)


def test_sam_gap_is_the_loss_rise_along_the_normalised_gradient():
    model = tiny_net()
    x, y = data()
    L = flat_loss(model, x, y)
    obj = Objective(model, x, y)
    w = obj.w0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(L(w), w)
    gaps = sam_gap(obj, [0.05, 0.2])
    for r in (0.05, 0.2):
        want = float(L(obj.w0 + r * g / g.norm()) - L(obj.w0))
        assert gaps[f"{r:g}"] == pytest.approx(want, rel=1e-9)
    assert torch.equal(torch.nn.utils.parameters_to_vector(model.parameters()), obj.w0)  # weights restored


@pytest.mark.parametrize("theta,k,alpha", [(1.0, 2.0, 0.9), (0.2, 0.5, 0.5), (3.0, 5.0, 0.3)])
def test_bound_holds_against_the_exact_hessian_and_the_secant(theta, k, alpha):
    model = tiny_net(theta, k, alpha)
    x, y = data()
    L = flat_loss(model, x, y)
    obj = Objective(model, x, y)
    hess_norm = float(np.abs(np.linalg.eigvalsh(torch.autograd.functional.hessian(L, obj.w0).numpy())).max())
    b0 = beta_bound(model, T=4)
    assert b0["beta"] >= hess_norm
    sec = secant_smoothness(obj.grad, obj.w0, [0.05, 0.5], 8)
    for r, beta_hat in zip(sec["radii"], sec["beta_hat_per_radius"]):
        assert beta_bound(model, T=4, radius=r)["beta"] >= beta_hat
    assert beta_bound(model, T=4, radius=0.5)["beta"] > b0["beta"]  # a larger ball can only loosen it


def test_bound_refuses_ops_it_does_not_cover():
    out = beta_bound(tiny_net(extra_ops=[{"kind": "norm"}]), T=4)
    assert out["beta"] is None and "norm" in out["reason"]


def test_diagnose_on_frames(tiny_run):
    from sast_deploy.training.rundir import load_run, read_metrics

    run = load_run(tiny_run)
    val = run.frames("val", progress=False)
    records = read_metrics(tiny_run)
    d = diagnose(run.model, val, samples=5, sam_radii=[0.1], secant_radii=[0.01], directions=2, checkpoints=records,
                 progress=False)
    assert d["samples"] == 5 and d["grad_w_norm"]["n"] == 5
    assert d["sam_gap"]["0.1"] > 0  # a step up the gradient raises the loss at this scale
    assert d["beta_bound"]["beta"] >= d["secant"]["beta_hat"]
    assert d["constants"]["gamma_hat"] == pytest.approx(run.summary["gamma_hat"], rel=1e-6)
    with_constants = [r for r in records if "gamma_hat" in r]
    assert [c["gamma_hat"] for c in d["constants_per_checkpoint"]] == [r["gamma_hat"] for r in with_constants]
    assert math.isfinite(d["sigma_min_JJt"]["median"])
    assert np.array_equal(held_out_subset(100, 5), held_out_subset(100, 5))
