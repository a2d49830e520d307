"""The LIF SNN against an independent numpy reference of DESIGN §3."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sast_deploy.errors import ShapeError, SpecError
from sast_deploy.model import SNN, LayerSpec, NetworkSpec, Surrogate, preset
from sast_deploy.model.lif import LIF, lif_step


def numpy_lif(current, alpha, theta, spike):
    """u_t = alpha u_{t-1} + I_t - theta s_{t-1}; s_t = spike(u_t - theta), written independently."""
    T = current.shape[0]
    u = np.zeros(current.shape[1:])
    s = np.zeros(current.shape[1:])
    us, ss = [], []
    for t in range(T):
        u = alpha * u + current[t] - theta * s
        s = spike(u - theta)
        us.append(u.copy())
        ss.append(s.copy())
    return np.stack(us), np.stack(ss)


def np_arctan(k):
    return lambda x: 0.5 + np.arctan(k * x) / np.pi


def np_hard(x):
    return (x > 0).astype(np.float64)


def numpy_mlp(model, x, spike):
    """Reference forward of an MLP spec (flatten -> linear -> LIF per layer, readout)."""
    z = x.reshape(x.shape[0], x.shape[1], -1)
    spikes = []
    for layer in model.layers:
        lin = [m for m in layer.block if isinstance(m, torch.nn.Linear)][0]
        W, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
        current = z @ W.T + b
        _, z = numpy_lif(current, layer.lif.alpha, layer.lif.theta.detach().double().numpy(), spike)
        spikes.append(z)
    Wo, bo = model.readout.weight.detach().double().numpy(), model.readout.bias.detach().double().numpy()
    return z.mean(0) @ Wo.T + bo, spikes


def two_layer_mlp(k=2.0, surrogate="arctan"):
    spec = NetworkSpec((2, 5, 5), 4, [
        LayerSpec([{"kind": "flatten"}, {"kind": "linear", "out": 16}], alpha=0.8, theta_init=0.6),
        LayerSpec([{"kind": "linear", "out": 12}], alpha=0.5, theta_init=0.4),
    ], surrogate=surrogate, k=k)
    model = SNN(spec).double()
    with torch.no_grad():  # per-neuron thresholds, not all equal
        for lif in model.lifs:
            lif.theta.uniform_(0.2, 1.0)
    return model


def test_hard_mode_spikes_identical_to_numpy_in_float64():
    model = two_layer_mlp()
    x = torch.rand(12, 6, 2, 5, 5, dtype=torch.float64)
    model.mode = "hard"
    logits, spikes = model(x, return_spikes=True)
    ref_logits, ref_spikes = numpy_mlp(model, x.numpy(), np_hard)
    for s, r in zip(spikes, ref_spikes):
        assert s.sum() > 0 and np.array_equal(s.detach().numpy(), r)
    np.testing.assert_allclose(logits.detach().numpy(), ref_logits, rtol=0, atol=1e-12)


def test_surrogate_mode_matches_numpy_within_1e6():
    model = two_layer_mlp()
    x = torch.rand(12, 6, 2, 5, 5, dtype=torch.float64)
    logits, spikes = model(x, return_spikes=True)
    ref_logits, ref_spikes = numpy_mlp(model, x.numpy(), np_arctan(2.0))
    for s, r in zip(spikes, ref_spikes):
        np.testing.assert_allclose(s.detach().numpy(), r, atol=1e-6)
    np.testing.assert_allclose(logits.detach().numpy(), ref_logits, atol=1e-6)


def test_float32_surrogate_matches_reference():
    model = two_layer_mlp().float()
    x = torch.rand(8, 3, 2, 5, 5)
    ref_logits, _ = numpy_mlp(model, x.double().numpy(), np_arctan(2.0))
    np.testing.assert_allclose(model(x).detach().double().numpy(), ref_logits, atol=1e-5)


def test_reset_by_subtraction_hand_computed():
    """alpha 0.5, theta 1, I = (1.5, 0.2, 0.2): u1 = 1.5 -> spike; u2 = 0.75 + 0.2 - 1 = -0.05 (reset
    un-decayed, one step late); u3 = -0.025 + 0.2 = 0.175."""
    lif = LIF((1,), alpha=0.5, theta_init=1.0, surrogate=Surrogate()).double()
    lif.mode = "hard"
    current = torch.tensor([1.5, 0.2, 0.2], dtype=torch.float64).reshape(3, 1, 1)
    s, u = lif(current, return_potentials=True)
    assert s.flatten().tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(u.detach().flatten().numpy(), [1.5, -0.05, 0.175], atol=1e-15)


def test_spike_is_strict_at_threshold():
    lif = LIF((1,), alpha=1.0, theta_init=1.0, surrogate=Surrogate()).double()
    lif.mode = "hard"
    s = lif(torch.tensor([1.0, 1e-12]).double().reshape(2, 1, 1))
    assert s.flatten().tolist() == [0.0, 1.0]  # u == theta does not spike; u > theta does


def test_surrogate_gradcheck_float64():
    model = two_layer_mlp(k=1.5)
    x = torch.rand(4, 2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,), eps=1e-6, atol=1e-5)

    # and with respect to theta, which enters twice (threshold and reset)
    sur = Surrogate("arctan", 2.0)
    cur = torch.randn(5, 2, 3, dtype=torch.float64)

    def spikes(theta):
        u = s = torch.zeros(2, 3, dtype=torch.float64)
        out = []
        for t in range(5):
            u, s = lif_step(u, s, cur[t], 0.7, theta, sur)
            out.append(s)
        return torch.stack(out)

    theta = torch.rand(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(spikes, (theta,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ["arctan", "fast-sigmoid"])
def test_ste_gradient_is_surrogate_derivative(name):
    sur = Surrogate(name, 3.0)
    lif = LIF((7,), alpha=0.0, theta_init=0.5, surrogate=sur).double()
    lif.mode = "ste"
    current = torch.randn(1, 4, 7, dtype=torch.float64, requires_grad=True)
    s = lif(current)
    assert torch.equal(s, (current - 0.5 > 0).double())  # hard forward
    s.sum().backward()
    torch.testing.assert_close(current.grad, sur.grad(current.detach() - 0.5))


@pytest.mark.parametrize("name", ["arctan", "fast-sigmoid"])
def test_surrogate_constants_are_suprema(name):
    sur = Surrogate(name, 2.5)
    x = torch.linspace(-5, 5, 200001, dtype=torch.float64, requires_grad=True)
    y = sur(x)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    torch.testing.assert_close(g.detach(), sur.grad(x.detach()))
    assert math.isclose(g.max().item(), sur.B1, rel_tol=1e-6)
    assert h.abs().max().item() <= sur.B2 * (1 + 1e-9) and h.abs().max().item() > 0.99 * sur.B2
    assert 0 < y.min() and y.max() < 1


def test_mode_switch_shares_weights():
    model = preset("mlp", (2, 34, 34), 10)
    model = SNN(model)
    x = (torch.rand(5, 2, 2, 34, 34) < 0.2).float()
    with model.in_mode("hard"):
        assert model.mode == "hard" and all(l.mode == "hard" for l in model.lifs)
        h = model(x)
    assert model.mode == "surrogate"
    assert not torch.equal(h, model(x))
    with pytest.raises(ValueError):
        model.mode = "soft"


def test_conv_avgpool_norm_block_against_functional():
    spec = NetworkSpec((2, 9, 9), 3, [LayerSpec([
        {"kind": "conv", "out": 4, "kernel": 3, "stride": 2, "padding": 1},
        {"kind": "avgpool", "kernel": 2}, {"kind": "norm"}])])
    model = SNN(spec).double()
    conv, _, norm = model.layers[0].block
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.rand(6, 2, 9, 9, dtype=torch.float64)
    ref = F.avg_pool2d(F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1), 2)
    ref = ref * norm.weight.reshape(1, -1, 1, 1) + norm.bias.reshape(1, -1, 1, 1)
    torch.testing.assert_close(model.layers[0].block(x), ref)
    assert spec.layer_shapes() == [(4, 2, 2)] and tuple(ref.shape[1:]) == (4, 2, 2)


def test_theta_projection_keeps_thresholds_positive():
    model = two_layer_mlp()
    with torch.no_grad():
        model.lifs[0].theta.fill_(-1.0)
    model.project_()
    assert float(model.lifs[0].theta.detach().min()) == pytest.approx(model.spec.theta_min)


def test_spec_round_trip_and_errors():
    spec = preset("conv", (2, 34, 34), 10, class_names=[str(i) for i in range(10)])
    assert NetworkSpec.from_json(spec.to_json()) == spec
    assert spec.layer_shapes() == [(16, 17, 17), (32, 8, 8)]
    with pytest.raises(SpecError, match="flatten"):
        NetworkSpec((2, 4, 4), 3, [LayerSpec([{"kind": "linear", "out": 5}])])
    with pytest.raises(SpecError, match="exactly one"):
        NetworkSpec((8,), 3, [LayerSpec([{"kind": "norm"}])])
    with pytest.raises(SpecError, match="unknown op"):
        NetworkSpec((8,), 3, [LayerSpec([{"kind": "dropout"}])])
    with pytest.raises(SpecError, match="version"):
        NetworkSpec.from_dict({**spec.to_dict(), "version": 99})
    with pytest.raises(SpecError, match="does not fit|do not fit"):
        NetworkSpec((2, 3, 3), 3, [LayerSpec([{"kind": "conv", "out": 4, "kernel": 5}])])


def test_wrong_input_shape_is_a_clear_error():
    model = SNN(preset("mlp", (2, 34, 34), 10))
    with pytest.raises(ShapeError, match=r"\[T, B, 2, 34, 34\]"):
        model(torch.zeros(2, 34, 34, 5))
