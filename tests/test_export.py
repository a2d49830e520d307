"""Folding, the fixed-point quantizer, the batched emulator and quantization-aware training."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from export_nets import conv_spec, frames, hard_forward, mlp_spec, randomized
from sast_deploy.errors import ExportError
from sast_deploy.export.deployed import DeployedLayer, DeployedNetwork, FixedPoint
from sast_deploy.export.fold import fold_network
from sast_deploy.export.quantize import grid_of, quantize_network
from sast_deploy.hardware_sim.emulator import emulate
from sast_deploy.model import load_model, save_model
from sast_deploy.model.fixed_point import A_IN_LIMIT, VTH_MAX
from sast_deploy.model.folding import fold_block
from sast_deploy.model.network import SpikingLayer
from sast_deploy.model.qat import QATLayer, disable_qat, enable_qat, qat_grids, qat_integers


# -- folding ------------------------------------------------------------------------------------
def test_fold_matches_the_unfolded_blocks_in_float64():
    model = randomized(conv_spec()).double()
    shapes = [model.spec.input_shape] + model.spec.layer_shapes()[:-1]
    for layer, shape in zip(model.layers, shapes):
        z = torch.rand(7, *shape, dtype=torch.float64)
        with torch.no_grad():
            folded = fold_block(layer.block)
            np.testing.assert_allclose(folded.apply(z).numpy(), layer.block(z).numpy(), rtol=0, atol=1e-12)
    kinds = [fold_block(layer.block) for layer in model.layers]
    assert [(f.kind, f.stride, tuple(f.weight.shape[2:])) for f in kinds[:2]] == [("conv", 2, (4, 4)), ("conv", 6, (7, 7))]


def test_fold_inference_batchnorm_and_refuse_maxpool():
    torch.manual_seed(1)
    for block, shape in ((nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.AvgPool2d(2)), (2, 8, 8)),
                         (nn.Sequential(nn.Flatten(), nn.Linear(18, 5), nn.BatchNorm1d(5)), (2, 3, 3))):
        bn = block[-2] if isinstance(block[-1], nn.AvgPool2d) else block[-1]
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
        block = block.double().eval()
        z = torch.rand(6, *shape, dtype=torch.float64)
        with torch.no_grad():
            np.testing.assert_allclose(fold_block(block).apply(z).numpy(), block(z).numpy(), rtol=0, atol=1e-12)
    with pytest.raises(ExportError, match="MaxPool is not linear"):
        fold_block(nn.Sequential(nn.Conv2d(2, 4, 3), nn.MaxPool2d(2)), "layer 1")
    with pytest.raises(ExportError, match="before the linear/conv"):
        fold_block(nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(2, 4, 3)))


# -- emulator, float ------------------------------------------------------------------------------
@pytest.mark.parametrize("binary", [True, False])
def test_emulator_float_reproduces_the_torch_hard_model_every_spike(binary):
    model = randomized(conv_spec())
    x = frames(model.spec, T=6, B=10, binary=binary)
    net = fold_network(model, 6, "binary" if binary else "max")
    logits, spikes, _ = hard_forward(model, x)
    em = emulate(net, x, "float")
    for s, e in zip(spikes, em.spikes):
        assert s.sum() > 0 and e.dtype == np.uint8 and np.array_equal(s, e)
    assert np.array_equal(em.counts, spikes[-1].reshape(6, 10, -1).sum(0))
    np.testing.assert_allclose(em.logits, logits, rtol=0, atol=1e-12)


def test_emulator_results_do_not_depend_on_batching():
    model = randomized(conv_spec())
    x = frames(model.spec, T=5, B=7)
    net, _ = quantize_network(fold_network(model, 5, "binary"))
    for precision in ("float", "fixed"):
        whole, parts = emulate(net, x, precision), emulate(net, x, precision, batch_size=3, keep_spikes=False)
        assert parts.spikes == [] and np.array_equal(whole.counts, parts.counts)
        assert np.array_equal(whole.logits, parts.logits)  # bit-identical, not just close
        assert emulate(net, x[:, :0], precision).logits.shape == (0, 5)


def test_emulator_refuses_bad_input():
    net = fold_network(randomized(mlp_spec()), 4, "binary")
    with pytest.raises(ValueError, match="expected input"):
        emulate(net, np.zeros((3, 2, 2, 6, 6)), "float")
    with pytest.raises(ValueError, match="binary input"):
        emulate(net, np.full((4, 2, 2, 6, 6), 0.5), "float")
    with pytest.raises(ValueError, match="no fixed-point parameters"):
        emulate(net, np.zeros((4, 2, 2, 6, 6)), "fixed")


# -- quantizer ------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["binary", "max"])
def test_quantizer_keeps_every_integer_in_range_with_headroom(norm):
    net, report = quantize_network(fold_network(randomized(conv_spec()), 6, norm))
    for i, (layer, rep) in enumerate(zip(net.layers, report)):
        fx = layer.fixed
        assert np.all(fx.w_int % 2 == 0) and np.abs(fx.w_int).max() <= 254
        assert fx.vth.min() >= 1 and fx.vth.max() <= VTH_MAX and np.abs(fx.bias_mant).max() <= 4095
        assert 0 <= fx.bias_exp <= 7 and 0 <= fx.dv <= 4095 and (layer.kind == "dense" or fx.weight_exp == 0)
        assert fx.input_scale == (255 if i == 0 and norm == "max" else 1)
        assert rep["worst_case_a_in"] < A_IN_LIMIT and sum(rep["saturated"].values()) == 0
        # graded 8-bit input leaves the first layer fewer weight bits: its worst-case sum is 255x larger
        assert rep["weight_rel_err"] < (0.1 if fx.input_scale == 255 else 0.02) and rep["theta_rel_err"] < 5e-3
        assert abs(rep["alpha_eff"] - layer.alpha) <= 1 / 8192


def test_fixed_point_equals_the_dequantized_model_when_there_is_no_leak_to_round():
    model = randomized(mlp_spec(alphas=(1.0, 1.0)), seed=3)
    x = frames(model.spec, T=8, B=12)
    net, _ = quantize_network(fold_network(model, 8, "binary"), dequantized_floats=True)
    fixed, flt = emulate(net, x, "fixed"), emulate(net, x, "float")
    assert all(s.sum() > 0 for s in fixed.spikes)
    for a, b in zip(fixed.spikes, flt.spikes):
        assert np.array_equal(a, b)  # dyadic parameters: the float64 sums are exact


@pytest.mark.parametrize("norm", ["binary", "max"])
def test_fixed_point_equals_the_qat_model_exactly(norm):
    """The only difference between the integers and the de-quantized floats is the decay's rounding:
    the QAT forward models it, and then every spike agrees (float64 and float32)."""
    model = randomized(conv_spec(), seed=2)
    x = frames(model.spec, T=6, B=10, binary=norm == "binary")
    net, _ = quantize_network(fold_network(model, 6, norm))
    qat = enable_qat(randomized(conv_spec(), seed=2), norm, grids=[grid_of(l.fixed).to_dict() for l in net.layers])
    for (grid, ints), layer in zip(qat_integers(qat), net.layers):
        assert grid == grid_of(layer.fixed) and np.array_equal(ints.w_int, layer.fixed.w_int)
    em = emulate(net, x, "fixed")
    for dtype in (torch.float64, torch.float32):
        _, spikes, _ = hard_forward(qat, x, dtype)
        for s, e in zip(spikes, em.spikes):
            assert s.sum() > 0 and np.array_equal(s, e)


def _reference_fixed(layers, x_int, T):
    """docs/deployment.md's integer dynamics, one neuron at a time in Python ints."""
    z = [[list(map(int, x_int[t, b].reshape(-1))) for b in range(x_int.shape[1])] for t in range(T)]
    out = []
    for L in layers:
        w = L["w"].reshape(L["w"].shape[0], -1) if L["kind"] == "dense" else None
        n_out = int(np.prod(L["out_shape"]))
        spikes = np.zeros((T, len(z[0]), n_out), dtype=np.uint8)
        for b in range(len(z[0])):
            v, s = [0] * n_out, [0] * n_out
            for t in range(T):
                if L["kind"] == "dense":
                    acc = [sum(int(w[i, j]) * z[t][b][j] for j in range(w.shape[1])) for i in range(n_out)]
                    acc = [a << L["we"] if L["we"] >= 0 else a >> -L["we"] for a in acc]
                else:
                    acc = _conv_int(L, z[t][b])
                for i in range(n_out):
                    vi = v[i]
                    vi = (abs(vi) * (4096 - L["dv"]) >> 12) * (1 if vi > 0 else -1 if vi < 0 else 0)
                    vi = vi + (acc[i] << 6) + (int(L["bias"][i]) << L["be"]) - (int(L["vth"][i]) << 6) * s[i]
                    vi = max(-(2**23 - 1), min(2**23 - 1, vi))
                    v[i], s[i] = vi, int(vi > int(L["vth"][i]) << 6)
                spikes[t, b] = s
        z = [[list(map(int, spikes[t, b])) for b in range(len(z[0]))] for t in range(T)]
        out.append(spikes)
    return out


