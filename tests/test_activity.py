"""Activity metrics (evaluation/activity.py): the counts against NeuroBench's method written out
independently in torch, exact conv fan-out at padded borders, footprint and connection sparsity,
and the PyTorch model, the emulator and Lava agreeing on every integer for one exported artifact."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from export_nets import conv_spec, frames, mlp_spec, randomized
from sast_deploy.data import load_frames
from sast_deploy.evaluation.activity import FIXED_BITS, ActivityMeter, conv_fanout, footprint_bytes
from sast_deploy.evaluation.model_activity import model_activity
from sast_deploy.export.command import export_run
from sast_deploy.export.fold import fold_network
from sast_deploy.export.quantize import quantize_network
from sast_deploy.hardware_sim.emulator import emulate
from sast_deploy.hardware_sim.simulation import simulate, subset
from sast_deploy.jsonio import write_json
from sast_deploy.model import LayerSpec, NetworkSpec, save_model


def test_conv_fanout_counts_only_synapses_inside_the_input():
    ones = np.ones((1, 1, 3, 3), bool)
    np.testing.assert_array_equal(conv_fanout(ones, (1, 3, 3), (1, 3, 3), 1, 1)[0],
                                  [[4, 6, 4], [6, 9, 6], [4, 6, 4]])
    rng = np.random.default_rng(0)
    mask = rng.random((3, 2, 4, 4)) < 0.6  # zero weights too
    in_shape, stride, pad = (2, 9, 7), 2, 2
    oh, ow = (9 + 2 * pad - 4) // stride + 1, (7 + 2 * pad - 4) // stride + 1
    want = np.zeros(in_shape, np.int64)  # brute force: every output, every tap that lands inside
    for o in range(3):
        for i in range(oh):
            for j in range(ow):
                for ky in range(4):
                    for kx in range(4):
                        y, x = i * stride - pad + ky, j * stride - pad + kx
                        if 0 <= y < 9 and 0 <= x < 7:
                            want[:, y, x] += mask[o, :, ky, kx]
    np.testing.assert_array_equal(conv_fanout(mask, in_shape, (3, oh, ow), stride, pad), want)


def _binary(t: torch.Tensor, all_ones: bool = False) -> torch.Tensor:
    """NeuroBench's binarization: nonzero -> 1 (all_ones: every entry -> 1)."""
    return torch.ones_like(t) if all_ones else (t != 0).to(t.dtype)


def _neurobench_ops(layer, z: torch.Tensor, all_ones: bool = False) -> int:
    """NeuroBench's synaptic operations of one connection on input z [N, *in_shape] (its method:
    binarized input through the layer with binarized weights and no bias, summed)."""
    w = _binary(torch.from_numpy(layer.weight), all_ones)
    z = _binary(z.double(), all_ones)
    out = F.linear(z.flatten(1), w) if layer.kind == "dense" else F.conv2d(z, w, None, layer.stride, layer.padding)
    return int(out.sum())


@pytest.mark.parametrize("spec", [conv_spec(), mlp_spec()], ids=["conv", "mlp"])
def test_counts_follow_neurobench_on_the_folded_network(spec):
    """Spikes, activation sparsity and every connection's dense and effective operations, against
    NeuroBench's method applied to the folded layers (zero weights, strided convs, padded borders)."""
    model = randomized(spec, seed=1)
    T, B = 5, 6
    x = frames(spec, T, B)
    net = fold_network(model, T, "binary")
    net.layers[0].weight[..., 0] = 0.0  # zero weights are no effective synapse but count as dense
    spikes = emulate(net, x, "float").spikes
    meter = ActivityMeter(net)
    meter.add(x[:, :2], [s[:, :2] for s in spikes])  # in two batches: totals add up
    meter.add(x[:, 2:], [s[:, 2:] for s in spikes])
    r = meter.result()
    inputs = [torch.from_numpy(x)] + [torch.from_numpy(s) for s in spikes[:-1]]
    for i, (layer, z) in enumerate(zip(net.layers, inputs)):
        z = z.reshape(T * B, *layer.in_shape)
        assert r["totals"]["effective_synops"][i] == _neurobench_ops(layer, z)
        assert r["layers"][i]["synops"]["dense"] * B == _neurobench_ops(layer, z, all_ones=True)
        assert r["layers"][i]["synops"]["type"] == "AC"
    rates = torch.from_numpy(spikes[-1]).double().mean(0).flatten(1)  # the readout reads the rate: MACs
    readout = F.linear(_binary(rates), _binary(torch.from_numpy(net.readout_weight)))
    assert r["totals"]["effective_synops"][-1] == int(readout.sum()) > 0 and r["readout"]["synops"]["type"] == "MAC"
    assert r["readout"]["synops"]["dense"] == net.readout_weight.size
    n_spikes = sum(int(s.sum()) for s in spikes)
    assert r["spikes_per_inference"] == n_spikes / B and all(v > 0 for v in r["totals"]["spikes"])
    assert r["activation_sparsity"] == pytest.approx(1 - n_spikes / sum(s.size for s in spikes), abs=1e-15)
    assert r["synops_per_inference"] == sum(r["totals"]["effective_synops"]) / B
    assert r["synops"]["effective_macs"] == r["readout"]["synops"]["effective"]
    assert r["connection_sparsity"] == pytest.approx(
        net.layers[0].weight[..., 0].size / sum(w.size for w in [l.weight for l in net.layers] + [net.readout_weight]))


