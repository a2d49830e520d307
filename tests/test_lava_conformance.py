"""Lava, spike for spike: float against the PyTorch hard model in float64, fixed point against the
integer reference of docs/deployment.md (tests/lava_helpers.py; the emulator once merged).

Each test streams several samples back to back through one compiled network, so it also checks the
per-layer delay alignment and the periodic reset (nonzero biases would leak into the next sample).
"""
import numpy as np
import pytest
import torch

from sast_deploy.export.deployed import DeployedLayer, DeployedNetwork, FixedPoint
from lava_helpers import deployed_from_snn, fixed_reference, random_fixed
from sast_deploy.hardware_sim import lava_runner
from sast_deploy.hardware_sim.conformance import first_mismatch, layer_mismatches
from sast_deploy.hardware_sim.lava.network import SASTNetwork
from sast_deploy.hardware_sim.lava.stream import RingSink, RingSource
from sast_deploy.hardware_sim.lava_runtime import shutdown, start
from sast_deploy.hardware_sim.readout import readout_logits
from sast_deploy.lava import run_lava
from sast_deploy.model import SNN, LayerSpec, NetworkSpec

T = 6


def mlp() -> SNN:
    return _randomised(NetworkSpec((2, 4, 4), 3, [
        LayerSpec([{"kind": "flatten"}, {"kind": "linear", "out": 12}], alpha=0.8),
        LayerSpec([{"kind": "linear", "out": 6}], alpha=0.5),
    ]))


def conv_net() -> SNN:
    return _randomised(NetworkSpec((2, 6, 6), 3, [
        LayerSpec([{"kind": "conv", "out": 4, "kernel": 3, "stride": 2, "padding": 1}], alpha=0.7),
        LayerSpec([{"kind": "flatten"}, {"kind": "linear", "out": 8}], alpha=0.9),
    ]))


def _randomised(spec: NetworkSpec) -> SNN:
    """Per-neuron thresholds, nonzero biases, weights strong enough for busy layers."""
    model = SNN(spec).double()
    model.mode = "hard"
    with torch.no_grad():
        for lif in model.lifs:
            lif.theta.uniform_(0.2, 1.0)
        for layer in model.layers:
            op = [m for m in layer.block if hasattr(m, "weight")][0]
            op.weight.mul_(2.5)
            op.bias.uniform_(-0.3, 0.3)
    return model


def graded(B, shape=(2, 4, 4)):
    return torch.rand(T, B, *shape, dtype=torch.float64)


def binary(B, shape=(2, 6, 6)):
    return (torch.rand(T, B, *shape) < 0.3).double()


def assert_busy(spikes):
    for i, s in enumerate(spikes):
        assert 0.05 < np.mean(s) < 0.95, f"layer {i} spike rate {np.mean(s):.3f}: the test would prove little"


def assert_float_conformance(model, x, got):
    logits, spikes, potentials = model(x, return_spikes=True, return_potentials=True)
    want = [s.numpy() for s in spikes]
    where = first_mismatch(got.spikes, want)
    if where is not None:  # a flip is only acceptable as a tie within rounding: show the margin
        layer, t, b, *idx = where
        u = potentials[layer][(t, b, *idx)].item()
        theta = model.lifs[layer].theta[tuple(idx)].item()
        pytest.fail(f"spike flip at layer {layer}, step {t}, sample {b}, neuron {idx}: reference "
                    f"u - theta = {u - theta:.3e}; mismatches per layer {layer_mismatches(got.spikes, want)}")
    assert_busy(want)
    np.testing.assert_allclose(got.logits, logits.detach().numpy(), rtol=0, atol=1e-12)


def test_float_mlp_graded_input_streamed_in_batches_matches_torch_float64(monkeypatch):
    model = mlp()
    x = graded(5)
    # A tiny ring: many run calls, the ring wrapping, windows spanning calls and batches.
    monkeypatch.setattr(lava_runner, "RING_BYTES", 1)
    got = run_lava(deployed_from_snn(model, T, "max"), [x[:, :2].numpy(), x[:, 2:].numpy()], "float")
    assert got.steps == 5 * T + 2
    assert_float_conformance(model, x, got)


