"""What every benchmark shares: the machine line, interleaved timing, peak memory of one call.

Timing (`interleaved`): every method runs `warmup` untimed calls, then `rounds` rounds; a round
runs `iters` timed calls of each method, methods in a rotating order, so a burst of load from
other processes lands on all of them alike. Reported per method: the median wall time over all
timed calls, its interquartile range, the median CPU time of the process (all threads; on a
shared machine it moves less with other jobs' load than wall time does, at 1 thread), and per
round the median wall time. Ratios are medians of per-round ratios, with their quartiles.
"""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when present, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def machine(device: torch.device) -> str:
    """One line: CPU (and GPU), load, torch build."""
    load = " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    where = f"{cpu_name()}, {os.cpu_count()} logical CPUs, load average {load}"
    if device.type == "cuda":
        where += f"; GPU {torch.cuda.get_device_name(device)}"
    return f"machine: {where}; Python {platform.python_version()}, torch {torch.__version__}, device {device}"


@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)       # seconds per call
    cpu: list[float] = field(default_factory=list)        # process CPU seconds per call
    round_wall: list[float] = field(default_factory=list)  # median wall time of each round

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def iqr(self) -> tuple[float, float]:
        if len(self.wall) < 2:
            return self.wall[0], self.wall[0]
        q = statistics.quantiles(self.wall, n=4)
        return q[0], q[2]


def interleaved(methods: dict[str, Callable[[], None]], rounds: int, iters: int, warmup: int,
                sync: Callable[[], None] = lambda: None) -> dict[str, Timing]:
    """Time each method as described in the module docstring."""
    for fn in methods.values():
        for _ in range(warmup):
            fn()
    sync()
    out = {name: Timing() for name in methods}
    names = list(methods)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, timing, walls = methods[name], out[name], []
            for _ in range(iters):
                sync()
                w0, c0 = time.perf_counter(), time.process_time()
                fn()
                sync()
                walls.append(time.perf_counter() - w0)
                timing.cpu.append(time.process_time() - c0)
            timing.wall += walls
            timing.round_wall.append(statistics.median(walls))
    return out


def ratio(a: Timing, b: Timing) -> tuple[float, float, float]:
    """a / b as the median of the per-round ratios (a and b ran moments apart in each round, so
    load that comes and goes cancels), with their quartiles as the spread."""
    per_round = [x / y for x, y in zip(a.round_wall, b.round_wall)]
    if len(per_round) < 2:
        return per_round[0], per_round[0], per_round[0]
    q = statistics.quantiles(per_round, n=4)
    return statistics.median(per_round), q[0], q[2]


@contextlib.contextmanager
def _quiet_stderr():
    """The CPU profiler's C++ side prints start/stop lines straight to fd 2."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory(fn: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated by torch during one call of `fn`, above what was allocated before it.
    CUDA: the caching allocator's peak. CPU: the running sum of the profiler's allocation and
    free events (torch tensors only: not the interpreter, not library workspaces)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return peak
