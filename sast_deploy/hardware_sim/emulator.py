"""Batched, vectorized emulator of a DeployedNetwork with hard spikes (docs/deployment.md).

Two precisions: "float" (float64: the PyTorch hard model evaluated in float64, up to the order of
its sums) and "fixed" (Loihi-style integers, bit-exact to Lava's fixed-point models as specified in
docs/deployment.md). It runs whole test sets; Lava is the conformance reference on a subset.

numpy, not torch: a Lava application that only runs an exported network does not need torch.
Integer sums are computed in floating point, which is exact while every partial sum stays below
2^24 (float32) or 2^53 (float64): float32 when the layer's worst-case input sum allows it, else
float64, and int64 has no BLAS path anyway. A dense layer whose input is mostly zeros (event
frames) sums only the nonzero inputs (CSR: layer 1 of a dense network); hidden dense layers and
convolutions (im2col) use a BLAS matrix product. The choice is fixed per layer, never per batch, so
a sample's float sums do not depend on the batch it runs in. The membrane of the fixed-point model is kept in float64 too:
every value is an integer below 2^24 and the decay factor (4096 - dv) / 4096 has 12 fractional
bits, so every operation is exact and the decay rounded toward zero is trunc(v (4096 - dv) / 4096).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse

from ..export.deployed import DeployedLayer, DeployedNetwork
from ..model.fixed_point import ACT_SHIFT, DECAY_UNITY, STATE_MAX, worst_case_input
from .encoding import PRECISIONS, check_shape, encode_input, fixed_input_scale
from .readout import readout_logits

IM2COL_ELEMENTS = 2**23  # bound on one im2col buffer (float64: 64 MiB)
FLOAT32_EXACT = 2**24  # integers below this are exact in float32, and so are their sums
WORKERS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class Emulation:
    """What a network did on a batch: per-layer spikes [T, B, *neuron_shape] (uint8; empty when not
    kept), last-layer spike counts [B, features], logits float64 [B, classes]."""

    spikes: list[np.ndarray]
    counts: np.ndarray
    logits: np.ndarray
    saturated: list[int] = field(default_factory=list)  # fixed: neuron-steps clipped at +-(2^23 - 1), per layer


@dataclass
class _Layer:
    """One layer prepared for a precision: the operator in its compute dtype, the neuron constants.
    Each step the membrane adds `drive` = synapse(weight, z) [floored by 2^floor_shift] + bias."""

    layer: DeployedLayer
    weight: np.ndarray  # float32 or float64; dense weights transposed ([N_in, N_out], for z @ weight)
    bias: np.ndarray  # float W z + b; fixed: (a_in << 6) + (bias_mant << bias_exp)
    theta: np.ndarray  # float theta; fixed vth << 6
    decay: float  # float alpha; fixed (4096 - dv) / 4096, applied as trunc0(v decay)
    fixed: bool
    sparse: bool  # sum only the nonzero inputs (event frames into a dense layer 1)
    floor_shift: int = 0  # fixed dense with weight_exp < 0: a_in = floor(acc 2^weight_exp)


def _prepare(net: DeployedNetwork, precision: str) -> list[_Layer]:
    out = []
    for i, layer in enumerate(net.layers):
        if precision == "float":
            weight, bias = np.asarray(layer.weight, np.float64), np.asarray(layer.bias, np.float64)
            theta, decay, floor_shift = np.asarray(layer.theta, np.float64), float(layer.alpha), 0
        else:
            fx = layer.fixed
            w_int = np.asarray(fx.w_int, np.int64)
            shift = int(fx.weight_exp) if layer.kind == "dense" else 0  # Lava's fixed Conv ignores weight_exp
            # a_in << 6 = acc 2^(weight_exp + 6): a left shift folds into the weights exactly
            gain, floor_shift = (2 ** (shift + ACT_SHIFT), 0) if shift >= 0 else (1, shift)
            bias = np.asarray(fx.bias_mant, np.int64) << int(fx.bias_exp)
            largest = worst_case_input(w_int, fixed_input_scale(net) if i == 0 else 1) * gain + np.abs(bias).max()
            dtype = np.float32 if floor_shift == 0 and largest < FLOAT32_EXACT else np.float64
            weight, bias = (w_int * gain).astype(dtype), bias.astype(dtype)
            theta = (np.asarray(fx.vth, np.int64) << ACT_SHIFT).astype(np.float64)
            decay = (DECAY_UNITY - int(fx.dv)) / DECAY_UNITY  # dyadic: v * decay is exact
        if layer.kind == "dense":
            weight = np.ascontiguousarray(weight.T)
        sparse = i == 0 and layer.kind == "dense"
        out.append(_Layer(layer, weight, bias, theta, decay, precision == "fixed", sparse, floor_shift))
    return out


def _sparse_product(flat: np.ndarray, weight_t: np.ndarray) -> np.ndarray:
    """flat [R, N_in] @ weight_t [N_in, N_out] in weight_t's dtype, summing only nonzero inputs."""
    nonzero = np.flatnonzero(flat != 0)
    rows, cols = np.divmod(nonzero, flat.shape[1])
    indptr = np.zeros(flat.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=flat.shape[0]), out=indptr[1:])
    values = flat.reshape(-1)[nonzero].astype(weight_t.dtype)
    return scipy.sparse.csr_matrix((values, cols, indptr), shape=flat.shape) @ weight_t


