"""The deployable network: what export produces from a trained model and what every simulator
(emulator, Lava, ONNX) consumes. Plain numpy, no torch. Equations: docs/deployment.md."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FixedPoint:
    """Loihi-style integer parameters of one layer (docs/deployment.md, "Fixed point")."""

    w_int: np.ndarray  # dense [N_out, N_in], conv [C_out, C_in, kh, kw]; int64 values in [-256, 255]
    weight_exp: int  # dense only; conv layers use 0
    bias_mant: np.ndarray  # neuron shape, int64 in [-4096, 4095]
    bias_exp: int  # 0..7
    vth: np.ndarray  # neuron shape, int64 in [0, 131071]
    dv: int  # 0..4095; alpha_eff = (4096 - dv) / 4096
    scale: float  # S: integer membrane units per float unit
    input_scale: int = 1  # integer input per unit of float input: 255 for graded first-layer input, else 1


@dataclass
class DeployedLayer:
    """One folded LIF layer: synaptic operator (dense or conv) + per-neuron bias, threshold, leak."""

    kind: str  # "dense" | "conv"
    in_shape: tuple[int, ...]  # (N_in,) or (C, H, W) of the spikes/input it reads
    out_shape: tuple[int, ...]  # neuron shape: (N,) or (C, H, W)
    weight: np.ndarray  # float64, dense [N_out, N_in], conv [C_out, C_in, kh, kw] (torch layout)
    bias: np.ndarray  # float64, neuron shape
    theta: np.ndarray  # float64, neuron shape
    alpha: float
    stride: int = 1
    padding: int = 0
    fixed: FixedPoint | None = None


@dataclass
class DeployedNetwork:
    """A whole deployable network plus what a user needs to feed it."""

    layers: list[DeployedLayer]
    readout_weight: np.ndarray  # float64 [num_classes, features of the last layer]
    readout_bias: np.ndarray  # float64 [num_classes]
    T: int
    input_shape: tuple[int, ...]  # (C, H, W) or (D,)
    input_norm: str  # "binary" | "max"
    class_names: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # source run, its metrics, dataset, sensor, ...

    @property
    def is_quantized(self) -> bool:
        return all(layer.fixed is not None for layer in self.layers)
