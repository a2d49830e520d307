"""Time per training iteration (forward + backward + optimizer step), baseline vs SAST.

DESIGN workload: LIF MLP 2312 -> 256 -> 10 on nmnist-small frames, batch 64, T = 30, one thread.
Both methods run the trainer's own `Updater` on the same preloaded minibatches (data loading is
not timed). Rounds alternate baseline and SAST so drifting machine load hits both alike; the
median per-iteration time of each is compared. Target: SAST / baseline <= 2.0 (two passes, one
optimizer step, nothing more).

    .venv/bin/python bench/train_step.py [--iters 20] [--rounds 5] [--T 30] [--batch-size 64]
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch

from sast_deploy.model.network import SNN
from sast_deploy.training.config import TrainConfig
from sast_deploy.training.controls import constraint_projection, network_spec
from sast_deploy.training.optim import build_optimizer
from sast_deploy.training.step import Updater
from sast_deploy.training.trainer import load_data


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=20, help="iterations per round and method")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    ap.add_argument("--T", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rho", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = TrainConfig(T=args.T, batch_size=args.batch_size, device=args.device, hidden=256)
    train = load_data(cfg, progress=False)["train"]
    n_batches = 4
    batches = [(torch.from_numpy(train.frames(range(i * args.batch_size, (i + 1) * args.batch_size))).to(args.device),
                torch.from_numpy(train.labels[i * args.batch_size:(i + 1) * args.batch_size]).to(args.device))
               for i in range(n_batches)]
    spec = network_spec(cfg, train)

    def updater(rho):
        torch.manual_seed(0)
        model = SNN(spec).to(args.device)
        opt = build_optimizer(model, cfg.optimizer, cfg.lr)
        return Updater(model, opt, constraint_projection(model, cfg), rho=rho)

    methods = {"baseline": updater(0.0), f"SAST (rho {args.rho})": updater(args.rho)}
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times = {name: [] for name in methods}
    for name, upd in methods.items():  # warm-up
        for i in range(3):
            upd(batches[i % n_batches], lambda i=i: batches[(i + 1) % n_batches])
    for _ in range(args.rounds):
        for name, upd in methods.items():
            for i in range(args.iters):
                sync()
                t0 = time.perf_counter()
                upd(batches[i % n_batches], lambda i=i: batches[(i + 1) % n_batches])
                sync()
                times[name].append(time.perf_counter() - t0)

    print(f"train step: LIF MLP {math.prod(spec.input_shape)} -> 256 -> {spec.num_classes}, batch {args.batch_size}, T {args.T}, {args.threads} thread(s), "
          f"{args.rounds} x {args.iters} iterations per method")
    print(f"machine: {cpu_name()}, torch {torch.__version__}, device {args.device}")
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"  {name:<18} median {1e3 * med[name]:8.1f} ms/iteration   (min {1e3 * min(t):.1f}, max {1e3 * max(t):.1f})")
    base, sast = med.values()
    print(f"SAST / baseline = {sast / base:.2f}  (target <= 2.0: {'met' if sast / base <= 2.0 else 'NOT met'})")


if __name__ == "__main__":
    main()
