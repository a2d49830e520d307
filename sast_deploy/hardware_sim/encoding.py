"""Input encoding shared by every hardware simulator (docs/deployment.md).

Float precision feeds the frames as float64. Fixed point feeds integers: binary input as 0/1,
graded input (`input_norm` "max") as round(255 x), whose factor 255 export folds into layer 1.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..export.deployed import DeployedNetwork

PRECISIONS = ("float", "fixed")
GRADED_LEVELS = 255


def check_frames(net: DeployedNetwork, x: np.ndarray) -> np.ndarray:
    """Validate time-major frames [T, B, *input_shape] with values in [0, 1]; returns float64."""
    x = np.asarray(x, dtype=np.float64)
    want = (net.T, *net.input_shape)
    if x.ndim != len(want) + 1 or x.shape[0] != net.T or tuple(x.shape[2:]) != tuple(net.input_shape):
        raise ShapeError(f"expected input [T={net.T}, B, {', '.join(map(str, net.input_shape))}] "
                         f"(time-major), got {list(x.shape)}")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ShapeError("input values must lie in [0, 1] (frames as written by sast_deploy.data)")
    return x


def encode_input(net: DeployedNetwork, x: np.ndarray, precision: str) -> np.ndarray:
    """Frames [T, B, *input_shape] in [0, 1] -> what the network's first layer receives."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    x = check_frames(net, x)
    binary = net.input_norm == "binary"
    if binary and np.any((x != 0) & (x != 1)):
        raise ShapeError("this network takes binary input (input_norm 'binary') but got values other than 0 and 1")
    if precision == "float":
        return x
    return x.astype(np.int64) if binary else np.rint(x * GRADED_LEVELS).astype(np.int64)
