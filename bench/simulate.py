"""Samples/s of the hard-spike simulators on one network (issue 6 §8): 2312 -> 512 -> 10, T = 100.

    python bench/simulate.py                        # stand-in network (see below), 20 test samples
    python bench/simulate.py --artifact net.lava.h5 --samples 50

Lava float and Lava fixed run the same samples of the embedded N-MNIST test split through
`run_lava`; each is timed end to end (compile, start-up, streaming, stop) and, from a one-sample
run, at steady state. The emulator (float, fixed) runs the whole test split (best of --repeat
runs; frames prepared beforehand, encoding included). Target: emulator fixed >= 100x Lava fixed
(at steady state), bit-exact: the same spikes and logits as Lava on the Lava samples.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from importlib.metadata import version

import numpy as np

from sast_deploy.data import load_frames
from sast_deploy.export.deployed import DeployedLayer, DeployedNetwork, FixedPoint
from sast_deploy.hardware_sim.conformance import spike_mismatches
from sast_deploy.hardware_sim.emulator import emulate
from sast_deploy.lava import run_lava

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


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


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
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs ({_cpu()}), load average "
          f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}, lava-nc {version('lava-nc')}")

    rates, steady, lava, emu = {}, {}, {}, {}
    for precision in ("float", "fixed"):
        t_all, lava[precision] = timed(lambda: run_lava(net, x, precision))
        t_one, _ = timed(lambda: run_lava(net, x[:, :1], precision, record_spikes=False))
        per_sample = (t_all - t_one) / max(args.samples - 1, 1)
        rates[f"lava {precision}"], steady[precision] = args.samples / t_all, 1 / per_sample
        print(f"lava {precision:5s}:     {args.samples / t_all:8.1f} samples/s end to end ({t_all:.1f} s), "
              f"{1 / per_sample:8.1f} at steady state (start-up ~{t_one - per_sample:.1f} s), "
              f"hidden spike rate {lava[precision].counts.mean() / net.T:.3f}")
    for precision in ("float", "fixed"):
        best = min(timed(lambda: emulate(net, everything, precision, keep_spikes=False))[0] for _ in range(args.repeat))
        rates[f"emulator {precision}"] = len(data) / best
        emu[precision] = emulate(net, x, precision)
        print(f"emulator {precision:5s}: {len(data) / best:8.1f} samples/s")
    print(f"lava fixed / float speed: {rates['lava fixed'] / rates['lava float']:.2f}x")
    for precision in ("float", "fixed"):
        e, l = rates[f"emulator {precision}"], steady[precision]
        exact = spike_mismatches(lava[precision].spikes, emu[precision].spikes) == 0 and \
            np.array_equal(lava[precision].logits, emu[precision].logits)
        print(f"emulator / lava {precision}: {e / l:.0f}x at Lava's steady state, {e / rates[f'lava {precision}']:.0f}x "
              f"end to end; spikes and logits identical on the {args.samples} Lava samples: {exact}")
    ratio = rates["emulator fixed"] / steady["fixed"]
    print(f"target emulator fixed >= 100x Lava fixed: {'met' if ratio >= 100 else 'NOT met'} ({ratio:.0f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