def _conv(z: np.ndarray, weight: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """Cross-correlation z [N, C, H, W] with weight [C_out, C, kh, kw] -> [N, C_out, OH, OW], in
    weight's dtype."""
    c_out, c_in, kh, kw = weight.shape
    z = np.pad(z.astype(weight.dtype, copy=False), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(z, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    n, _, oh, ow = win.shape[:4]
    w2 = weight.reshape(c_out, -1).T
    per_sample = oh * ow * c_in * kh * kw
    chunk = max(1, IM2COL_ELEMENTS // max(per_sample, 1))
    out = np.empty((n, oh, ow, c_out), weight.dtype)
    for start in range(0, n, chunk):
        cols = win[start:start + chunk].transpose(0, 2, 3, 1, 4, 5).reshape(-1, c_in * kh * kw)
        out[start:start + chunk] = (cols @ w2).reshape(-1, oh, ow, c_out)
    return out.transpose(0, 3, 1, 2)


def synapse(p: _Layer, z: np.ndarray) -> np.ndarray:
    """W z for every step and sample: z [T, B, *in_shape] -> [T, B, *out_shape], in the layer's
    compute dtype."""
    T, B = z.shape[:2]
    layer = p.layer
    if layer.kind == "conv":
        out = _conv(z.reshape(T * B, *z.shape[2:]), p.weight, layer.stride, layer.padding)
    elif p.sparse:
        out = _sparse_product(z.reshape(T * B, p.weight.shape[0]), p.weight)
    else:
        out = z.reshape(T * B, p.weight.shape[0]).astype(p.weight.dtype, copy=False) @ p.weight
    return out.reshape(T, B, *layer.out_shape)


def drive(p: _Layer, z: np.ndarray) -> np.ndarray:
    """What the membrane adds at every step (z [T, B, *in_shape] -> [T, B, *out_shape]): float
    W z + b; fixed (a_in << 6) + (bias_mant << bias_exp), a_in = floor(acc 2^weight_exp)."""
    current = synapse(p, z)
    if p.floor_shift:  # a right shift floors: exact on integers held in float64
        current = np.floor(current * 2.0 ** p.floor_shift) * 2.0 ** ACT_SHIFT
    current += p.bias
    return current


def neurons(p: _Layer, current: np.ndarray) -> tuple[np.ndarray, int]:
    """The LIF of docs/deployment.md over all steps; returns spikes [T, B, *shape] uint8 and the
    number of neuron-steps clipped to the 24-bit state (fixed point).

    float: u_t = alpha u_{t-1} + I_t - theta s_{t-1} (torch's association), s_t = u_t > theta.
    fixed: v_t = trunc0(v_{t-1} (4096 - dv) / 4096) + drive_t - (vth << 6) s_{t-1}, clipped to
           +-(2^23 - 1), s_t = v_t > vth << 6 (current = `drive`); every value an integer held
           exactly in float64."""
    v = np.zeros(current.shape[1:])
    s = np.zeros(current.shape[1:], dtype=bool)  # s_{t-1}
    theta = np.broadcast_to(p.theta, v.shape)
    spikes = np.empty(current.shape, dtype=bool)
    saturated = 0
    T, decay = current.shape[0], p.decay
    # |v_t| <= (max |current| + max theta) * sum_k decay^k: check the 24-bit range only if it can be left
    reach = (np.abs(current).max(initial=0) + theta.max(initial=0)) * (T if decay >= 1 else min(T, 1 / (1 - decay)))
    check = p.fixed and reach > STATE_MAX
    for t in range(T):
        v *= p.decay
        if p.fixed:
            np.trunc(v, out=v)
        v += current[t]
        np.subtract(v, theta, out=v, where=s)  # v - theta s: the same float as multiplying by s in {0, 1}
        if check and (v.max(initial=0) > STATE_MAX or v.min(initial=0) < -STATE_MAX):
            saturated += int(np.count_nonzero(np.abs(v) > STATE_MAX))
            np.clip(v, -STATE_MAX, STATE_MAX, out=v)
        s = np.greater(v, theta, out=spikes[t])
    return spikes.view(np.uint8), saturated


def _run(layers: list[_Layer], z: np.ndarray, keep_spikes: bool):
    spikes, saturated = [], []
    for p in layers:
        z, sat = neurons(p, drive(p, z))
        saturated.append(sat)
        if keep_spikes:
            spikes.append(z)
    counts = z.reshape(*z.shape[:2], int(np.prod(z.shape[2:]))).sum(0, dtype=np.int64)
    return spikes, counts, saturated


def emulate(net: DeployedNetwork, x: np.ndarray, precision: str, keep_spikes: bool = True,
            batch_size: int = 256) -> Emulation:
    """Run `net` on time-major input x [T, B, *input_shape] in [0, 1] at `precision` ("float" |
    "fixed"), in batches of at most `batch_size` samples, one thread per CPU. keep_spikes=False
    returns only counts and logits (whole test sets without holding every spike). Each sample's
    result is independent of the batch it runs in."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fixed" and not net.is_quantized:
        raise ValueError("the network has no fixed-point parameters: export it quantized or use precision 'float'")
    x = check_shape(net, x)  # values are checked batch by batch, as they are encoded
    layers = _prepare(net, precision)
    step = max(1, min(batch_size, -(-x.shape[1] // WORKERS)))  # enough batches to keep every CPU busy
    starts = range(0, max(x.shape[1], 1), step)

    def run(i):
        return _run(layers, encode_input(net, x[:, i:i + step], precision), keep_spikes)

    if len(starts) > 1:  # numpy and scipy release the GIL in the heavy operations
        with ThreadPoolExecutor(min(WORKERS, len(starts))) as pool:
            parts = list(pool.map(run, starts))
    else:
        parts = [run(i) for i in starts]
    spikes = [np.concatenate(layer, axis=1) for layer in zip(*(p[0] for p in parts))] if keep_spikes else []
    counts = np.concatenate([p[1] for p in parts])
    saturated = [int(sum(v)) for v in zip(*(p[2] for p in parts))]
    return Emulation(spikes, counts, readout_logits(counts, net.readout_weight, net.readout_bias, net.T), saturated)
