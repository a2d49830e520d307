"""A trained torch SNN -> the float DeployedNetwork (folded, float64). Needs torch.

Every layer's block folds into one dense or conv operator (model/folding.py); conv biases are
expanded to one value per neuron; thresholds and leak are copied. Folding runs on a float64 copy,
so the deployed network is the model evaluated in float64 up to the summation order of the fold.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ..model.folding import Folded, fold_block
from ..model.network import SNN
from .deployed import DeployedLayer, DeployedNetwork


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()


def deployed_layer(folded: Folded, in_shape, out_shape, theta: torch.Tensor, alpha: float) -> DeployedLayer:
    """One DeployedLayer from a folded operator (bias expanded to the neuron shape)."""
    out_shape = tuple(int(v) for v in out_shape)
    bias = _numpy(folded.bias)
    if folded.kind == "conv":
        bias = np.broadcast_to(bias[:, None, None], out_shape).copy()
        in_shape = tuple(int(v) for v in in_shape)
    else:
        in_shape = (int(np.prod(in_shape)),)
    return DeployedLayer(kind=folded.kind, in_shape=in_shape, out_shape=out_shape, weight=_numpy(folded.weight),
                         bias=bias, theta=_numpy(theta).reshape(out_shape), alpha=float(alpha),
                         stride=int(folded.stride), padding=int(folded.padding))


def fold_network(model: SNN, T: int, input_norm: str, meta: dict | None = None) -> DeployedNetwork:
    """The float DeployedNetwork of `model` (unchanged; folding happens on a float64 copy)."""
    spec = model.spec
    model64 = copy.deepcopy(model).cpu().to(torch.float64).eval()
    in_shapes = [spec.input_shape] + spec.layer_shapes()[:-1]
    layers = []
    with torch.no_grad():
        for i, (layer, in_shape, out_shape) in enumerate(zip(model64.layers, in_shapes, spec.layer_shapes())):
            folded = fold_block(layer.block, where=f"layer {i + 1}")
            layers.append(deployed_layer(folded, in_shape, out_shape, layer.lif.theta, layer.lif.alpha))
    return DeployedNetwork(
        layers=layers, readout_weight=_numpy(model64.readout.weight), readout_bias=_numpy(model64.readout.bias),
        T=int(T), input_shape=tuple(spec.input_shape), input_norm=input_norm,
        class_names=list(spec.class_names), meta=dict(meta or {}))
