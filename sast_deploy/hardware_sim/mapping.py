"""How a DeployedNetwork maps onto Lava processes: layouts, per-layer parameters, range checks.

Pure numpy plus Lava's own weight utilities. Lava stores images as (W, H, C) and its Conv is a true
convolution, so conv kernels are flipped and transposed once here, and a dense layer after a conv
layer gets its input columns permuted into Lava's flatten order. Fixed-point parameters are checked
against everything Lava would silently change (docs/lava.md): a network either runs bit-exactly
or is refused with a one-line reason.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

from ..errors import BackendError
from ..export.deployed import DeployedNetwork
from .encoding import PRECISIONS, fixed_input_scale

GRADED_MESSAGE_BITS = {"float": 24, "fixed": 8}
CONV_ACC_LIMIT = 2**23  # Lava's fixed Conv wraps its output to 24 bits
DENSE_ACC_LIMIT = 2**31  # Lava's fixed Dense accumulates in int32
FIXED_RANGES = {"bias_mant": (-4096, 4095), "bias_exp": (0, 7), "vth": (0, 131071), "dv": (0, 4095)}


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Model shape (N,) or (C, H, W) -> Lava's (N,) or (W, H, C)."""
    return tuple(reversed(shape)) if len(shape) == 3 else tuple(shape)


def to_lava(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Array [..., *shape] in model layout -> [..., *lava_shape(shape)] (a view)."""
    if len(shape) != 3:
        return a
    n = a.ndim
    return np.moveaxis(a, (n - 3, n - 1), (n - 1, n - 3))


from_lava = to_lava  # reversing (C, H, W) <-> (W, H, C) is its own inverse


def flat_order(shape: tuple[int, ...]) -> np.ndarray:
    """Permutation p with model_flat = lava_flat[p] (each the C-order flatten of its layout)."""
    n = int(np.prod(shape))
    return from_lava(np.arange(n).reshape(lava_shape(shape)), shape).reshape(-1)


def input_to_lava(net: DeployedNetwork, x: np.ndarray) -> np.ndarray:
    """Input [..., *input_shape] -> what SASTNetwork.inp takes: (W, H, C) images for a conv first
    layer, the model's C-order flatten for a dense one."""
    if net.layers[0].kind == "conv":
        return to_lava(x, net.input_shape)
    return x.reshape(*x.shape[:x.ndim - len(net.input_shape)], -1)


@dataclass
class LavaLayerParams:
    """Keyword arguments for one layer's synapse (Lava Dense or Conv) and its SASTLIF neurons."""

    kind: str
    synapse: dict
    neuron: dict


def layer_params(net: DeployedNetwork, index: int, precision: str) -> LavaLayerParams:
    """Lava parameters of layer `index` for `precision` ("float" | "fixed"), in Lava layout."""
    layer = net.layers[index]
    graded = index == 0 and net.input_norm != "binary"
    message_bits = GRADED_MESSAGE_BITS[precision] if graded else 0
    if precision == "fixed":
        fx = layer.fixed
        weight, weight_exp = np.asarray(fx.w_int, np.int64), int(fx.weight_exp)
        per_neuron = dict(vth=fx.vth, bias_mant=fx.bias_mant)
        neuron = dict(dv=int(fx.dv), bias_exp=int(fx.bias_exp))
    else:
        weight, weight_exp = np.asarray(layer.weight, np.float64), 0
        per_neuron = dict(vth=layer.theta, bias_mant=layer.bias)
        neuron = dict(dv=1.0 - layer.alpha, bias_exp=0)
    shape = layer.out_shape
    dtype = np.int64 if precision == "fixed" else np.float64
    for key, value in per_neuron.items():
        neuron[key] = np.ascontiguousarray(to_lava(np.broadcast_to(np.asarray(value, dtype), shape), shape))
    neuron.update(shape=lava_shape(shape), precision=precision)
    if layer.kind == "dense":
        prev = net.layers[index - 1].out_shape if index > 0 else (0,)
        if len(prev) == 3:
            weight = weight[:, np.argsort(flat_order(prev))]
        synapse = dict(weights=weight, weight_exp=weight_exp, num_message_bits=message_bits)
    else:
        # torch cross-correlation [C_out, C_in, kh, kw] -> Lava convolution [C_out, kw, kh, C_in]
        synapse = dict(weight=np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)),
                       input_shape=lava_shape(layer.in_shape), stride=layer.stride,
                       padding=layer.padding, num_message_bits=message_bits)
    return LavaLayerParams(layer.kind, synapse, neuron)


def check_network(net: DeployedNetwork, precision: str) -> None:
    """Raise BackendError if `net` cannot run on Lava at `precision` exactly as docs/deployment.md says."""
    if precision not in PRECISIONS:
        raise BackendError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not net.layers:
        raise BackendError("the network has no layers")
    shape = tuple(net.input_shape)
    for i, layer in enumerate(net.layers):
        if layer.kind not in ("dense", "conv"):
            raise BackendError(f"layer {i}: kind {layer.kind!r} is not supported on Lava (dense or conv)")
        fits = np.prod(layer.in_shape) == np.prod(shape) if layer.kind == "dense" else tuple(layer.in_shape) == shape
        if not fits:
            raise BackendError(f"layer {i}: reads shape {tuple(layer.in_shape)} but receives {shape}")
        shape = tuple(layer.out_shape)
    if precision == "fixed":
        if not net.is_quantized:
            raise BackendError("the network has no fixed-point parameters: export it with quantization "
                               "(sast-deploy export --target lava) or use --precision float")
        try:
            c = fixed_input_scale(net)
        except ValueError as e:
            raise BackendError(str(e)) from None
        for i, layer in enumerate(net.layers):
            _check_fixed_layer(i, layer, max_input=c if i == 0 else 1)


def _check_fixed_layer(i: int, layer, max_input: int) -> None:
    fx = layer.fixed
    where = f"layer {i} fixed point"
    for name, (lo, hi) in FIXED_RANGES.items():
        value = np.asarray(getattr(fx, name))
        if value.size and (value.min() < lo or value.max() > hi or np.any(value != np.rint(value))):
            raise BackendError(f"{where}: {name} must be integers in [{lo}, {hi}]; re-export the network")
    w = np.asarray(fx.w_int)
    if w.size and (w.min() < -256 or w.max() > 255 or np.any(w != np.rint(w))):
        raise BackendError(f"{where}: w_int must be integers in [-256, 255]; re-export the network")
    w = w.astype(np.int64)
    acc = np.abs(w).reshape(w.shape[0], -1).sum(1).max(initial=0) * max_input
    if layer.kind == "dense":
        mode = determine_sign_mode(w)
        if not np.array_equal(truncate_weights(clip_weights(w, mode, 8), mode, 8), w):
            raise BackendError(f"{where}: Lava's Dense would alter these weights (with mixed signs it drops "
                               f"the lowest bit: weights must be even; all-negative weights must be >= -255)")
        if acc >= DENSE_ACC_LIMIT:
            raise BackendError(f"{where}: input sums can reach {acc}, beyond Lava Dense's int32 accumulator")
    else:
        if fx.weight_exp != 0:
            raise BackendError(f"{where}: Lava's fixed-point Conv ignores weight_exp, which must be 0 (got {fx.weight_exp})")
        if acc >= CONV_ACC_LIMIT:
            raise BackendError(f"{where}: input sums can reach {acc}, beyond Lava Conv's 24-bit output (2^23)")
