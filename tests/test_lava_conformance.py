"""Lava, spike for spike: Lava float and the emulator's float against the PyTorch hard model in
float64; Lava fixed against the emulator's fixed point, bit for bit (every layer's spikes at every
step, counts and logits). Networks: small random SNNs folded by export, random integers anywhere in
the contract's ranges, and real folded + quantized networks (a conv net with avgpool and norm folded
in, an MLP) saved as artifacts and loaded by path.

Each Lava run streams several samples back to back through one compiled network, so it also checks
the per-layer delay alignment and the periodic reset (nonzero biases would leak into the next sample).
"""
import numpy as np
import pytest
import torch

from export_nets import conv_spec, frames, hard_forward, mlp_spec, randomized
from lava_helpers import random_fixed
from sast_deploy.export.artifact import load_artifact, save_artifact
from sast_deploy.export.deployed import DeployedLayer, DeployedNetwork, FixedPoint
from sast_deploy.export.fold import fold_network
from sast_deploy.export.quantize import quantize_network
from sast_deploy.hardware_sim import lava_runner
from sast_deploy.hardware_sim.conformance import first_mismatch, layer_mismatches
from sast_deploy.hardware_sim.emulator import emulate
from sast_deploy.hardware_sim.lava.network import SASTNetwork
from sast_deploy.hardware_sim.lava.stream import RingSink, RingSource
from sast_deploy.hardware_sim.lava_runtime import shutdown, start
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
    with torch.no_grad():
        for lif in model.lifs:
            lif.theta.uniform_(0.2, 1.0)
        for layer in model.layers:
            op = [m for m in layer.block if hasattr(m, "weight")][0]
            op.weight.mul_(2.5)
            op.bias.uniform_(-0.3, 0.3)
    return model


def graded(B, shape=(2, 4, 4)):
    return torch.rand(T, B, *shape, dtype=torch.float64).numpy()


def binary(B, shape=(2, 6, 6)):
    return (torch.rand(T, B, *shape) < 0.3).double().numpy()


def assert_busy(spikes):
    for i, s in enumerate(spikes):
        assert 0.02 < np.mean(s) < 0.95, f"layer {i} spike rate {np.mean(s):.3f}: the test would prove little"


def assert_matches_torch(model, x, runs: dict):
    """Every spike of each run (a LavaRun or an Emulation) equals the PyTorch hard model's in
    float64; a flip fails with the reference's u - theta there (only a tie within rounding could
    explain one). Logits agree to rounding (the readout sums in another order than torch)."""
    logits, spikes, potentials = hard_forward(model, x)
    assert_busy(spikes)
    for name, got in runs.items():
        where = first_mismatch(got.spikes, spikes)
        if where is not None:
            layer, t, b, *idx = where
            margin = potentials[layer][(t, b, *idx)] - model.lifs[layer].theta.detach().double().numpy()[tuple(idx)]
            pytest.fail(f"{name}: spike flip at layer {layer}, step {t}, sample {b}, neuron {idx}: reference "
                        f"u - theta = {margin:.3e}; mismatches per layer {layer_mismatches(got.spikes, spikes)}")
        np.testing.assert_allclose(got.logits, logits, rtol=0, atol=1e-12, err_msg=name)


def assert_bit_identical(got, want):
    """Lava fixed vs the emulator's fixed point: every spike, every count, every logit bit."""
    assert got.precision == "fixed"
    assert layer_mismatches(got.spikes, want.spikes) == [0] * len(want.spikes)
    assert_busy(want.spikes)
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_array_equal(got.logits, want.logits)


def test_float_mlp_graded_input_streamed_in_batches_matches_torch_float64(monkeypatch):
    model = mlp()
    net = fold_network(model, T, "max")
    x = graded(5)
    # A tiny ring: many run calls, the ring wrapping, windows spanning calls and batches.
    monkeypatch.setattr(lava_runner, "RING_BYTES", 1)
    got = run_lava(net, [x[:, :2], x[:, 2:]], "float")
    assert got.steps == 5 * T + 2
    assert_matches_torch(model, x, {"lava": got, "emulator": emulate(net, x, "float", batch_size=3)})


