"""Quantization-aware training: the SNN's forward pass on the Loihi fixed-point grid.

`enable_qat(model, input_norm)` swaps every SpikingLayer for a QATLayer that shares its modules and
parameters, so the state_dict (and saving, loading, optimizers, SAM) is unchanged. Its forward:

- folds the block (model/folding.py) and replaces W, b, theta by their values on the layer's grid
  (model/fixed_point.py), with straight-through gradients to the float parameters;
- encodes graded first-layer input as rint(255 x), exactly as the fixed-point network does;
- leaks with alpha_eff = (4096 - dv) / 4096 and rounds the state like Lava's decay,
  u <- trunc0(S u alpha_eff) / S (gradient alpha_eff), and saturates it at +-(2^23 - 1) / S.

In hard mode this is the fixed-point network divided by S: every value is a multiple of 1/S below
2^24 / S, so the float arithmetic is exact whatever the summation order (in float64 always; in
float32 when the backend sums exactly, which excludes TF32 and Winograd convolutions).

Training mode re-chooses the grid from the current parameters at every forward (SAM's perturbed
pass included); eval mode keeps the last one. Store `qat_grids(model)` with the model (as
meta["qat"]); `enable_qat(model, input_norm, grids)` restores them, frozen, for evaluation and export.
"""
from __future__ import annotations

import numpy as np
import torch

from .fixed_point import DECAY_UNITY, STATE_MAX, Grid, LayerIntegers, choose_grid, input_scale, quantize
from .folding import Folded, fold_block
from .lif import integrate, lif_step, spike_function
from .network import SNN, SpikingLayer


class _StraightThrough(torch.autograd.Function):
    """Forward: `value`; backward: the gradient goes to `x`, times `scale`."""

    @staticmethod
    def forward(ctx, x, value, scale):
        ctx.scale = scale
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None, None


class _Decay(torch.autograd.Function):
    """u -> trunc0(S u (4096 - dv) / 4096) / S, computed in float64 (exact); gradient alpha_eff."""

    @staticmethod
    def forward(ctx, u, scale, keep):
        ctx.alpha = keep / DECAY_UNITY
        # u S (4096 - dv) / 4096 in float64: at most 24 + 12 significant bits, exact; so is / S
        return (torch.trunc(u.double() * (scale * keep / DECAY_UNITY)) * (1.0 / scale)).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.alpha, None, None


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


class QATLayer(SpikingLayer):
    """A SpikingLayer whose forward runs on its fixed-point grid (see the module docstring)."""

    def __init__(self, block, lif, input_scale: int, grid: Grid | None = None, where: str = "layer"):
        super().__init__(block, lif)
        self.input_scale = int(input_scale)
        self.grid = grid
        self.frozen = grid is not None
        self.where = where

    def quantized(self) -> tuple[Folded, torch.Tensor, Grid, LayerIntegers]:
        """The folded operator acting on integer-encoded input, theta, the grid and the integers."""
        f = fold_block(self.block, self.where)
        theta = self.lif.theta
        w, b, th = _numpy(f.weight), _numpy(f.bias), _numpy(theta)
        if self.grid is None or (self.training and not self.frozen):
            self.grid = choose_grid(f.kind, w, b, th, self.lif.alpha, self.input_scale)
        g = self.grid
        ints = quantize(g, w, b, th)
        as_t = lambda a, like: torch.from_numpy(np.asarray(a, dtype=np.float64)).to(like)  # noqa: E731
        weight = _StraightThrough.apply(f.weight, as_t(ints.w_int / 2 * g.integer_weight_step, f.weight),
                                        1.0 / g.input_scale)
        bias = _StraightThrough.apply(f.bias, as_t(ints.bias_mant * g.bias_step, f.bias), 1.0)
        theta_q = _StraightThrough.apply(theta, as_t(ints.vth * g.theta_step, theta), 1.0)
        return Folded(f.kind, weight, bias, f.stride, f.padding), theta_q, g, ints

    def forward(self, z: torch.Tensor, return_potentials: bool = False):
        folded, theta, g, _ = self.quantized()
        if g.input_scale != 1:  # the fixed-point input encoding, computed exactly
            z = torch.round(z.double() * g.input_scale).to(z.dtype)
        T, B = z.shape[:2]
        current = folded.apply(z.reshape(T * B, *z.shape[2:]))
        current = current.reshape(T, B, *current.shape[1:])
        spike = spike_function(self.lif.mode, self.lif.surrogate)
        scale, keep, limit = g.scale, DECAY_UNITY - g.dv, STATE_MAX / g.scale

        def step(u, s, i):
            # the spike decision needs no saturation: |theta| S <= 2^22 < 2^23 - 1
            u, s = lif_step(_Decay.apply(u, scale, keep), s, i, 1.0, theta, spike)
            return u.clamp(-limit, limit), s

        return integrate(current, step, return_potentials)


def enable_qat(model: SNN, input_norm: str, grids: list[dict] | None = None) -> SNN:
    """Make `model` train and evaluate on its fixed-point grids (in place; returns it). grids: as
    returned by `qat_grids` (frozen), or None to choose them from the parameters."""
    if grids is not None and len(grids) != len(model.layers):
        raise ValueError(f"{len(grids)} QAT grids for {len(model.layers)} layers")
    for i, layer in enumerate(model.layers):
        c = input_scale(i, input_norm)
        grid = Grid.from_dict(grids[i]) if grids is not None else None
        if grid is not None and grid.input_scale != c:
            raise ValueError(f"layer {i + 1}: QAT grid has input_scale {grid.input_scale}, input_norm "
                             f"{input_norm!r} needs {c}")
        model.layers[i] = QATLayer(layer.block, layer.lif, c, grid, where=f"layer {i + 1}")
    return model


def disable_qat(model: SNN) -> SNN:
    """Back to the float forward (in place; returns it)."""
    for i, layer in enumerate(model.layers):
        model.layers[i] = SpikingLayer(layer.block, layer.lif)
    return model


def rechoose_grids(model: SNN) -> None:
    """Let every unfrozen QATLayer choose its grid anew from the current parameters at its next
    forward (in eval mode too): after an optimizer step the last grid may be that of w + eps."""
    for layer in model.layers:
        if isinstance(layer, QATLayer) and not layer.frozen:
            layer.grid = None


def is_qat(model: SNN) -> bool:
    return any(isinstance(layer, QATLayer) for layer in model.layers)


@torch.no_grad()
def qat_integers(model: SNN) -> list[tuple[Grid, LayerIntegers]]:
    """The grid and integers every QATLayer's forward uses now (what export must write)."""
    if not is_qat(model):
        raise ValueError("the model is not in QAT mode (call enable_qat first)")
    out = []
    for layer in model.layers:
        was_training = layer.training
        layer.eval()  # keep the grid of the last forward
        try:
            _, _, grid, ints = layer.quantized()
        finally:
            layer.train(was_training)
        out.append((grid, ints))
    return out


def qat_grids(model: SNN) -> list[dict]:
    """JSON-able grids of a QAT model, to store with it (meta["qat"])."""
    return [grid.to_dict() for grid, _ in qat_integers(model)]
