"""Stream many samples through one compiled Lava network and collect each sample's window.

N samples of T steps run back to back in N*T + L Lava steps (L layers, one step of delay each);
each layer resets its state every T steps (docs/lava.md). Frames go in, and spikes come out,
through memory-mapped ring files filled and drained between `run` calls, never through
Var.set/get. The runtime is always stopped, also on errors and Ctrl-C.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from tqdm import tqdm

from ..errors import ShapeError
from .lava.network import CHANNEL_DTYPE, SASTNetwork
from .lava.stream import RingSink, RingSource
from .lava_runtime import shutdown, start
from .mapping import from_lava
from .readout import readout_logits

RING_BYTES = 2**25  # input ring size: bounds memory whatever the number of samples


@dataclass
class LavaRun:
    """What one streamed run produced, per sample, in the model's layout."""

    precision: str
    counts: np.ndarray  # [N, features] int64: last layer's spikes per sample (C-order flatten)
    logits: np.ndarray  # [N, classes] float64: readout_logits(counts)
    spikes: list[np.ndarray] = field(default_factory=list)  # per layer [T, N, *shape] uint8 (if recorded)
    steps: int = 0  # Lava time steps run: N*T + L


def run_lava(net, data, precision: str | None = None, *, record_spikes: bool = True,
             progress: bool | None = None) -> LavaRun:
    """Run samples through `net` on Lava's CPU backend with hard spikes.

    net: a DeployedNetwork or a `*.lava.h5` path. data: frames [T, B, *input_shape] in [0, 1], or
    an iterable of such batches (streamed; only the results are kept). precision: "float" or
    "fixed" (default: fixed when the network is quantized). record_spikes: also return every
    layer's spikes (else only the last layer's counts). progress: tqdm bar (None: only on a
    terminal, and only once a run has lasted a few seconds).
    """
    lnet = SASTNetwork(net, precision)
    dn, precision = lnet.network, lnet.precision
    T, L = dn.T, lnet.num_layers
    layers = list(range(L)) if record_spikes else [L - 1]
    in_shape = lnet.inp.shape
    in_dtype = CHANNEL_DTYPE[precision]
    ring = max(T + L, RING_BYTES // (np.dtype(in_dtype).itemsize * int(np.prod(in_shape))))
    total = data.shape[1] if hasattr(data, "shape") else None
    with tempfile.TemporaryDirectory(prefix="sast-lava-", dir=_fast_tmp()) as tmp:
        def ring_file(name, shape, dtype):
            path = os.path.join(tmp, name)
            return path, np.memmap(path, dtype=dtype, mode="w+", shape=(ring, *shape))

        path, frames = ring_file("input", in_shape, in_dtype)
        RingSource(shape=in_shape, path=path, dtype=np.dtype(in_dtype).name, length=ring).s_out.connect(lnet.inp)
        sinks = {}
        for i in layers:
            shape = lnet.neurons[i].s_out.shape
            path, sinks[i] = ring_file(f"spikes{i}", shape, np.uint8)
            lnet.neurons[i].s_out.connect(RingSink(shape=shape, path=path, dtype="uint8", length=ring).a_in)
        recorded = {i: [] for i in layers}
        steps = 0
        bar = tqdm(total=total, unit="sample", desc=f"lava {precision}", delay=3.0,
                   disable=None if progress is None else not progress)
        try:
            for block, completed in _step_blocks(lnet, data, ring):
                rows = (steps + np.arange(len(block))) % ring
                frames[rows] = block
                if steps == 0:
                    start(lnet, lnet.run_config(), len(block))
                else:
                    lnet.run(condition=RunSteps(num_steps=len(block)))
                for i in layers:
                    recorded[i].append(np.array(sinks[i][rows]))
                bar.update(completed)
                steps += len(block)
        finally:
            bar.close()
            shutdown(lnet)
            del frames, sinks  # release the maps before the directory goes
    n = (steps - L) // T
    if n == 0:
        raise ShapeError("no samples to run: the input holds no frames")
    spikes = {i: _windows(np.concatenate(recorded[i]), i, n, T, dn.layers[i].out_shape) for i in layers}
    counts = spikes[L - 1].sum(0, dtype=np.int64).reshape(n, -1)
    logits = readout_logits(counts, dn.readout_weight, dn.readout_bias, T)
    return LavaRun(precision, counts, logits, [spikes[i] for i in layers] if record_spikes else [], steps)


def _step_blocks(lnet: SASTNetwork, data, ring: int) -> Iterator[tuple[np.ndarray, int]]:
    """(input of each Lava step, samples completed) in blocks of at most `ring` steps; L zero steps
    at the end flush the pipeline."""
    T = lnet.T
    for x in [data] if hasattr(data, "shape") else data:
        x = lnet.encode(x)
        for i in range(0, len(x), ring):
            yield x[i:i + ring], min(i + ring, len(x)) // T - i // T
    yield np.zeros((lnet.num_layers, *lnet.inp.shape)), 0


def _windows(rows: np.ndarray, layer: int, n: int, T: int, shape) -> np.ndarray:
    """Lava steps [steps, *lava_shape] -> the layer's aligned windows [T, n, *shape].
    Layer index `layer` (0-based) holds model step t of sample k at row k*T + layer + 1 + t."""
    w = rows[layer + 1: layer + 1 + n * T].reshape(n, T, *rows.shape[1:]).swapaxes(0, 1)
    return np.ascontiguousarray(from_lava(w, shape))


def _fast_tmp() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
