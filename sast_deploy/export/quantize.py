"""Loihi-style fixed point for a DeployedNetwork, with a per-layer report. No torch.

The grid (scale, exponents, rounding) is model/fixed_point.py, shared with quantization-aware
training. Post-training quantization chooses each layer's grid from its float parameters; a QAT
run hands over the grids and integers its forward pass used (model/qat.py), so the export computes
exactly what the QAT model computed.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..model.fixed_point import (Grid, LayerIntegers, choose_grid, decay_dv, dequantize, input_scale, quantize,
                                 worst_case_input)
from .deployed import DeployedLayer, DeployedNetwork, FixedPoint


def fixed_point(grid: Grid, ints: LayerIntegers) -> FixedPoint:
    return FixedPoint(w_int=ints.w_int, weight_exp=grid.weight_exp, bias_mant=ints.bias_mant, bias_exp=grid.bias_exp,
                      vth=ints.vth, dv=grid.dv, scale=grid.scale, input_scale=grid.input_scale)


def grid_of(fx: FixedPoint) -> Grid:
    """The grid a FixedPoint was made on."""
    return Grid(int(np.log2(fx.scale)), int(fx.weight_exp), int(fx.bias_exp), int(fx.dv), int(fx.input_scale))


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / norm if norm > 0 else 0.0


def layer_report(index: int, layer: DeployedLayer, grid: Grid, ints: LayerIntegers) -> dict:
    """How well the integers represent the layer's float parameters."""
    w, b, theta = dequantize(grid, ints.w_int, ints.bias_mant, ints.vth)
    worst = worst_case_input(ints.w_int, grid.input_scale) * 2 ** (grid.weight_exp if layer.kind == "dense" else 0)
    return {
        "layer": index + 1, "kind": layer.kind, "scale": grid.scale, "weight_exp": grid.weight_exp,
        "bias_exp": grid.bias_exp, "dv": grid.dv, "input_scale": grid.input_scale,
        "alpha": layer.alpha, "alpha_eff": grid.alpha,
        "weight_rel_err": _rel_err(w, layer.weight), "bias_rel_err": _rel_err(b, layer.bias),
        "theta_rel_err": _rel_err(theta, layer.theta),
        "weight_mantissa_max": int(np.abs(ints.w_int).max(initial=0)) // 2,
        "vth_range": [int(ints.vth.min()), int(ints.vth.max())],
        "worst_case_a_in": int(worst),
        "saturated": dict(ints.clipped),
    }


def quantize_network(net: DeployedNetwork, integers: list[tuple[Grid, LayerIntegers]] | None = None,
                     dequantized_floats: bool = False) -> tuple[DeployedNetwork, list[dict]]:
    """(network with `fixed` set on every layer, per-layer report).

    integers: the (grid, integers) of every layer, e.g. from a QAT model; by default each layer's
    grid is chosen from its float parameters. dequantized_floats: also replace the float
    parameters by the values the integers stand for (the float and fixed precisions then describe
    the same model, up to the rounding of the decay)."""
    layers, report = [], []
    for i, layer in enumerate(net.layers):
        c = input_scale(i, net.input_norm)
        if integers is None:
            grid = choose_grid(layer.kind, layer.weight, layer.bias, layer.theta, layer.alpha, c)
            ints = quantize(grid, layer.weight, layer.bias, layer.theta)
        else:
            grid, ints = integers[i]
            if grid.input_scale != c or grid.dv != decay_dv(layer.alpha):
                raise ValueError(f"layer {i + 1}: the given grid does not belong to this network")
            # a QAT layer quantizes its folded bias per channel; the artifact holds one per neuron
            per_channel = ints.bias_mant.reshape(ints.bias_mant.shape + (1,) * (len(layer.out_shape) - 1))
            ints = dataclasses.replace(ints, bias_mant=np.broadcast_to(per_channel, layer.out_shape).copy())
        report.append(layer_report(i, layer, grid, ints))
        new = dataclasses.replace(layer, fixed=fixed_point(grid, ints))
        if dequantized_floats:
            w, b, theta = dequantize(grid, ints.w_int, ints.bias_mant, ints.vth)
            new = dataclasses.replace(new, weight=w, bias=b, theta=theta, alpha=grid.alpha)
        layers.append(new)
    return dataclasses.replace(net, layers=layers), report
