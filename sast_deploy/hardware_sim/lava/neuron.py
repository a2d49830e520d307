"""The paper's LIF neuron as a Lava Process, with a float and a Loihi-style fixed-point model.

Both models implement docs/deployment.md exactly: a memoryless current, leak, per-neuron threshold,
strict spike rule `v > vth`, reset by subtracting `vth` un-decayed one step after a spike, and a
periodic state reset (every `reset_interval` steps at phase `reset_offset`) so that samples can be
streamed back to back. Lava runs every module of this folder while it searches for models: absolute
imports only, nothing heavy, no torch.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat
from lava.proc.lif.process import AbstractLIF

# du that makes the current memoryless (u = a_in): float 1; fixed 4095 (+ Lava's offset 1 = 4096)
MEMORYLESS_DU = {"float": 1.0, "fixed": 4095}
V_MAX = 2**23 - 1  # 24-bit signed membrane, saturating


class SASTLIF(AbstractLIF):
    """LIF neurons with reset by subtraction and per-neuron thresholds (DESIGN §3, hard mode).

    precision "float": dv = 1 - alpha, bias_mant = b, vth = theta (floats).
    precision "fixed": integer dv, bias_mant, bias_exp, vth as in docs/deployment.md.
    The current is memoryless (du is pinned; the Var u stays 0). The state (v, s_prev) is zeroed
    before the step where time_step % reset_interval == reset_offset.
    """

    def __init__(self, *, shape, precision: str, dv, vth, bias_mant, bias_exp=0,
                 reset_interval: int, reset_offset: int, name: str | None = None):
        if precision not in MEMORYLESS_DU:
            raise ValueError(f"precision must be 'float' or 'fixed', got {precision!r}")
        super().__init__(shape=shape, u=0, v=0, du=MEMORYLESS_DU[precision], dv=dv,
                         bias_mant=bias_mant, bias_exp=bias_exp, name=name, log_config=None,
                         precision=precision, reset_interval=int(reset_interval),
                         reset_offset=int(reset_offset) % int(reset_interval))
        self.vth = Var(shape=shape, init=vth)
        self.s_prev = Var(shape=shape, init=0)


class _PeriodicReset:
    """Shared by both models: the streaming reset and a guard against a mismatched run config."""

    precision = ""

    def _check_precision(self):
        if self.proc_params["precision"] != self.precision:
            raise RuntimeError(
                f"SASTLIF built for precision {self.proc_params['precision']!r} runs with a "
                f"{self.precision!r} model: use the run config that matches the network's precision")

    def _reset_if_due(self):
        if self.time_step % self.proc_params["reset_interval"] == self.proc_params["reset_offset"]:
            self.v[:] = 0
            self.s_prev[:] = 0


@implements(proc=SASTLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySASTLIFFloat(_PeriodicReset, AbstractPyLifModelFloat):
    """v = (1 - dv) v + (a_in + b) - vth s_prev;  s = v > vth  (float64)."""

    precision = "float"
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    s_prev: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._check_precision()

    def run_spk(self):
        a_in = self.a_in.recv()
        self._reset_if_due()
        # Same association as the torch model: alpha * u + (W z + b) - theta * s_prev
        self.v[:] = self.v * (1 - self.dv) + (a_in + self.bias_mant) - self.vth * self.s_prev
        self.s_prev[:] = self.v > self.vth
        self.s_out.send(self.s_prev)


@implements(proc=SASTLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PySASTLIFFixed(_PeriodicReset, AbstractPyLifModelFixed):
    """Integer dynamics of docs/deployment.md, in int64 before the 24-bit saturation:

        u = a_in << 6;  v = trunc0(v (4096 - dv) / 4096) + u + (bias_mant << bias_exp) - (vth << 6) s_prev
        v = clip(v, -(2^23 - 1), 2^23 - 1);  s = v > (vth << 6)
    """

    precision = "fixed"
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    s_prev: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._check_precision()

    def run_spk(self):
        a_in = self.a_in.recv().astype(np.int64)
        self._reset_if_due()
        u = a_in << self.act_shift  # du = 4095: memoryless; int64, no 24-bit wrap (contract)
        v = self.v.astype(np.int64)
        v = np.sign(v) * ((np.abs(v) * (self.decay_unity - int(self.dv))) >> self.decay_shift)
        vth = self.vth.astype(np.int64) << self.vth_shift
        bias = self.bias_mant.astype(np.int64) << self.bias_exp.astype(np.int64)
        v = np.clip(v + u + bias - vth * self.s_prev, -V_MAX, V_MAX)
        self.v[:] = v
        self.s_prev[:] = v > vth
        self.s_out.send(self.s_prev)