def _conv_int(L, flat):
    c_in, h, w_ = L["in_shape"]
    img = np.asarray(flat, dtype=object).reshape(c_in, h, w_)
    c_out, oh, ow = L["out_shape"]
    k, p, st = L["w"].shape[2], L["padding"], L["stride"]
    acc = []
    for o in range(c_out):
        for y in range(oh):
            for x in range(ow):
                total = 0
                for c in range(c_in):
                    for a in range(k):
                        for b in range(k):
                            yy, xx = y * st - p + a, x * st - p + b
                            if 0 <= yy < h and 0 <= xx < w_:
                                total += int(L["w"][o, c, a, b]) * int(img[c, yy, xx])
                acc.append(total)
    return acc


def test_fixed_emulator_matches_an_independent_integer_reference_bit_for_bit():
    """Random integers anywhere in Lava's ranges, graded input, weight_exp != 0, negative potentials,
    and a layer driven into the 24-bit saturation."""
    rng = np.random.default_rng(5)
    T, B = 18, 3
    specs = [dict(kind="conv", in_shape=(2, 5, 5), out_shape=(3, 3, 3), stride=2, padding=1, k=3, we=0),
             dict(kind="dense", in_shape=(27,), out_shape=(6,), stride=1, padding=0, we=3),
             dict(kind="dense", in_shape=(6,), out_shape=(4,), stride=1, padding=0, we=-1)]
    layers, ref_layers = [], []
    for i, s in enumerate(specs):
        wshape = (s["out_shape"][0], s["in_shape"][0], s["k"], s["k"]) if s["kind"] == "conv" else (s["out_shape"][0], s["in_shape"][0])
        w = 2 * rng.integers(-127, 128, size=wshape)
        bias = rng.integers(-4096, 4096, size=s["out_shape"])
        vth = rng.integers(1, 3000, size=s["out_shape"])
        be, dv = int(rng.integers(0, 8)), int(rng.integers(0, 4096))
        if i == 2:  # saturate: a large bias and an unreachable threshold
            bias[:], be, vth[:], dv = 4095, 7, 131071, 0
        fx = FixedPoint(w_int=w, weight_exp=s["we"], bias_mant=bias, bias_exp=be, vth=vth, dv=dv, scale=2.0**10,
                        input_scale=255 if i == 0 else 1)
        layers.append(DeployedLayer(s["kind"], s["in_shape"], s["out_shape"], w.astype(float), bias.astype(float),
                                    vth.astype(float), 0.5, s["stride"], s["padding"], fx))
        ref_layers.append(dict(s, w=w, bias=bias.reshape(-1), vth=vth.reshape(-1), be=be, dv=dv))
    net = DeployedNetwork(layers, np.ones((2, 4)), np.zeros(2), T, (2, 5, 5), "max")
    x = rng.random((T, B, 2, 5, 5))
    em = emulate(net, x, "fixed")
    ref = _reference_fixed(ref_layers, np.rint(255 * x), T)
    for e, r in zip(em.spikes, ref):
        assert np.array_equal(e.reshape(T, B, -1), r)
    assert all(s.sum() > 0 for s in em.spikes[:2]) and em.saturated[2] > 0