def test_float_conv_binary_input_matches_torch_float64():
    model = conv_net()
    x = binary(4)
    assert_float_conformance(model, x, run_lava(deployed_from_snn(model, T, "binary"), x.numpy(), "float"))


def test_fixed_mlp_binary_input_is_bit_identical_to_integer_reference():
    rng = np.random.default_rng(1)
    net = random_fixed(deployed_from_snn(mlp(), T, "binary"), rng, [(20, 200), (20, 200)])
    x = binary(5, (2, 4, 4)).numpy()
    want = fixed_reference(net, x)
    got = run_lava(net, x)  # quantized: fixed point by default
    assert got.precision == "fixed"
    assert layer_mismatches(got.spikes, want) == [0, 0]
    assert_busy(want)
    counts = want[-1].sum(0).reshape(5, -1)
    np.testing.assert_array_equal(got.counts, counts)
    np.testing.assert_array_equal(got.logits, readout_logits(counts, net.readout_weight, net.readout_bias, T))


def test_fixed_conv_graded_input_and_native_readout_are_bit_identical(tmp_path):
    rng = np.random.default_rng(2)
    net = random_fixed(deployed_from_snn(conv_net(), T, "max"), rng, [(20000, 100000), (20, 200)])
    x = graded(4, (2, 6, 6)).numpy()
    want = fixed_reference(net, x)
    got = run_lava(net, x, "fixed")
    assert layer_mismatches(got.spikes, want) == [0, 0]
    assert_busy(want)
    logits = readout_logits(want[-1].sum(0).reshape(4, -1), net.readout_weight, net.readout_bias, T)

    # The Lava-native readout, wired as an app would: its output at each window's last step.
    lnet = SASTNetwork(net, readout=True)
    steps = np.concatenate([lnet.encode(x), np.zeros((2, *lnet.inp.shape))])
    n = len(steps)
    np.memmap(tmp_path / "in", np.int32, "w+", shape=steps.shape)[:] = steps
    np.memmap(tmp_path / "out", np.float64, "w+", shape=(n, 3))
    RingSource(shape=lnet.inp.shape, path=tmp_path / "in", dtype="int32", length=n).s_out.connect(lnet.inp)
    lnet.out.connect(RingSink(shape=(3,), path=tmp_path / "out", dtype="float64", length=n).a_in)
    try:
        start(lnet, lnet.run_config(), n)
    finally:
        shutdown(lnet)
    out = np.memmap(tmp_path / "out", np.float64, "r", shape=(n, 3))
    native = np.stack([out[lnet.window(k)[-1] - 1] for k in range(4)])
    np.testing.assert_array_equal(native, logits)
    np.testing.assert_array_equal(got.logits, logits)


def test_fixed_point_edge_cases_follow_the_contract():
    """Hand-built neurons whose spikes hinge on one rule each of docs/deployment.md:
    A strict `v > vth` at equality; B decay rounded toward zero on a negative potential;
    C one saturation after subtracting the reset (not before); D weight_exp flooring a negative sum."""
    w = np.zeros((4, 11), np.int64)
    w[1, 0], w[2, 2:], w[3, 1] = 8, 254, -2  # B reads input 0, C inputs 2..10, D input 1
    fx = FixedPoint(w, weight_exp=-2, bias_mant=np.array([50, -1, 0, 21]), bias_exp=6,
                    vth=np.array([50, 100, 100000, 20]), dv=10, scale=1.0)
    layer = DeployedLayer("dense", (11,), (4,), np.zeros((4, 11)), np.zeros(4), np.ones(4), 1.0, fixed=fx)
    net = DeployedNetwork([layer], np.ones((2, 4)), np.zeros(2), 4, (11,), "max")
    z = np.zeros((4, 11))
    z[0, 1], z[1, 0], z[:2, 2:] = 1, 51, 255
    x = np.repeat((z / 255)[:, None], 2, axis=1)  # the same sample twice, back to back
    want = fixed_reference(net, x)[0]
    hinges = [want[0, :, 0], want[1, :, 0], want[1, :, 1], want[1, :, 2], want[0, :, 3]]  # [step, sample, neuron]
    np.testing.assert_array_equal(hinges, [[0, 0], [1, 1], [1, 1], [1, 1], [0, 0]])
    got = run_lava(net, x, "fixed")
    np.testing.assert_array_equal(got.spikes[0], want)
