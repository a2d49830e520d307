"""SAM/ASAM (paper Algorithm 1) on problems with known gradients, and one training iteration of the
real SNN against a step-by-step recomputation."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sast_deploy.model import SNN, LayerSpec, NetworkSpec
from sast_deploy.training.batches import epoch_batches, epoch_order
from sast_deploy.training.sam import SAM, perturbation
from sast_deploy.training.step import Updater

A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 2.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def quadratic_grad(w, c):
    """L_c(w) = 1/2 (w - c)^T A (w - c), so grad = A (w - c)."""
    return A @ (w - c)


def test_sam_on_a_quadratic_perturbs_restores_and_steps_with_g_prime():
    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    cB, cB2 = torch.tensor([0.3, 0.1, -0.2], dtype=torch.float64), torch.tensor([-1.0, 0.4, 2.0], dtype=torch.float64)
    rho, lr, delta = 0.1, 0.05, 1e-12
    w = torch.nn.Parameter(w0.clone())
    sam = SAM([w], torch.optim.SGD([w], lr=lr), rho=rho, delta=delta)

    w.grad = quadratic_grad(w.detach(), cB)
    g = w.grad.clone()
    norm = sam.first_step()
    eps = rho * g / (g.norm() + delta)
    torch.testing.assert_close(norm, g.norm(), rtol=0, atol=1e-15)
    torch.testing.assert_close(w.detach(), w0 + eps, rtol=0, atol=1e-15)
    assert abs(float(eps.norm()) - rho) < 1e-12

    w.grad = quadratic_grad(w.detach(), cB2)  # g' at w + eps on B'
    g_prime = quadratic_grad(w0 + eps, cB2)
    sam.second_step()
    torch.testing.assert_close(w.detach(), w0 - lr * g_prime, rtol=0, atol=1e-14)
    assert not torch.allclose(w.detach(), w0 - lr * g)                  # not plain SGD with g
    assert not torch.allclose(w.detach(), w0 - lr * quadratic_grad(w0 + eps, cB))  # not g' on B


def test_restore_is_bitwise_where_subtracting_eps_would_round():
    torch.manual_seed(3)
    w0 = torch.randn(1000)
    w = torch.nn.Parameter(w0.clone())
    sam = SAM([w], torch.optim.SGD([w], lr=0.0), rho=0.37)
    w.grad = torch.randn(1000)
    sam.first_step()
    eps = w.detach() - w0
    assert not torch.equal(w.detach() - eps, w0)  # the naive w + eps - eps rounds somewhere
    w.grad = torch.randn(1000)
    sam.second_step()  # lr 0: only the restore changes w
    assert torch.equal(w.detach(), w0)


def test_asam_scales_the_neighbourhood_with_the_weights():
    torch.manual_seed(0)
    params = [torch.randn(4, 3), torch.randn(5)]
    grads = [torch.randn(4, 3), torch.randn(5)]
    rho, eta, delta = 0.5, 0.01, 1e-12
    eps, norm = perturbation(params, grads, rho, adaptive=True, delta=delta, eta=eta)
    T = [p.abs() + eta for p in params]
    tg = torch.cat([(t * g).flatten() for t, g in zip(T, grads)])
    assert torch.allclose(norm, tg.norm())
    for e, t, g in zip(eps, T, grads):
        torch.testing.assert_close(e, rho * t * t * g / (tg.norm() + delta))
    # ||T^-1 eps|| = rho, and with eta = 0 rescaling w -> c w (g -> g / c, a scale-invariant loss)
    # rescales eps -> c eps: the neighbourhood follows the weights
    assert abs(float(torch.cat([(e / t).flatten() for e, t in zip(eps, T)]).norm()) - rho) < 1e-5
    c = [torch.rand_like(p) * 3 + 0.5 for p in params]
    eps0, _ = perturbation(params, grads, rho, adaptive=True, eta=0.0)
    eps_c, _ = perturbation([ci * p for ci, p in zip(c, params)], [g / ci for ci, g in zip(c, grads)], rho,
                            adaptive=True, eta=0.0)
    for e0, ec, ci in zip(eps0, eps_c, c):
        torch.testing.assert_close(ec, ci * e0)
    plain, _ = perturbation(params, grads, rho)
    assert not torch.allclose(plain[0], eps[0])


def test_batches_b_prime_is_an_independent_shuffle_and_reuse_is_b():
    n, bs = 70, 16
    pairs = epoch_batches(n, bs, seed=0, epoch=0)
    first = np.concatenate([b for b, _ in pairs])
    second = np.concatenate([b2 for _, b2 in pairs])
    assert sorted(first) == list(range(n)) and sorted(second) == list(range(n))  # each sample once per epoch
    assert [len(b) for b, _ in pairs] == [len(b2) for _, b2 in pairs]
    assert sum(not np.array_equal(b, b2) for b, b2 in pairs) == len(pairs)
    assert all(np.array_equal(b, b2) for b, b2 in epoch_batches(n, bs, seed=0, epoch=0, reuse=True))
    assert np.array_equal(epoch_order(n, 0, "B", 0), first)  # same seed, same order
    assert not np.array_equal(epoch_order(n, 0, "B", 1), first)
    assert not np.array_equal(epoch_order(n, 1, "B", 0), first)


def small_snn(norm=()):
    spec = NetworkSpec((2, 4, 4), 3, [LayerSpec([{"kind": "flatten"}, {"kind": "linear", "out": 12}, *norm],
                                                alpha=0.8, theta_init=0.5)], k=2.0)
    return SNN(spec).double()


def batch(seed, n=6, T=5):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, n, 2, 4, 4, generator=g, dtype=torch.float64).round(),
            torch.randint(0, 3, (n,), generator=g))


def grads_at(model, x, y):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("reuse", [False, True])
def test_sast_iteration_of_the_snn_matches_algorithm_1(reuse):
    rho, lr = 0.2, 0.1
    model = small_snn()
    ref = copy.deepcopy(model)
    B, B2 = batch(1), batch(2)
    second = B if reuse else B2
    upd = Updater(model, torch.optim.SGD(model.parameters(), lr=lr), model.project_, rho=rho)
    upd(B, lambda: second)

    w = [p.detach().clone() for p in ref.parameters()]
    g = grads_at(ref, *B)
    norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
    with torch.no_grad():
        for p, gi in zip(ref.parameters(), g):
            p.add_(rho * gi / (norm + 1e-12))
    g2 = grads_at(ref, *second)
    with torch.no_grad():
        for p, wi, gi in zip(ref.parameters(), w, g2):
            p.copy_(wi - lr * gi)
    ref.project_()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)
    # and it is not the plain step on B
    plain = [wi - lr * gi for wi, gi in zip(w, g)]
    assert not all(torch.allclose(p, q) for p, q in zip(model.parameters(), plain))


def test_baseline_takes_one_pass_and_never_draws_b_prime():
    model = small_snn()
    upd = Updater(model, torch.optim.SGD(model.parameters(), lr=0.1), model.project_)
    assert upd.passes == 1 and not upd.needs_second_batch

    def no_second():
        raise AssertionError("the baseline drew B'")

    upd(batch(1), no_second)


def test_compute_matched_takes_two_plain_steps_on_b_then_b_prime():
    model, ref = small_snn(), None
    ref = copy.deepcopy(model)
    B, B2 = batch(1), batch(2)
    upd = Updater(model, torch.optim.SGD(model.parameters(), lr=0.1), model.project_, compute_matched=True)
    assert upd.passes == 2 and upd.optimizer_steps == 2
    upd(B, lambda: B2)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for x, y in (B, B2):
        opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        opt.step()
        ref.project_()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_perturbed_pass_leaves_batchnorm_statistics_alone():
    model = small_snn(norm=({"kind": "batchnorm"},))
    ref = copy.deepcopy(model)
    B = batch(1)
    Updater(model, torch.optim.SGD(model.parameters(), lr=0.1), model.project_, rho=0.5)(B, lambda: batch(2))
    ref.train()
    ref(B[0])  # one pass at w on B: the statistics SAST should record
    bn, bn_ref = model.layers[0].block[2], ref.layers[0].block[2]
    assert torch.equal(bn.running_mean, bn_ref.running_mean) and torch.equal(bn.running_var, bn_ref.running_var)
    assert bn.track_running_stats
