"""Training step: ours (surrogate, STE, SAST) vs snnTorch and SpikingJelly vs the dense floor.

Workload (DESIGN §7, bench/networks.py): LIF MLP 2312 -> 256 -> 10, batch 64, T 30, input
Bernoulli(0.1), Adam, forward + backward + step, at 1 and 2 threads (CPU) or on the GPU. Ours runs
the trainer's own `Updater`; the peers run the same network with their LIF neuron; the dense floor
replaces the neurons by ReLU (the matrix work alone). Also shown: ours with the reference
autograd loop (`LIF(fused=False)`), i.e. what the fused LIF recurrence buys. Peak memory is torch's
allocation peak during one step (bench/harness.py). Targets (issue 7): ours <= 1.15 x dense floor
and <= 1.0 x the fastest peer; SAST <= 2.0 x our baseline.

    python -m bench train_step [--threads 1,2] [--device auto] [--rounds 30] [--iters 2] [--smoke]
"""
from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version

import torch

from . import networks
from .harness import interleaved, machine, peak_memory, ratio, resolve_device

FLOOR, SURROGATE, STE, SAST = "dense floor (ReLU)", "ours surrogate", "ours STE", "ours SAST"
PEERS = {  # row -> (package, builder(workload, batches, device))
    "snnTorch Leaky (STE)": ("snntorch", networks.snntorch_leaky),
    "SpikingJelly LIFNode (surrogate)": ("spikingjelly", lambda w, b, d: networks.spikingjelly_lif(w, b, d, False)),
    "SpikingJelly LIFNode (STE)": ("spikingjelly", lambda w, b, d: networks.spikingjelly_lif(w, b, d, True)),
}
TARGET_FLOOR, TARGET_PEER, TARGET_SAST = 1.15, 1.0, 2.0


def build(w: networks.Workload, device: torch.device, rho: float) -> dict:
    """label -> step function; peers that are not installed are reported and left out."""
    batches = w.batches(device)
    steps = {FLOOR: networks.dense_floor(w, batches, device),
             SURROGATE: networks.ours(w, batches, device, "surrogate"),
             STE: networks.ours(w, batches, device, "ste"),
             SAST: networks.ours(w, batches, device, "surrogate", rho=rho),
             "ours, autograd loop (surrogate)": networks.ours(w, batches, device, "surrogate", fused=False)}
    for label, (package, builder) in PEERS.items():
        try:
            steps[label] = builder(w, batches, device)
        except ImportError:
            print(f"{label}: {package} is not installed (pip install '.[bench]'); row left out")
    return steps


def peer_versions() -> str:
    found = []
    for package in sorted({p for p, _ in PEERS.values()}):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} not installed")
    return ", ".join(found)


def verdict(label: str, a, b, target: float) -> str:
    value, lo, hi = ratio(a, b)
    return (f"  {label:<58} {value:6.3f} (rounds IQR {lo:.2f}-{hi:.2f}; CPU time {a.cpu_median / b.cpu_median:.3f})"
            f"  target <= {target}: {'met' if value <= target else 'NOT met'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench train_step", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--threads", default="1,2", help="CPU thread counts, comma-separated (CPU only)")
    p.add_argument("--device", default="auto", help="auto = cuda when present, else cpu")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--iters", type=int, default=2, help="timed calls per method and round")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per method first")
    p.add_argument("--T", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--rho", type=float, default=0.3, help="SAST radius")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one call each: checks that it runs")
    args = p.parse_args(argv)
    w = networks.Workload(args.T, args.batch_size, args.hidden)
    rounds, iters, warmup, threads = args.rounds, args.iters, args.warmup, [int(t) for t in args.threads.split(",")]
    if args.smoke:
        w, rounds, iters, warmup, threads = networks.Workload(3, 4, 8), 1, 1, 1, [1]
    device = resolve_device(args.device)
    if device.type == "cuda":
        threads = [torch.get_num_threads()]
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    print("== train step: ours vs snnTorch and SpikingJelly vs the dense floor")
    print(f"workload: {w.describe()}")
    print(machine(device))
    print(f"peers: {peer_versions()}")
    print(f"timing: {warmup} warm-up calls per method, then {rounds} rounds x {iters} calls per method, "
          f"methods interleaved; medians over all timed calls")
    steps = build(w, device, args.rho)
    sast_label = f"ours SAST rho {args.rho} (surrogate)"
    memory = {}
    for n in threads:
        torch.set_num_threads(n)
        t = interleaved(steps, rounds, iters, warmup, sync)
        if not memory:
            memory = {label: peak_memory(step, device) for label, step in steps.items()}
        print(f"\n-- {n} thread{'s' if n > 1 else ''}" if device.type == "cpu" else f"\n-- {device}")
        print(f"  {'method':<36} {'wall ms':>8} {'(IQR)':>13} {'x dense (IQR)':>21} {'CPU ms':>8} "
              f"{'x dense':>8} {'peak MiB':>9}")
        for label, timing in t.items():
            lo_q, hi_q = timing.iqr
            r, lo, hi = ratio(timing, t[FLOOR])
            shown = sast_label if label == SAST else label
            print(f"  {shown:<36} {1e3 * timing.median:8.1f} {f'({1e3 * lo_q:.1f}-{1e3 * hi_q:.1f})':>13} "
                  f"{f'{r:.2f} ({lo:.2f}-{hi:.2f})':>21} {1e3 * timing.cpu_median:8.1f} "
                  f"{timing.cpu_median / t[FLOOR].cpu_median:8.2f} {memory[label] / 2**20:9.1f}")
        peers = [label for label in PEERS if label in t]
        where = f" at {n} thread{'s' if n > 1 else ''}" if device.type == "cpu" else ""
        print(f"targets{where} (wall time, median of per-round ratios):")
        for ours_label in (SURROGATE, STE):
            print(verdict(f"{ours_label} / dense floor", t[ours_label], t[FLOOR], TARGET_FLOOR))
        if peers:
            fastest = min(peers, key=lambda label: t[label].median)
            for ours_label in (SURROGATE, STE):
                print(verdict(f"{ours_label} / fastest peer ({fastest})", t[ours_label], t[fastest], TARGET_PEER))
        else:
            print("  no peer installed: peer targets not checked")
        print(verdict("SAST / ours surrogate", t[SAST], t[SURROGATE], TARGET_SAST))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
