"""SASTNetwork: a deployed network as one hierarchical Lava Process (like lava-dl's netx Network).

Per layer a Lava Dense or Conv feeds SASTLIF neurons; each Dense/Conv delays by one step, so layer
l (1-based) holds model step t - l at Lava step t and resets its state every T steps at phase l + 1
(docs/lava.md). Ports: `inp` takes the first layer's input in Lava layout (see
`sast_deploy.hardware_sim.mapping`), `out` sends the last layer's spikes, or the logits of a
Lava-native readout when `readout=True`. Absolute imports only (Lava executes this folder).
"""
from __future__ import annotations

import os

import numpy as np

from lava.magma.core.decorator import implements
from lava.magma.core.model.sub.model import AbstractSubProcessModel
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.process import Conv
from lava.proc.dense.process import Dense

from sast_deploy.export.deployed import DeployedNetwork
from sast_deploy.hardware_sim.lava.neuron import SASTLIF
from sast_deploy.hardware_sim.lava.readout import Readout
from sast_deploy.hardware_sim.encoding import encode_input
from sast_deploy.hardware_sim.mapping import check_network, flat_order, input_to_lava, layer_params

SELECT_TAG = {"float": "floating_pt", "fixed": "fixed_pt"}
CHANNEL_DTYPE = {"float": np.float64, "fixed": np.int32}


def _load(net) -> DeployedNetwork:
    if isinstance(net, DeployedNetwork):
        return net
    if isinstance(net, (str, os.PathLike)):
        from sast_deploy.export.artifact import load_artifact  # the export side; imported on use

        return load_artifact(net)
    raise TypeError(f"SASTNetwork takes a *.lava.h5 path or a DeployedNetwork, got {type(net).__name__}")


class SASTNetwork(AbstractProcess):
    """A deployed SAST network in Lava.

    net: a `*.lava.h5` artifact path or a `DeployedNetwork`. precision: "float" or "fixed"
    (default: fixed when the network is quantized); run it with `run_config()`, whose tag matches.
    readout: add the non-spiking integrator readout, `out` then sends logits (valid at the last
    step of each sample's window).
    """

    def __init__(self, net, precision: str | None = None, readout: bool = False, name: str | None = None):
        super().__init__(name=name)  # first: Process.__del__ needs it even if a check below fails
        net = _load(net)
        precision = precision or ("fixed" if net.is_quantized else "float")
        check_network(net, precision)
        self.network, self.precision, self.T, self.num_layers = net, precision, net.T, len(net.layers)
        self.synapses, self.neurons = [], []
        for i in range(self.num_layers):
            params = layer_params(net, i, precision)
            synapse = (Dense if params.kind == "dense" else Conv)(**params.synapse)
            # layer l = i + 1 lags l steps, so its samples start at phase l + 1
            neuron = SASTLIF(**params.neuron, reset_interval=net.T, reset_offset=i + 2)
            if self.neurons:
                prev = self.neurons[-1].s_out  # conv -> dense: (W, H, C) flattened, weights permuted to match
                (prev.flatten() if len(prev.shape) != len(synapse.s_in.shape) else prev).connect(synapse.s_in)
            synapse.a_out.connect(neuron.a_in)
            self.synapses.append(synapse)
            self.neurons.append(neuron)
        self.inp = InPort(shape=self.synapses[0].s_in.shape)
        self.inp.connect(self.synapses[0].s_in)
        last = self.neurons[-1]
        if readout:
            self.readout = Readout(shape=last.s_out.shape, weight=net.readout_weight, bias=net.readout_bias,
                                   T=net.T, order=flat_order(net.layers[-1].out_shape),
                                   reset_offset=self.num_layers + 1)
            last.s_out.connect(self.readout.a_in)
            last = self.readout
        self.out = OutPort(shape=last.s_out.shape)
        last.s_out.connect(self.out)

    def encode(self, x) -> np.ndarray:
        """Frames [T, B, *input_shape] in [0, 1] -> the steps `inp` takes, sample after sample:
        [B*T, *inp.shape], float64 (float) or int32 (fixed: rint(c x), `encode_input`); the
        sender's dtype fixes Lava's channel dtype."""
        x = input_to_lava(self.network, encode_input(self.network, x, self.precision))
        return x.swapaxes(0, 1).reshape(-1, *self.inp.shape).astype(CHANNEL_DTYPE[self.precision])

    def run_config(self) -> Loihi2SimCfg:
        """Lava's CPU simulation config selecting the models of this network's precision."""
        return Loihi2SimCfg(select_tag=SELECT_TAG[self.precision])

    def window(self, sample: int, layer: int | None = None) -> range:
        """Lava time steps (1-based) holding model steps 1..T of `sample` in layer index `layer`
        (0-based; default the last layer)."""
        layer = self.num_layers if layer is None else layer + 1
        start = sample * self.T + layer + 1
        return range(start, start + self.T)


@implements(proc=SASTNetwork, protocol=LoihiProtocol)
class SubSASTNetworkModel(AbstractSubProcessModel):
    """The layers are built and wired in SASTNetwork itself (so apps can probe them before
    compiling); this model only registers them as sub-processes."""

    def __init__(self, proc: SASTNetwork):
        for i, (synapse, neuron) in enumerate(zip(proc.synapses, proc.neurons)):
            setattr(self, f"synapse{i}", synapse)
            setattr(self, f"neuron{i}", neuron)
        if hasattr(proc, "readout"):
            self.readout = proc.readout
