"""DeployedNetwork -> ONNX: a full-sequence graph (dynamic T and batch, via Scan) and a single-step
streaming graph with explicit state. Needs torch (the exporter); running them does not
(export/onnx_model.py).

precision "float": the folded float network in float32 with the hard rule u > theta.
precision "fixed": the fixed-point network of docs/deployment.md, exactly: integer-valued float32
synapse sums (exact: every partial sum stays below 2^24), the membrane update in float64 (exact:
integers below 2^53), rint(255 x) input encoding for graded input. Its spikes and counts equal the
emulator's (and Lava's) bit for bit by construction.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn
from torch._higher_order_ops.scan import scan

from ..errors import ExportError
from ..model.fixed_point import ACT_SHIFT, DECAY_UNITY, STATE_MAX, worst_case_input
from .deployed import DeployedNetwork
from .onnx_model import ONNX_FORMAT, ONNX_VERSION, SPIKE_RULE, sequence_io, step_io

OPSET = 18


def _t(a, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype)


class DeployedModule(nn.Module):
    """A DeployedNetwork as a torch module with hard spikes (float or fixed arithmetic)."""

    def __init__(self, net: DeployedNetwork, precision: str):
        super().__init__()
        if precision not in ("float", "fixed"):
            raise ValueError(f"precision must be 'float' or 'fixed', got {precision!r}")
        if precision == "fixed" and not net.is_quantized:
            raise ExportError("the network has no fixed-point parameters; quantize it first or export precision float")
        self.precision, self.T = precision, int(net.T)
        self.kinds = [layer.kind for layer in net.layers]
        self.geometry = [(layer.stride, layer.padding) for layer in net.layers]
        self.shapes = [tuple(layer.out_shape) for layer in net.layers]
        self.alphas, self.shifts, self.keeps = [], [], []
        for l, layer in enumerate(net.layers):
            if precision == "float":
                self.register_buffer(f"w{l}", _t(layer.weight))
                self.register_buffer(f"b{l}", _t(layer.bias))
                self.register_buffer(f"theta{l}", _t(layer.theta))
                self.alphas.append(float(layer.alpha))
            else:
                fx = layer.fixed
                we = int(fx.weight_exp) if layer.kind == "dense" else 0
                if worst_case_input(np.asarray(fx.w_int), fx.input_scale) >= 2**24 or we < 0:
                    raise ExportError(f"layer {l + 1}: fixed-point sums could exceed float32's exact range "
                                      "(or weight_exp < 0); re-quantize with sast-deploy's quantizer")
                self.register_buffer(f"w{l}", _t(fx.w_int))
                self.register_buffer(f"b{l}", _t(np.asarray(fx.bias_mant) * 2.0 ** fx.bias_exp, torch.float64))
                self.register_buffer(f"theta{l}", _t(np.asarray(fx.vth) * 2.0**ACT_SHIFT, torch.float64))
                self.shifts.append(float(2 ** (we + ACT_SHIFT)))
                self.keeps.append(float(DECAY_UNITY - int(fx.dv)))
        self.input_scale = float(net.layers[0].fixed.input_scale) if precision == "fixed" else 1.0
        self.register_buffer("readout_w", _t(net.readout_weight))
        self.register_buffer("readout_b", _t(net.readout_bias))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "fixed" and self.input_scale != 1:
            return torch.round(x.double() * self.input_scale).float()  # rint(255 x), computed exactly
        return x

    def synapse(self, l: int, z: torch.Tensor) -> torch.Tensor:
        """z [N, *in_shape] -> float: W z + b; fixed: a_in << 6 = (sum w_int z) 2^(weight_exp + 6)."""
        w = getattr(self, f"w{l}")
        if self.kinds[l] == "dense":
            out = z.flatten(1) @ w.T
        else:
            stride, padding = self.geometry[l]
            out = F.conv2d(z, w, None, stride, padding)
        if self.precision == "float":
            return out + getattr(self, f"b{l}")
        return out * self.shifts[l]

    def neuron(self, l: int, u: torch.Tensor, s: torch.Tensor, i: torch.Tensor):
        """One step of layer l: (u_{t-1}, s_{t-1}, I_t) -> (u_t, s_t), float32 tensors."""
        theta = getattr(self, f"theta{l}")
        if self.precision == "float":
            u = self.alphas[l] * u + i - theta * s
            return u, (u > theta).to(u.dtype)
        v = u.double()
        v = torch.sign(v) * torch.floor(v.abs() * self.keeps[l] / DECAY_UNITY)  # decay, rounded toward zero
        v = torch.clamp(v + i.double() + getattr(self, f"b{l}") - theta * s.double(), -STATE_MAX, STATE_MAX)
        return v.float(), (v > theta).float()

    def readout(self, counts: torch.Tensor, T) -> torch.Tensor:
        return (counts / T) @ self.readout_w.T + self.readout_b

    def forward(self, x: torch.Tensor):
        """x [T, B, *input_shape] -> logits [B, classes], counts [B, features], spikes per layer."""
        T, B = x.shape[0], x.shape[1]
        z = self.encode(x)
        spikes = []
        for l, shape in enumerate(self.shapes):
            current = self.synapse(l, z.reshape(T * B, *z.shape[2:])).reshape(T, B, *shape)

            def step(carry, i, l=l):
                u, s = self.neuron(l, carry[0], carry[1], i)
                return (u, s), s.clone()

            _, z = scan(step, (current.new_zeros(B, *shape), current.new_zeros(B, *shape)), current)
            spikes.append(z)
        counts = z.reshape(T, B, -1).sum(0)
        return (self.readout(counts, T), counts, *spikes)


class StepModule(nn.Module):
    """One time step with explicit state: (x_t, u_1..u_L, s_1..s_L, counts) -> (logits, next state).
    logits = W_out (counts / T) + b_out with the network's T: read them after T steps."""

    def __init__(self, core: DeployedModule):
        super().__init__()
        self.core = core

    def forward(self, x, *state):
        L = len(self.core.shapes)
        us, ss, counts = state[:L], state[L:2 * L], state[2 * L]
        z = self.core.encode(x)
        new_u, new_s = [], []
        for l in range(L):
            u, s = self.core.neuron(l, us[l], ss[l], self.core.synapse(l, z))
            new_u.append(u)
            new_s.append(s)
            z = s
        counts = counts + z.flatten(1)
        return (self.core.readout(counts, self.core.T), *new_u, *new_s, counts)