def test_float_conv_binary_input_matches_torch_float64():
    model = conv_net()
    net = fold_network(model, T, "binary")
    x = binary(4)
    assert_matches_torch(model, x, {"lava": run_lava(net, x, "float"), "emulator": emulate(net, x, "float")})


def test_fixed_mlp_binary_input_random_integers_are_bit_identical_to_the_emulator():
    net = random_fixed(fold_network(mlp(), T, "binary"), np.random.default_rng(1), [(20, 200), (20, 200)])
    x = binary(5, (2, 4, 4))
    assert_bit_identical(run_lava(net, x), emulate(net, x, "fixed"))  # quantized: fixed point by default


def test_fixed_conv_graded_input_and_native_readout_are_bit_identical_to_the_emulator(tmp_path):
    net = random_fixed(fold_network(conv_net(), T, "max"), np.random.default_rng(2), [(20000, 100000), (20, 200)])
    x = graded(4, (2, 6, 6))
    want = emulate(net, x, "fixed")
    assert_bit_identical(run_lava(net, x, "fixed"), want)

    # The Lava-native readout, wired as an app would: its output at each window's last step.
    lnet = SASTNetwork(net, readout=True)
    steps = np.concatenate([lnet.encode(x), np.zeros((2, *lnet.inp.shape), np.int32)])
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
    np.testing.assert_array_equal(np.stack([out[lnet.window(k)[-1] - 1] for k in range(4)]), want.logits)


def test_fixed_point_edge_cases_follow_the_contract():
    """Hand-built neurons whose spikes hinge on one rule each of docs/deployment.md:
    A strict `v > vth` at equality; B decay rounded toward zero on a negative potential;
    C one saturation after subtracting the reset (not before); D weight_exp flooring a negative sum."""
    w = np.zeros((4, 11), np.int64)
    w[1, 0], w[2, 2:], w[3, 1] = 8, 254, -2  # B reads input 0, C inputs 2..10, D input 1
    fx = FixedPoint(w, weight_exp=-2, bias_mant=np.array([50, -1, 0, 21]), bias_exp=6,
                    vth=np.array([50, 100, 100000, 20]), dv=10, scale=1.0, input_scale=255)
    layer = DeployedLayer("dense", (11,), (4,), np.zeros((4, 11)), np.zeros(4), np.ones(4), 1.0, fixed=fx)
    net = DeployedNetwork([layer], np.ones((2, 4)), np.zeros(2), 4, (11,), "max")
    z = np.zeros((4, 11))
    z[0, 1], z[1, 0], z[:2, 2:] = 1, 51, 255
    x = np.repeat((z / 255)[:, None], 2, axis=1)  # the same sample twice, back to back
    want = emulate(net, x, "fixed")
    s = want.spikes[0]
    hinges = [s[0, :, 0], s[1, :, 0], s[1, :, 1], s[1, :, 2], s[0, :, 3]]  # [step, sample, neuron]
    np.testing.assert_array_equal(hinges, [[0, 0], [1, 1], [1, 1], [1, 1], [0, 0]])
    assert want.saturated == [4]  # C, at steps 1 and 2 of each sample
    np.testing.assert_array_equal(run_lava(net, x, "fixed").spikes[0], s)


@pytest.mark.parametrize("spec, norm", [(conv_spec(), "binary"), (mlp_spec(), "max")], ids=["conv", "mlp"])
def test_exported_artifact_runs_by_path_float_like_torch_and_fixed_like_the_emulator(tmp_path, spec, norm):
    """fold_network (conv + norm + avgpool into one strided conv) -> quantize_network -> save_artifact;
    run_lava and the emulator load the file by path."""
    model = randomized(spec)
    path = tmp_path / "net.lava.h5"
    save_artifact(path, quantize_network(fold_network(model, T, norm))[0])
    x = frames(spec, T, 5, binary=norm == "binary")
    net = load_artifact(path)
    assert_matches_torch(model, x, {"lava": run_lava(path, x, "float"), "emulator": emulate(net, x, "float")})
    assert_bit_identical(run_lava(path, x, "fixed"), emulate(net, x, "fixed"))
