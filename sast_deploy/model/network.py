"""The torch SNN built from a NetworkSpec (DESIGN §3), evaluable in surrogate, hard or STE mode."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import ShapeError
from .lif import LIF, MODES
from .spec import NetworkSpec, op_output_shape
from .surrogates import Surrogate


class Affine(nn.Module):
    """Per-channel affine map x * scale + shift (channel axis 1): an inference-mode norm."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * self.weight.reshape(shape) + self.bias.reshape(shape)


def _build_op(op: dict, in_shape: tuple[int, ...]) -> nn.Module:
    kind = op["kind"]
    if kind == "flatten":
        return nn.Flatten()
    if kind == "linear":
        return nn.Linear(in_shape[0], op["out"], bias=op["bias"])
    if kind == "conv":
        return nn.Conv2d(in_shape[0], op["out"], op["kernel"], op["stride"], op["padding"], bias=op["bias"])
    if kind == "avgpool":
        return nn.AvgPool2d(op["kernel"])
    if kind == "maxpool":
        return nn.MaxPool2d(op["kernel"])
    if kind == "norm":
        return Affine(in_shape[0])
    if kind == "batchnorm":
        bn = nn.BatchNorm1d if len(in_shape) == 1 else nn.BatchNorm2d
        return bn(in_shape[0], eps=op["eps"], momentum=op["momentum"])
    raise AssertionError(kind)


class SpikingLayer(nn.Module):
    """Linear block A applied to all T steps at once, then the LIF recurrence over time."""

    def __init__(self, block: nn.Sequential, lif: LIF):
        super().__init__()
        self.block = block
        self.lif = lif

    def forward(self, z: torch.Tensor, return_potentials: bool = False):
        T, B = z.shape[:2]
        current = self.block(z.reshape(T * B, *z.shape[2:]))
        return self.lif(current.reshape(T, B, *current.shape[1:]), return_potentials)


class SNN(nn.Module):
    """Time-major SNN: x [T, B, *input_shape] in [0, 1] -> logits [B, num_classes].

    o = W_out (1/T sum_t z^(L)_t) + b_out. The same weights run in any spike mode: set `mode`
    (or use `in_mode`) to switch all LIF layers between 'surrogate', 'hard' and 'ste'.
    """

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        surrogate = Surrogate(spec.surrogate, spec.k)
        shape = spec.input_shape
        layers = []
        for layer_spec, neuron_shape in zip(spec.layers, spec.layer_shapes()):
            ops = []
            for op in layer_spec.ops:
                ops.append(_build_op(op, shape))
                shape = op_output_shape(op, shape)
            lif = LIF(neuron_shape, layer_spec.alpha, layer_spec.theta_init, surrogate, spec.theta_min)
            layers.append(SpikingLayer(nn.Sequential(*ops), lif))
        self.layers = nn.ModuleList(layers)
        self.readout = nn.Linear(spec.readout_features, spec.num_classes)

    @property
    def lifs(self) -> list[LIF]:
        return [layer.lif for layer in self.layers]

    @property
    def mode(self) -> str:
        return self.lifs[0].mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        for lif in self.lifs:
            lif.mode = mode

    @contextlib.contextmanager
    def in_mode(self, mode: str):
        """Temporarily evaluate the same weights in another spike mode."""
        previous, self.mode = self.mode, mode
        try:
            yield self
        finally:
            self.mode = previous

    def check_input(self, x: torch.Tensor) -> None:
        want = self.spec.input_shape
        if x.ndim != 2 + len(want) or tuple(x.shape[2:]) != want:
            raise ShapeError(f"expected input [T, B, {', '.join(map(str, want))}] (time-major), got {list(x.shape)}")

    def forward(self, x: torch.Tensor, return_spikes: bool = False, return_potentials: bool = False):
        """Logits, plus per-layer spikes [T, B, *shape] (and potentials) when asked."""
        self.check_input(x)
        z, spikes, potentials = x, [], []
        for layer in self.layers:
            if return_potentials:
                z, u = layer(z, return_potentials=True)
                potentials.append(u)
            else:
                z = layer(z)
            spikes.append(z)
        logits = self.readout(z.mean(0).flatten(1))
        if not (return_spikes or return_potentials):
            return logits
        out = (logits, spikes)
        return out + (potentials,) if return_potentials else out

    @torch.no_grad()
    def project_(self) -> None:
        """Apply the parameter constraints after an optimizer step (theta >= theta_min)."""
        for lif in self.lifs:
            lif.project_()

