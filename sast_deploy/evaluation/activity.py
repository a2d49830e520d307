"""Activity and energy proxies of hard-spike inference, as NeuroBench defines them (docs/activity.md).

One definition of each metric, in numpy (no torch): the PyTorch hard model, the emulator and the
Lava runner all feed `ActivityMeter` the same things (the input frames and every layer's spikes
[T, B, *neuron_shape]) for the same folded network, so their integer counts agree exactly when
their spikes do.

Per inference (one sample, all T steps), on the folded network (what is deployed):
- spikes: spikes of every LIF layer; spike rate = spikes / (neurons T); activation sparsity =
  1 - spike rate over all LIF layers (NeuroBench ActivationSparsity: the input and the readout are
  no activations).
- synaptic operations of every connection (layers 1..L and the readout; biases are not counted):
  dense = every synapse at every step, zero weights included; effective = the synapses with a
  nonzero input and a nonzero weight. Effective operations are ACs (accumulates) where the input is
  binary (spikes; layer 1 with binary input), MACs where it is graded (layer 1 with graded input; the
  readout, which reads the spike rate once per inference). A conv synapse exists only where the
  kernel tap lands inside the input (zero padding carries no synapse): each input element drives
  its exact fan-out, the transposed conv of an all-ones output map with the kernel's nonzero mask.
- synops_per_inference = effective ACs + effective MACs.
Static: footprint (bytes of the parameters, float32 and fixed point) and connection sparsity
(fraction of zero weights, layers and readout).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..export.deployed import DeployedLayer, DeployedNetwork
from ..hardware_sim.encoding import encode_input

# fixed-point widths in bits (docs/deployment.md): weight mantissa, bias mantissa, threshold, and
# per layer weight_exp (signed), bias_exp and dv; the readout stays float32 on the host
FIXED_BITS = {"weight": 8, "bias": 13, "vth": 17, "layer": 4 + 3 + 12}
FLOAT_BYTES = 4


def conv_fanout(mask: np.ndarray, in_shape, out_shape, stride: int, padding: int) -> np.ndarray:
    """Synapses each input element (c, y, x) drives in a conv of kernel `mask` [C_out, C_in, kh, kw]
    (1 where a synapse counts): int64 [C_in, H, W]. Tap (ky, kx) of output (i, j) reads input row
    i stride - padding + ky and column j stride - padding + kx; taps in the padding are no synapse."""
    _, c_in, kh, kw = mask.shape
    _, h, w = in_shape
    _, oh, ow = out_shape
    per_tap = mask.sum(0, dtype=np.int64)  # [C_in, kh, kw]: output channels each tap reaches
    out = np.zeros((c_in, h, w), np.int64)
    for ky in range(kh):
        rows = np.arange(oh) * stride - padding + ky
        rows = rows[(rows >= 0) & (rows < h)]
        for kx in range(kw):
            cols = np.arange(ow) * stride - padding + kx
            cols = cols[(cols >= 0) & (cols < w)]
            out[:, rows[:, None], cols[None, :]] += per_tap[:, ky, kx][:, None, None]  # rows, cols distinct
    return out


def fanout(layer: DeployedLayer, mask: np.ndarray) -> np.ndarray:
    """Synapses each input element of `layer` drives, flattened (C-order), where `mask` (the weight's
    shape) marks the synapses that count."""
    if layer.kind == "dense":
        return mask.sum(0, dtype=np.int64)
    return conv_fanout(mask, layer.in_shape, layer.out_shape, layer.stride, layer.padding).reshape(-1)


def layer_weights(net: DeployedNetwork, precision: str) -> list[np.ndarray]:
    """The weights each layer runs at `precision`: float64, or the fixed-point integers."""
    return [layer.weight if precision == "float" else layer.fixed.w_int for layer in net.layers]


@dataclass
class Connectivity:
    """What the synaptic-operation counts need from a folded network at one precision."""

    effective: list[np.ndarray]  # per layer: nonzero-weight synapses per input element (flattened)
    dense: list[int]  # per layer: synapses per step, zero weights included
    readout: np.ndarray  # per last-layer feature: nonzero readout weights
    readout_dense: int  # features x classes
    graded_input: bool  # layer 1 reads graded values (MACs), else binary (ACs)

    @classmethod
    def of(cls, net: DeployedNetwork, precision: str) -> "Connectivity":
        weights = layer_weights(net, precision)
        return cls([fanout(layer, w != 0) for layer, w in zip(net.layers, weights)],
                   [int(fanout(layer, np.ones(w.shape, bool)).sum()) for layer, w in zip(net.layers, weights)],
                   np.count_nonzero(net.readout_weight, axis=0), int(net.readout_weight.size),
                   net.input_norm != "binary")


def footprint_bytes(net: DeployedNetwork) -> dict:
    """Bytes of the parameters the deployed network runs with: weights (zeros included), biases (one
    per neuron, per output channel for conv), thresholds (per neuron), the leak (per layer) and the
    readout. float32: 4 bytes each. fixed: Loihi widths (FIXED_BITS) for the layers, rounded up to
    whole bytes, and the readout in float32. Both depend on the shapes only."""
    biases = [layer.out_shape[0] if layer.kind == "conv" else layer.bias.size for layer in net.layers]
    readout = net.readout_weight.size + net.readout_bias.size
    values = sum(layer.weight.size + b + layer.theta.size + 1 for layer, b in zip(net.layers, biases)) + readout
    bits = sum(FIXED_BITS["weight"] * layer.weight.size + FIXED_BITS["bias"] * b + FIXED_BITS["vth"] * layer.theta.size
               + FIXED_BITS["layer"] for layer, b in zip(net.layers, biases))
    return {"float32": FLOAT_BYTES * values, "fixed": -(-bits // 8) + FLOAT_BYTES * readout}


def connection_sparsity(net: DeployedNetwork, precision: str) -> float:
    """Fraction of zero weights over every layer and the readout, at `precision` (fixed: the
    layers' integers; the readout is float)."""
    weights = layer_weights(net, precision) + [net.readout_weight]
    return sum(int(np.count_nonzero(w == 0)) for w in weights) / sum(w.size for w in weights)


@dataclass
class ActivityMeter:
    """Integer totals of spikes and effective synaptic operations over the batches added so far.

    `net`: the folded network whose spikes are counted (None where there is none, e.g. MaxPool does
    not fold: then only spikes are counted); `precision`: which weights and input encoding it ran."""

    net: DeployedNetwork | None
    precision: str = "float"
    samples: int = 0
    T: int = 0
    neurons: list[int] = field(default_factory=list)
    spikes: list[int] = field(default_factory=list)  # per layer
    effective: list[int] = field(default_factory=list)  # per layer, then the readout

    def __post_init__(self):
        self.connectivity = Connectivity.of(self.net, self.precision) if self.net is not None else None

    def add(self, x: np.ndarray, spikes: list[np.ndarray]) -> None:
        """Count one batch: input frames x [T, B, *input_shape] (as given to the network) and every
        layer's spikes [T, B, *neuron_shape]."""
        T, B = spikes[0].shape[:2]
        if self.samples and T != self.T:
            raise ValueError(f"batches of {T} and {self.T} steps in one activity count")
        if not self.samples:
            self.T, self.neurons = T, [int(np.prod(s.shape[2:])) for s in spikes]
            self.spikes = [0] * len(spikes)
            self.effective = [0] * (len(spikes) + 1)
        self.samples += B
        for i, s in enumerate(spikes):
            self.spikes[i] += int(np.count_nonzero(s))
        c = self.connectivity
        if c is None:
            return
        first = encode_input(self.net, x, self.precision)  # what layer 1 receives: rint(c x) in fixed point
        for i, (z, fan) in enumerate(zip([first] + spikes[:-1], c.effective)):
            active = np.count_nonzero(z.reshape(T * B, -1), axis=0)  # nonzero inputs per input element
            self.effective[i] += int(active @ fan)
        counts = spikes[-1].reshape(T, B, -1).sum(0)  # the readout reads each feature once per inference
        self.effective[-1] += int(np.count_nonzero(counts, axis=0) @ c.readout)

    def result(self) -> dict:
        """Per-inference metrics (module docstring) and the integer totals they come from."""
        n, T = self.samples, self.T
        if n == 0:
            raise ValueError("no samples counted")
        steps = n * T * sum(self.neurons)
        rate = sum(self.spikes) / steps
        layers = [{"layer": i + 1, "neurons": self.neurons[i], "spikes_per_inference": self.spikes[i] / n,
                   "spike_rate": self.spikes[i] / (n * T * self.neurons[i])} for i in range(len(self.neurons))]
        out = {"precision": self.precision, "samples": n, "T": T, "spikes_per_inference": sum(self.spikes) / n,
               "spike_rate": rate, "activation_sparsity": 1.0 - rate, "synops_per_inference": None, "synops": None,
               "footprint_bytes": None, "connection_sparsity": None, "layers": layers, "readout": None,
               "totals": {"spikes": list(self.spikes), "effective_synops": list(self.effective) if self.net is not None else None}}
        c = self.connectivity
        if c is None:
            return out
        kinds = ["MAC" if c.graded_input else "AC"] + ["AC"] * (len(layers) - 1) + ["MAC"]
        dense = [T * d for d in c.dense] + [c.readout_dense]
        ops = [{"dense": d, "effective": e / n, "type": k} for d, e, k in zip(dense, self.effective, kinds)]
        for row, op, layer in zip(layers, ops, self.net.layers):
            row.update(kind=layer.kind, synops=op)
        macs = sum(op["effective"] for op in ops if op["type"] == "MAC")
        acs = sum(op["effective"] for op in ops if op["type"] == "AC")
        out.update(synops_per_inference=macs + acs,
                   synops={"dense": sum(dense), "effective_macs": macs, "effective_acs": acs},
                   footprint_bytes=footprint_bytes(self.net),
                   connection_sparsity=connection_sparsity(self.net, self.precision), readout={"synops": ops[-1]})
        return out


HEADLINE = ("spikes_per_inference", "synops_per_inference", "activation_sparsity")


def headline(activity: dict) -> dict:
    """The keys reported next to accuracy (summary.json, evaluation.json, REPORT.json) plus the
    whole record under `activity`."""
    return {**{k: activity[k] for k in HEADLINE}, "activity": activity}


def format_activity(r: dict) -> str:
    """One line: spikes and synaptic operations per inference of a headline() record."""
    a = r["activity"]
    text = f"spikes {a['spikes_per_inference']:.1f} (rate {a['spike_rate']:.4f}, sparsity {a['activation_sparsity']:.4f})"
    if a["synops"] is None:
        return text + "; synaptic operations n/a (no folded network)"
    s = a["synops"]
    return (text + f"; synops {a['synops_per_inference']:.4g} (ACs {s['effective_acs']:.4g}, MACs "
            f"{s['effective_macs']:.4g}; dense {s['dense']:.4g})")
