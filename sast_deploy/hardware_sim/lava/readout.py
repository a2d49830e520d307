"""A Lava-native readout: a non-spiking integrator of the last layer's spikes.

It counts each neuron's spikes over the sample window (reset every T steps at the phase where the
last layer's window starts) and sends o = W_out (counts / T) + b_out every step; the value sent at
the window's last step is the sample's logits, bit-identical to the host readout. Absolute imports
only (Lava executes this folder while searching for models).
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from sast_deploy.hardware_sim.readout import readout_logits


class Readout(AbstractProcess):
    """Spikes of `shape` in (Lava layout) -> logits [classes] out.

    `order` permutes the flattened Lava-layout counts into the model's C-order flatten that
    `weight` ([classes, features]) expects.
    """

    def __init__(self, *, shape, weight, bias, T: int, order, reset_offset: int):
        weight = np.asarray(weight, dtype=np.float64)
        super().__init__(shape=tuple(shape), weight=weight, bias=np.asarray(bias, dtype=np.float64),
                         T=int(T), order=np.asarray(order), reset_offset=int(reset_offset) % int(T))
        self.a_in = InPort(shape=tuple(shape))
        self.s_out = OutPort(shape=(weight.shape[0],))
        self.counts = Var(shape=tuple(shape), init=0)


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt", "bit_accurate_loihi")
class PyReadout(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self):
        p = self.proc_params
        spikes = self.a_in.recv()
        if self.time_step % p["T"] == p["reset_offset"]:
            self.counts[:] = 0
        self.counts += spikes.astype(np.int64)
        flat = self.counts.reshape(-1)[p["order"]]
        self.s_out.send(readout_logits(flat[None], p["weight"], p["bias"], p["T"])[0])
