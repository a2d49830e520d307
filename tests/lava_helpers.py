"""Test-only helpers for the Lava tests: small DeployedNetworks and an integer reference.

`fixed_reference` is a deliberately plain per-step transcription of docs/deployment.md. It stands
in for the batched emulator (sast_deploy.hardware_sim.emulator.emulate) until the export branch is
merged; then the fixed-point tests should compare against the emulator instead.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from sast_deploy.export.deployed import DeployedLayer, DeployedNetwork, FixedPoint
from sast_deploy.model import SNN


def deployed_from_snn(model: SNN, T: int, input_norm: str) -> DeployedNetwork:
    """Float DeployedNetwork of an SNN whose layers are [flatten] + linear or a bare conv."""
    layers, shape = [], model.spec.input_shape
    for layer, out_shape in zip(model.layers, model.spec.layer_shapes()):
        op = [m for m in layer.block if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))][0]
        conv = isinstance(op, torch.nn.Conv2d)
        bias = op.bias.detach().double().numpy()
        layers.append(DeployedLayer(
            kind="conv" if conv else "dense",
            in_shape=tuple(shape) if conv else (int(np.prod(shape)),), out_shape=tuple(out_shape),
            weight=op.weight.detach().double().numpy(),
            bias=np.broadcast_to(bias.reshape(-1, *(1,) * (len(out_shape) - 1)), out_shape).copy(),
            theta=layer.lif.theta.detach().double().numpy(), alpha=layer.lif.alpha,
            stride=op.stride[0] if conv else 1, padding=op.padding[0] if conv else 0))
        shape = out_shape
    return DeployedNetwork(layers, model.readout.weight.detach().double().numpy(),
                           model.readout.bias.detach().double().numpy(), T, model.spec.input_shape, input_norm)


def random_fixed(net: DeployedNetwork, rng: np.random.Generator, vth_ranges) -> DeployedNetwork:
    """Give every layer random fixed-point parameters within docs/deployment.md's ranges (even
    weights for mixed signs; thresholds from `vth_ranges`, one (low, high) per layer), and the
    float fields their de-quantized values."""
    for layer, vth_range in zip(net.layers, vth_ranges):
        shape = layer.out_shape
        w_int = 2 * rng.integers(-128, 128, size=layer.weight.shape)
        weight_exp = int(rng.integers(-2, 2)) if layer.kind == "dense" else 0
        bias_mant = rng.integers(-300, 300, size=shape)
        bias_exp = int(rng.integers(0, 4))
        vth = rng.integers(*vth_range, size=shape)
        dv = int(rng.integers(0, 4096))
        if layer.kind == "conv":  # per-channel bias, as export stores it
            bias_mant = np.broadcast_to(bias_mant[:, :1, :1], shape).copy()
        scale = 64.0
        layer.fixed = FixedPoint(w_int, weight_exp, bias_mant, bias_exp, vth, dv, scale)
        layer.weight = w_int * 2.0 ** (weight_exp + 6) / scale
        layer.bias = bias_mant * 2.0 ** bias_exp / scale
        layer.theta = vth * 64.0 / scale
        layer.alpha = (4096 - dv) / 4096
    return net


def fixed_reference(net: DeployedNetwork, x: np.ndarray) -> list[np.ndarray]:
    """Per-layer spikes [T, B, *shape] of the integer model of docs/deployment.md, step by step.
    To be replaced by sast_deploy.hardware_sim.emulator.emulate once the export branch lands."""
    z = np.rint(x * 255).astype(np.int64) if net.input_norm != "binary" else x.astype(np.int64)
    out = []
    for layer in net.layers:
        fx = layer.fixed
        v = np.zeros((x.shape[1], *layer.out_shape), np.int64)
        s = np.zeros_like(v)
        spikes = []
        for t in range(net.T):
            if layer.kind == "dense":
                acc = z[t].reshape(len(v), -1) @ fx.w_int.T
                a_in = np.floor(acc * 2.0 ** fx.weight_exp).astype(np.int64)
            else:
                a_in = F.conv2d(torch.from_numpy(z[t]).double(), torch.from_numpy(fx.w_int).double(),
                                stride=layer.stride, padding=layer.padding).numpy().astype(np.int64)
            v = np.sign(v) * ((np.abs(v) * (4096 - fx.dv)) >> 12)
            v = v + (a_in << 6) + (fx.bias_mant << fx.bias_exp) - (fx.vth << 6) * s
            v = np.clip(v, -(2**23 - 1), 2**23 - 1)
            s = (v > (fx.vth << 6)).astype(np.int64)
            spikes.append(s)
        z = np.stack(spikes)
        out.append(z)
    return out


def lava_workers() -> list[str]:
    """Command lines of this process's children, except Python's own resource tracker (one per
    interpreter, started by multiprocessing and shared by every run)."""
    me, found = os.getpid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline") as f:
                cmd = f.read().replace("\0", " ")
        except OSError:  # exited meanwhile
            continue
        if ppid == me and "resource_tracker" not in cmd:
            found.append(f"{pid}: {cmd[:80]}")
    return found
