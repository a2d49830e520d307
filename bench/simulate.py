"""Samples/s of the hard-spike simulators on one network (issue 6 §8): 2312 -> 512 -> 10, T = 100.

    python -m bench simulate                        # stand-in network (see below), 20 test samples
    python -m bench simulate --artifact net.lava.h5 --samples 50

Lava float and Lava fixed run the same samples of the embedded N-MNIST test split through
`run_lava`; each is timed end to end (compile, start-up, streaming, stop) and, from a one-sample
run, at steady state. The emulator (float, fixed) runs the whole test split (best of --repeat
runs; frames prepared beforehand, encoding included). Each also reports CPU time per sample (this
process and Lava's worker processes): on a shared machine wall-clock rates follow the load, and a
multi-process Lava run gets a larger share of busy CPUs than the emulator's threads. Target:
emulator fixed >= 100x Lava fixed, bit-exact: the same spikes and logits as Lava on its samples.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from importlib.metadata import version

import numpy as np

from sast_deploy.data import load_frames
from sast_deploy.export.deployed import DeployedLayer, DeployedNetwork, FixedPoint
from sast_deploy.hardware_sim.conformance import spike_mismatches
from sast_deploy.hardware_sim.emulator import emulate
from sast_deploy.lava import run_lava

from .harness import cpu_name

T = 100


def stand_in(hidden: int = 512, seed: int = 0) -> DeployedNetwork:
    """The mlp preset's shape (2312 -> 512 LIF -> readout 10) with random integer (Loihi-style)
    parameters and their exact float de-quantization, so that float and fixed run the same network
    (a trained artifact can be given instead)."""
    rng = np.random.default_rng(seed)
    w_int = 2 * np.clip(np.rint(rng.normal(0, 24, (hidden, 2312))), -128, 127).astype(np.int64)
    fx = FixedPoint(w_int, 0, rng.integers(-64, 64, hidden), 3, np.full(hidden, 300), 410, 64.0)
    layer = DeployedLayer("dense", (2312,), (hidden,), w_int * 2.0**6 / fx.scale,
                          fx.bias_mant * 2.0**fx.bias_exp / fx.scale, fx.vth * 2.0**6 / fx.scale,
                          (4096 - fx.dv) / 4096, fixed=fx)
    return DeployedNetwork([layer], rng.normal(0, 1, (10, hidden)), np.zeros(10), T, (2, 34, 34), "binary")


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (Lava's workers are joined on stop)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn):
    """(wall seconds, CPU seconds, result)."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = fn()
    return time.perf_counter() - wall, _cpu_seconds() - cpu, result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--artifact", help="exported *.lava.h5; default: a stand-in of the same shape")
    p.add_argument("--samples", type=int, default=20, help="test samples run through Lava")
    p.add_argument("--repeat", type=int, default=3, help="emulator runs over the test split (the best counts)")
    args = p.parse_args(argv)

    if args.artifact:
        from sast_deploy.export.artifact import load_artifact

        net = load_artifact(args.artifact)
    else:
        net = stand_in()
    data = load_frames("nmnist-small", "test", net.T, norm=net.input_norm, progress=False)
    x = data.frames(np.arange(args.samples))
    everything = data.frames(np.arange(len(data)))
    sizes = [int(np.prod(layer.in_shape)) for layer in net.layers] + [int(np.prod(net.layers[-1].out_shape))]
    print(f"network {' -> '.join(map(str, sizes))} LIF -> readout {len(net.readout_bias)}, T = {net.T}; "
          f"Lava on {args.samples} samples, the emulator on all {len(data)} of nmnist-small/test")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs ({cpu_name()}), load average "
          f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}, lava-nc {version('lava-nc')}")

    # per simulator: samples/s end to end and at steady state (Lava), CPU ms per sample
    rate, steady, cpu, lava, emu = {}, {}, {}, {}, {}
    for precision in ("float", "fixed"):
        name = f"lava {precision}"
        wall_all, cpu_all, lava[precision] = timed(lambda: run_lava(net, x, precision))
        wall_one, cpu_one, _ = timed(lambda: run_lava(net, x[:, :1], precision, record_spikes=False))
        n = max(args.samples - 1, 1)
        rate[name], steady[name] = args.samples / wall_all, n / (wall_all - wall_one)
        cpu[name] = (cpu_all - cpu_one) / n
        print(f"{name:14s}: {rate[name]:8.1f} samples/s end to end ({wall_all:.1f} s), {steady[name]:8.1f} at "
              f"steady state (start-up ~{wall_one - 1 / steady[name]:.1f} s), {1e3 * cpu[name]:7.2f} CPU ms/sample; "
              f"hidden spike rate {lava[precision].counts.mean() / net.T:.3f}")
    for precision in ("float", "fixed"):
        name = f"emulator {precision}"
        wall, cpu_s = min(timed(lambda: emulate(net, everything, precision, keep_spikes=False))[:2]
                          for _ in range(args.repeat))
        rate[name] = steady[name] = len(data) / wall
        cpu[name] = cpu_s / len(data)
        emu[precision] = emulate(net, x, precision)
        print(f"{name:14s}: {rate[name]:8.1f} samples/s, {1e3 * cpu[name]:7.2f} CPU ms/sample")
    for precision in ("float", "fixed"):
        e, l = f"emulator {precision}", f"lava {precision}"
        exact = spike_mismatches(lava[precision].spikes, emu[precision].spikes) == 0 and \
            np.array_equal(lava[precision].logits, emu[precision].logits)
        print(f"emulator / lava {precision}: {steady[e] / steady[l]:.0f}x samples/s at Lava's steady state "
              f"({rate[e] / rate[l]:.0f}x end to end), {cpu[l] / cpu[e]:.0f}x less CPU per sample; "
              f"the same spikes and logits on the {args.samples} Lava samples: {exact}")
    print(f"lava fixed / float speed: {steady['lava fixed'] / steady['lava float']:.2f}x")
    ratio = steady["emulator fixed"] / steady["lava fixed"]
    print(f"target emulator fixed >= 100x Lava fixed (samples/s, steady state): "
          f"{'met' if ratio >= 100 else 'NOT met'} ({ratio:.0f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