# -- quantization-aware training -------------------------------------------------------------------
def test_qat_keeps_the_state_dict_and_switches_back():
    model = randomized(conv_spec())
    keys = list(model.state_dict())
    enable_qat(model, "binary")
    assert all(isinstance(l, QATLayer) for l in model.layers) and list(model.state_dict()) == keys
    disable_qat(model)
    assert all(type(l) is SpikingLayer for l in model.layers)


def test_qat_trained_model_exports_to_fixed_point_with_zero_spike_mismatches(tmp_path):
    spec = mlp_spec(input_shape=(2, 6, 6), hidden=(24, 16), classes=4)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=64)
    rates = 0.1 + 0.5 * (np.arange(72)[None, :] % 4 == labels[:, None])  # class-dependent pixels
    x = (rng.random((6, 64, 72)) < rates[None]).astype(np.float32).reshape(6, 64, 2, 6, 6)
    model = enable_qat(randomized(spec, gain=1.0).train(), "binary")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = []
    for step in range(30):  # SAM on top: gradient at w + rho g / |g|, applied at w
        idx = torch.from_numpy(rng.choice(64, 16, replace=False))
        loss = F.cross_entropy(model(xt[:, idx]), yt[idx])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        norm = torch.sqrt(sum((g**2).sum() for g in grads)) + 1e-12
        eps = [0.05 * g / norm for g in grads]
        with torch.no_grad():
            for p, e in zip(model.parameters(), eps):
                p.add_(e)
        opt.zero_grad()
        F.cross_entropy(model(xt[:, idx]), yt[idx]).backward()
        with torch.no_grad():
            for p, e in zip(model.parameters(), eps):
                p.sub_(e)
        opt.step()
        model.project_()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert all(not torch.equal(before[k], v) for k, v in model.state_dict().items() if "weight" in k)
    model.eval()
    save_model(tmp_path / "m.safetensors", model, {"qat": qat_grids(model)})
    loaded, meta = load_model(tmp_path / "m.safetensors")
    enable_qat(loaded, "binary", grids=meta["qat"])
    net, _ = quantize_network(fold_network(loaded, 6, "binary"), integers=qat_integers(loaded), dequantized_floats=True)
    em = emulate(net, x, "fixed")
    for dtype in (torch.float64, torch.float32):
        _, spikes, _ = hard_forward(loaded, x, dtype)
        assert sum(int((s != e).sum()) for s, e in zip(spikes, em.spikes)) == 0
        assert all(s.sum() > 0 for s in spikes)


