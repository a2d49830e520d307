"""Test-only helpers for the Lava tests: random fixed-point parameters and a worker-process census."""
from __future__ import annotations

import os

import numpy as np

from sast_deploy.export.deployed import DeployedNetwork, FixedPoint
from sast_deploy.model.fixed_point import input_scale


def random_fixed(net: DeployedNetwork, rng: np.random.Generator, vth_ranges) -> DeployedNetwork:
    """Give every layer random fixed-point parameters anywhere in docs/deployment.md's ranges (even
    weights for mixed signs, negative weight_exp, any dv; thresholds from `vth_ranges`, one
    (low, high) per layer), unlike the quantizer's, and the float fields their de-quantized values."""
    for i, (layer, vth_range) in enumerate(zip(net.layers, vth_ranges)):
        shape = layer.out_shape
        w_int = 2 * rng.integers(-128, 128, size=layer.weight.shape)
        weight_exp = int(rng.integers(-2, 2)) if layer.kind == "dense" else 0
        bias_mant = rng.integers(-300, 300, size=shape)
        bias_exp = int(rng.integers(0, 4))
        vth = rng.integers(*vth_range, size=shape)
        dv = int(rng.integers(0, 4096))
        if layer.kind == "conv":  # per-channel bias, as export stores it
            bias_mant = np.broadcast_to(bias_mant[:, :1, :1], shape).copy()
        scale, c = 64.0, input_scale(i, net.input_norm)
        layer.fixed = FixedPoint(w_int, weight_exp, bias_mant, bias_exp, vth, dv, scale, c)
        layer.weight = w_int * 2.0 ** (weight_exp + 6) * c / scale
        layer.bias = bias_mant * 2.0 ** bias_exp / scale
        layer.theta = vth * 64.0 / scale
        layer.alpha = (4096 - dv) / 4096
    return net


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
