"""Bulk data in and out of a running Lava network through memory-mapped ring files.

Lava's Var.get/set move one element per message, far too slow for data. These processes instead
read (source) or write (sink) row `(time_step - 1) % length` of a `.npy`-less raw memmap that the
host fills or drains between `run` calls. Absolute imports only (Lava executes this folder).
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class RingSource(AbstractProcess):
    """Sends row (t - 1) % length of the ring file `path` ([length, *shape] of `dtype`) at step t."""

    def __init__(self, *, shape, path: str, dtype: str, length: int):
        super().__init__(shape=tuple(shape), path=str(path), dtype=str(dtype), length=int(length))
        self.s_out = OutPort(shape=tuple(shape))


class RingSink(AbstractProcess):
    """Writes what arrives at step t into row (t - 1) % length of the ring file `path`."""

    def __init__(self, *, shape, path: str, dtype: str, length: int):
        super().__init__(shape=tuple(shape), path=str(path), dtype=str(dtype), length=int(length))
        self.a_in = InPort(shape=tuple(shape))


class _Ring(PyLoihiProcessModel):
    def _ring(self, mode: str) -> np.memmap:
        if getattr(self, "_mm", None) is None:  # opened in the Lava worker, not pickled across
            p = self.proc_params
            self._mm = np.memmap(p["path"], dtype=p["dtype"], mode=mode, shape=(p["length"], *p["shape"]))
        return self._mm

    def _row(self) -> int:
        return (self.time_step - 1) % self.proc_params["length"]


class _PySource(_Ring):
    def run_spk(self):
        self.s_out.send(np.asarray(self._ring("r")[self._row()]))


@implements(proc=RingSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyRingSourceFloat(_PySource):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=RingSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyRingSourceFixed(_PySource):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)


@implements(proc=RingSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt", "bit_accurate_loihi")
class PyRingSink(_Ring):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)

    def run_spk(self):
        self._ring("r+")[self._row()] = self.a_in.recv()
