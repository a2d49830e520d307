"""Batched, vectorized emulator of a DeployedNetwork with hard spikes (docs/deployment.md).

Two precisions: "float" (float64: the PyTorch hard model evaluated in float64, up to the order of
its sums) and "fixed" (Loihi-style integers, bit-exact to Lava's fixed-point models as specified in
docs/deployment.md). It runs whole test sets; Lava is the conformance reference on a subset.

numpy, not torch: a Lava application that only runs an exported network does not need torch, and
float64 BLAS gives exact integer sums (every partial sum of the fixed-point synapse stays far below
2^53) at matrix-multiply speed, where int64 matmul has no BLAS path. Convolutions are im2col + matmul.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ShapeError
from ..export.deployed import DeployedLayer, DeployedNetwork
from ..model.fixed_point import ACT_SHIFT, DECAY_UNITY, STATE_MAX

PRECISIONS = ("float", "fixed")
IM2COL_ELEMENTS = 2**23  # bound on one im2col buffer (float64: 64 MiB)


@dataclass
class Emulation:
    """What a network did on a batch: per-layer spikes [T, B, *neuron_shape] (uint8; empty when not
    kept), last-layer spike counts [B, features], logits float64 [B, classes]."""

    spikes: list[np.ndarray]
    counts: np.ndarray
    logits: np.ndarray
    saturated: list[int] = field(default_factory=list)  # fixed: neuron-steps clipped at +-(2^23 - 1), per layer


def encode_input(net: DeployedNetwork, x: np.ndarray, precision: str) -> np.ndarray:
    """Frames [T, B, *input_shape] in [0, 1] -> what layer 1 receives: float64 x (float), or the
    integers rint(c x) with c = layer 1's input_scale (fixed: 0/1 binary, rint(255 x) graded)."""
    x = np.asarray(x, dtype=np.float64)
    want = (net.T, *net.input_shape)
    if x.ndim != len(want) + 1 or x.shape[0] != net.T or tuple(x.shape[2:]) != tuple(net.input_shape):
        raise ShapeError(f"expected input [T={net.T}, B, {', '.join(map(str, net.input_shape))}] (time-major), "
                         f"got {list(x.shape)}")
    if x.size and not (x.min() >= 0 and x.max() <= 1):
        raise ShapeError("input values must lie in [0, 1] (frames as written by sast_deploy.data)")
    if net.input_norm == "binary" and np.any((x != 0) & (x != 1)):
        raise ShapeError("this network takes binary input (input_norm 'binary') but got values other than 0 and 1")
    if precision == "float":
        return x
    return np.rint(x * net.layers[0].fixed.input_scale)