def test_graded_input_is_macs_and_fixed_point_counts_its_integers():
    spec = mlp_spec()
    model = randomized(spec, seed=2)
    x = frames(spec, 4, 3, binary=False)
    x[x < 0.5] = 0.0
    x[0, 0, 0, 0, :3] = [1e-3, 2e-3, 1.0]  # rint(255 x): 0, 1, 255 -> one input the integers drop
    net, _ = quantize_network(fold_network(model, 4, "max"))
    float_r, fixed_r = ActivityMeter(net, "float"), ActivityMeter(net, "fixed")
    float_r.add(x, emulate(net, x, "float").spikes)
    fixed_r.add(x, emulate(net, x, "fixed").spikes)
    float_r, fixed_r = float_r.result(), fixed_r.result()
    assert float_r["layers"][0]["synops"]["type"] == "MAC" and float_r["layers"][1]["synops"]["type"] == "AC"
    w_int = net.layers[0].fixed.w_int
    active = (np.rint(255 * x.astype(np.float64)) != 0).reshape(-1, w_int.shape[1]).sum(0)
    assert fixed_r["totals"]["effective_synops"][0] == int(active @ (w_int != 0).sum(0))
    assert fixed_r["totals"]["effective_synops"][0] < float_r["totals"]["effective_synops"][0]
    zeros = sum(int((layer.fixed.w_int == 0).sum()) for layer in net.layers) + int((net.readout_weight == 0).sum())
    assert zeros > 0  # small weights round to 0 on the integer grid
    assert fixed_r["connection_sparsity"] == zeros / (sum(l.weight.size for l in net.layers) + net.readout_weight.size)


def test_footprint_counts_every_parameter_once():
    net = fold_network(randomized(conv_spec()), 4, "binary")
    conv, strided, dense = net.layers
    assert conv.kind == strided.kind == "conv" and dense.kind == "dense"
    # weights, biases (one per conv channel or dense neuron), thresholds (one per neuron)
    per_layer = [(l.weight.size, l.out_shape[0], int(np.prod(l.out_shape))) for l in net.layers]
    readout = net.readout_weight.size + net.readout_bias.size
    got = footprint_bytes(net)
    assert got["float32"] == 4 * (sum(w + b + th + 1 for w, b, th in per_layer) + readout)
    bits = sum(8 * w + 13 * b + 17 * th + FIXED_BITS["layer"] for w, b, th in per_layer)
    assert got["fixed"] == -(-bits // 8) + 4 * readout


# -- one exported artifact through every path --------------------------------------------------
T = 4


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    """A conv network on nmnist-small (padded, pooled: the folded conv is strided), exported to a
    fixed-point Lava artifact."""
    spec = NetworkSpec((2, 34, 34), 10, [
        LayerSpec([{"kind": "conv", "out": 4, "kernel": 5, "padding": 2}, {"kind": "avgpool", "kernel": 2}],
                  alpha=0.9, theta_init=0.5),
        LayerSpec([{"kind": "conv", "out": 6, "kernel": 3, "stride": 2, "padding": 1}], alpha=0.8, theta_init=0.5),
    ])
    run = tmp_path_factory.mktemp("conv-run")
    model = randomized(spec, seed=3, gain=3.0)
    save_model(run / "model.safetensors", model,
               {"data": {"dataset": "nmnist-small", "T": T, "input_norm": "binary", "downsample": 1}})
    write_json(run / "summary.json", {"surrogate_acc": 0.5, "hard_acc": 0.4, "transfer_gap": 0.1})
    export_run(run, "lava", run / "net.lava.h5", verify_samples=0)
    return run, model


@pytest.mark.parametrize("precision", ["float", "fixed"])
def test_torch_emulator_and_lava_agree_on_every_count(conv_run, precision):
    run, model = conv_run
    limit = 4
    reports = {b: simulate(run / "net.lava.h5", b, precision, limit=limit, progress=False) for b in ("emulator", "lava")}
    activity = {b: r["activity"] for b, r in reports.items()}
    if precision == "float":  # the PyTorch hard model (float64), its own fold, the same samples
        test = load_frames("nmnist-small", "test", T, progress=False)
        activity["torch"] = model_activity(copy.deepcopy(model).double(), test.subset(subset(len(test), limit)))
    totals = {b: a["totals"] for b, a in activity.items()}
    assert all(t == totals["emulator"] for t in totals.values()), totals
    assert all(v > 0 for v in totals["emulator"]["spikes"] + totals["emulator"]["effective_synops"])
    assert reports["lava"]["spike_mismatches"] == 0
    for key in ("spikes_per_inference", "synops_per_inference", "activation_sparsity"):
        assert reports["lava"][key] == reports["emulator"][key] == activity["emulator"][key]
