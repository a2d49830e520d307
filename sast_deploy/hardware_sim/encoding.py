"""Input encoding shared by every hardware simulator (docs/deployment.md): the emulator and the
Lava runner both call `encode_input`, so they feed layer 1 the same values.

Float precision feeds the frames as given (float64 arithmetic downstream; converting float32
frames is exact). Fixed point feeds the integers x_int = rint(c x), computed in float64, with c =
layer 1's `input_scale`: 1 for binary input (0/1 as they are), 255 for graded input
(`input_norm` "max"), the factor export folds into layer 1.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..export.deployed import DeployedNetwork
from ..model.fixed_point import input_scale

PRECISIONS = ("float", "fixed")


def check_shape(net: DeployedNetwork, x) -> np.ndarray:
    """x as an array, if it is time-major frames [T, B, *input_shape] of this network."""
    x = np.asarray(x)
    want = (net.T, *net.input_shape)
    if x.ndim != len(want) + 1 or x.shape[0] != net.T or tuple(x.shape[2:]) != tuple(net.input_shape):
        raise ShapeError(f"expected input [T={net.T}, B, {', '.join(map(str, net.input_shape))}] "
                         f"(time-major), got {list(x.shape)}")
    return x


def fixed_input_scale(net: DeployedNetwork) -> int:
    """c of layer 1, checked against the one rule (model/fixed_point.py) that export also uses."""
    if net.layers[0].fixed is None:
        raise ValueError("the network has no fixed-point parameters: export it quantized or use precision 'float'")
    c = int(net.layers[0].fixed.input_scale)
    if c != input_scale(0, net.input_norm):
        raise ValueError(f"layer 1's input_scale {c} does not match input_norm {net.input_norm!r} "
                         f"(expected {input_scale(0, net.input_norm)}); re-export the network")
    return c


def encode_input(net: DeployedNetwork, x, precision: str) -> np.ndarray:
    """Frames [T, B, *input_shape] with values in [0, 1] (only 0 and 1 for a network with binary
    input) -> what the network's first layer receives: the frames as a float array (float; not
    copied when they are one), or rint(c x) as uint8 (fixed; c <= 255)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    x = check_shape(net, x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if net.input_norm == "binary":
        # one cast and one comparison: a value survives the round trip only if it is an integer 0..255
        ints = x.astype(np.uint8)
        if not (np.array_equal(ints, x) and ints.max(initial=0) <= 1):
            raise ShapeError("this network takes binary input (input_norm 'binary') but got values other than 0 and 1")
    elif x.size and not (x.min() >= 0 and x.max() <= 1):  # also refuses NaN
        raise ShapeError("input values must lie in [0, 1] (frames as written by sast_deploy.data)")
    if precision == "float":
        return x
    c = fixed_input_scale(net)
    return ints if c == 1 else np.rint(x.astype(np.float64) * c).astype(np.uint8)
