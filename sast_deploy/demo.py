"""`sast-deploy demo` (`make demo`): the pipeline on the embedded nmnist-small dataset."""
from __future__ import annotations

import argparse

from .evaluation.report import evaluate_and_report
from .training.trainer import TrainConfig, train


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="folder for the demo's runs and reports")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--seed", type=int, default=0, help="random seed")


def run(args) -> int:
    print("sast-deploy demo: LIF MLP 2312-256-10 on nmnist-small (700 train / 100 val / 200 test recordings)")
    cfg = TrainConfig(preset="mlp", epochs=args.epochs, seed=args.seed, out=args.out)
    s = train(cfg)
    print()
    print(f"{'method':<12}{'surrogate':>10}{'hard':>8}{'gap':>8}{'s/epoch':>9}")
    print(f"{'baseline':<12}{s['surrogate_acc']:>10.3f}{s['hard_acc']:>8.3f}{s['transfer_gap']:>+8.3f}"
          f"{s['time_per_epoch_s']:>9.2f}")
    print(f"\ntest split, {s['samples']} recordings; summary: {args.out}/summary.json")
    report = evaluate_and_report(args.out)  # robustness grid, diagnostics, tables and plots of the demo's runs
    print(f"report: {report['markdown']} (plots in {report['markdown'].parent / 'plots'})")
    return 0