def test_fixed_synapses_are_what_lavas_fixed_point_dense_and_conv_compute():
    """Lava's Dense leaves the quantizer's weights as they are; Lava's Conv (a true convolution on
    (W, H, C) data) of the flipped kernel gives the emulator's integer sums."""
    from lava.proc.conv import utils as lava_conv
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    from sast_deploy.hardware_sim.emulator import _prepare, drive

    net, _ = quantize_network(fold_network(randomized(conv_spec()), 1, "binary"))
    dense = net.layers[2].fixed.w_int
    mode = determine_sign_mode(dense)
    assert np.array_equal(truncate_weights(clip_weights(dense, mode, 8), mode, 8), dense)
    rng = np.random.default_rng(0)
    for layer, prepared in zip(net.layers[:2], _prepare(net, "fixed")):
        z = (rng.random(layer.in_shape) < 0.4).astype(np.int64)
        ours = (drive(prepared, z[None, None])[0, 0] - prepared.bias) / 2**6  # a_in
        w = layer.fixed.w_int
        theirs = lava_conv.conv(z.transpose(2, 1, 0), w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1).astype(np.int32),
                                w.shape[:1:-1], (layer.stride,) * 2, (layer.padding,) * 2, (1, 1), 1)
        assert ours.any() and np.array_equal(ours, theirs.transpose(2, 1, 0))