def _strip(graph: onnx.GraphProto) -> None:
    """Drop doc strings and node metadata (the exporter stores stack traces with absolute paths)."""
    graph.doc_string = ""
    for node in graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _strip(attr.g)
            for g in attr.graphs:
                _strip(g)


def metadata(net: DeployedNetwork, graph: str, precision: str, dynamic_T: bool) -> dict[str, str]:
    return {
        "format": ONNX_FORMAT, "version": ONNX_VERSION, "graph": graph, "precision": precision,
        "spike_rule": SPIKE_RULE, "T": str(net.T), "dynamic_T": "true" if dynamic_T else "false",
        "input_shape": json.dumps(list(net.input_shape)), "input_norm": net.input_norm,
        "input_encoding": ("x in [0, 1] as given" if precision == "float" else
                           f"rint({net.layers[0].fixed.input_scale} x), computed exactly"),
        "layer_shapes": json.dumps([list(layer.out_shape) for layer in net.layers]),
        "class_names": json.dumps(list(net.class_names)),
        "source": json.dumps(net.meta.get("source", {}), sort_keys=True),
        "data": json.dumps(net.meta.get("data", {}), sort_keys=True),
    }


def _export(module: nn.Module, args: tuple, names: tuple[list[str], list[str]], dynamic_shapes) -> onnx.ModelProto:
    logger = logging.getLogger("torch.onnx")  # keeps "torchvision is not installed" notes off the console
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, args, dynamo=True, external_data=False, verbose=False,
                                        input_names=names[0], output_names=names[1], dynamic_shapes=dynamic_shapes,
                                        opset_version=OPSET)
    finally:
        logger.setLevel(level)
    return program.model_proto


def export_onnx(net: DeployedNetwork, path: str | os.PathLike, graph: str = "sequence",
                precision: str = "float") -> onnx.ModelProto:
    """Write `net` as one self-contained ONNX file (graph "sequence" or "step"); returns the model."""
    core = DeployedModule(net, precision).eval()
    L = len(net.layers)
    batch = torch.export.Dim("batch")
    x = torch.zeros(net.T, 2, *net.input_shape)
    if graph == "sequence":
        model = _export(core, (x,), sequence_io(L), ({0: torch.export.Dim("T"), 1: batch},))
    elif graph == "step":
        # distinct tensors: torch.export merges inputs that are the same object
        state = tuple(torch.zeros(2, *layer.out_shape) for _ in range(2) for layer in net.layers)
        state += (torch.zeros(2, int(np.prod(net.layers[-1].out_shape))),)
        model = _export(StepModule(core).eval(), (x[0], *state), step_io(L),
                        ({0: batch}, tuple({0: batch} for _ in state)))  # forward(x, *state)
    else:
        raise ValueError(f"graph must be 'sequence' or 'step', got {graph!r}")
    _strip(model.graph)
    for fn in model.functions:
        for node in fn.node:
            node.doc_string = ""
            del node.metadata_props[:]
    model.doc_string = ""
    del model.metadata_props[:]
    for key, value in metadata(net, graph, precision, dynamic_T=graph == "sequence").items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save_model(model, tmp, save_as_external_data=False)
    os.replace(tmp, path)
    return model