def _conv(z: np.ndarray, weight: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """Cross-correlation z [N, C, H, W] with weight [C_out, C, kh, kw] -> [N, C_out, OH, OW], float64."""
    c_out, c_in, kh, kw = weight.shape
    z = np.pad(z, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(z, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    n, _, oh, ow = win.shape[:4]
    w2 = weight.reshape(c_out, -1).T
    per_sample = oh * ow * c_in * kh * kw
    chunk = max(1, IM2COL_ELEMENTS // max(per_sample, 1))
    out = np.empty((n, oh, ow, c_out))
    for start in range(0, n, chunk):
        cols = win[start:start + chunk].transpose(0, 2, 3, 1, 4, 5).reshape(-1, c_in * kh * kw)
        out[start:start + chunk] = (cols @ w2).reshape(-1, oh, ow, c_out)
    return out.transpose(0, 3, 1, 2)


def synapse(layer: DeployedLayer, z: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """W z for every step and sample: z [T, B, *in_shape] -> [T, B, *out_shape], float64."""
    T, B = z.shape[:2]
    flat = z.reshape(T * B, *z.shape[2:])
    if layer.kind == "dense":
        out = flat.reshape(T * B, weight.shape[1]) @ weight.T
    else:
        out = _conv(flat, weight, layer.stride, layer.padding)
    return out.reshape(T, B, *layer.out_shape)


def neurons_float(layer: DeployedLayer, current: np.ndarray) -> np.ndarray:
    """u_t = alpha u_{t-1} + I_t - theta s_{t-1};  s_t = u_t > theta  (float64; I includes the bias)."""
    theta = layer.theta
    u = np.zeros(current.shape[1:])
    s = np.zeros(current.shape[1:], dtype=bool)
    spikes = np.empty(current.shape, dtype=np.uint8)
    for t in range(current.shape[0]):
        u = layer.alpha * u + current[t] - theta * s
        s = u > theta
        spikes[t] = s
    return spikes


def neurons_fixed(layer: DeployedLayer, a_in: np.ndarray) -> tuple[np.ndarray, int]:
    """The integer LIF of docs/deployment.md; returns spikes and the number of saturated neuron-steps."""
    fx = layer.fixed
    vth = np.asarray(fx.vth, dtype=np.int64) << ACT_SHIFT
    bias = np.asarray(fx.bias_mant, dtype=np.int64) << int(fx.bias_exp)
    keep = DECAY_UNITY - int(fx.dv)
    v = np.zeros(a_in.shape[1:], dtype=np.int64)
    s = np.zeros(a_in.shape[1:], dtype=bool)
    spikes = np.empty(a_in.shape, dtype=np.uint8)
    saturated = 0
    for t in range(a_in.shape[0]):
        v = np.sign(v) * ((np.abs(v) * keep) // DECAY_UNITY)  # decay, rounded toward zero
        v = v + (a_in[t] << ACT_SHIFT) + bias - vth * s
        out = np.abs(v) > STATE_MAX
        if out.any():
            saturated += int(out.sum())
            v = np.clip(v, -STATE_MAX, STATE_MAX)
        s = v > vth
        spikes[t] = s
    return spikes, saturated


def _fixed_input(layer: DeployedLayer, z: np.ndarray) -> np.ndarray:
    """a_in = floor(acc 2^weight_exp) for dense (Lava's Dense shifts; its Conv does not)."""
    fx = layer.fixed
    acc = synapse(layer, z, np.asarray(fx.w_int, dtype=np.float64)).astype(np.int64)  # exact: |sums| << 2^53
    we = int(fx.weight_exp) if layer.kind == "dense" else 0
    return acc << we if we >= 0 else acc >> -we


def readout(net: DeployedNetwork, counts: np.ndarray) -> np.ndarray:
    """o = W_out (counts / T) + b_out in float64, summed per sample (no BLAS: a sample's logits do
    not depend on the batch it was evaluated in)."""
    rates = counts.astype(np.float64) / net.T
    return (rates[:, None, :] * np.asarray(net.readout_weight, dtype=np.float64)[None]).sum(-1) + net.readout_bias


def _run(net: DeployedNetwork, z: np.ndarray, precision: str, keep_spikes: bool):
    spikes, saturated = [], []
    for layer in net.layers:
        if precision == "float":
            s = neurons_float(layer, synapse(layer, z, np.asarray(layer.weight, dtype=np.float64))
                              + np.asarray(layer.bias, dtype=np.float64))
            saturated.append(0)
        else:
            s, sat = neurons_fixed(layer, _fixed_input(layer, z))
            saturated.append(sat)
        if keep_spikes:
            spikes.append(s)
        z = s
    counts = z.reshape(z.shape[0], z.shape[1], int(np.prod(z.shape[2:]))).sum(0, dtype=np.int64)
    return spikes, counts, saturated


def emulate(net: DeployedNetwork, x: np.ndarray, precision: str, keep_spikes: bool = True,
            batch_size: int = 256) -> Emulation:
    """Run `net` on time-major input x [T, B, *input_shape] in [0, 1] at `precision` ("float" |
    "fixed"), `batch_size` samples at a time. keep_spikes=False returns only counts and logits
    (whole test sets without holding every spike)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fixed" and not net.is_quantized:
        raise ValueError("the network has no fixed-point parameters: export it quantized or use precision 'float'")
    z = encode_input(net, x, precision)
    parts = [_run(net, z[:, i:i + batch_size], precision, keep_spikes) for i in range(0, z.shape[1], batch_size)]
    if not parts:
        parts = [_run(net, z, precision, keep_spikes)]
    spikes = [np.concatenate(layer, axis=1) for layer in zip(*(p[0] for p in parts))] if keep_spikes else []
    counts = np.concatenate([p[1] for p in parts])
    saturated = [int(sum(v)) for v in zip(*(p[2] for p in parts))]
    return Emulation(spikes=spikes, counts=counts, logits=readout(net, counts), saturated=saturated)
