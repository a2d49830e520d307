"""`sast-deploy demo` (`make demo`): baseline and SAST on the embedded nmnist-small dataset, their
evaluation report, the SAST model exported and run with hard spikes on every simulator, then the
transfer gap where it lives: a conv net with training-mode BatchNorm, with and without SAST, before
and after hard-mode BatchNorm re-estimation."""
from __future__ import annotations

import argparse
from pathlib import Path

from .evaluation.report import evaluate_and_report
from .jsonio import read_json
from .simulate import deploy_and_simulate, format_table
from .training.config import TrainConfig
from .training.trainer import load_data, train


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="folder for the demo's runs (replaced on every run)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--rho", type=float, default=0.3, help="SAM radius of the SAST run")
    p.add_argument("--seed", type=int, default=0, help="random seed (the same for both runs)")
    p.add_argument("--device", default="auto", help="torch device; auto = CUDA when present")
    p.add_argument("--lava-samples", type=int, default=20,
                   help="test recordings run through Lava (float and fixed), evenly spaced over the split")
    p.add_argument("--gap", action=argparse.BooleanOptionalAction, default=True,
                   help="also train the conv-bn pair (baseline and SAST, MaxPool, k = 1) into OUT-gap and show "
                        "the transfer gap before and after hard-mode BatchNorm re-estimation")
    p.add_argument("--gap-epochs", type=int, default=12, help="training epochs of the conv-bn pair (the study's)")


def run(args) -> int:
    print("sast-deploy demo: LIF MLP 2312-256-10 on nmnist-small (700 train / 100 val / 200 test recordings)")
    base = TrainConfig(epochs=args.epochs, seed=args.seed, device=args.device)
    data = load_data(base)
    rows = []
    for name, rho in (("baseline", 0.0), ("sast", args.rho)):
        cfg = TrainConfig(**{**base.to_dict(), "rho": rho, "out": str(Path(args.out) / name)})
        print(f"\n{cfg.method} (rho {rho}) -> {cfg.out}")
        rows.append(train(cfg, overwrite=True, data=data))
    print(f"\n{'method':<10}{'rho':>6}{'surrogate':>11}{'hard':>8}{'gap':>8}{'s/epoch':>9}{'spikes/inf':>12}"
          f"{'synops/inf':>12}")
    for s in rows:
        print(f"{s['method']:<10}{s['rho']:>6.2f}{s['surrogate_acc']:>11.3f}{s['hard_acc']:>8.3f}"
              f"{s['transfer_gap']:>+8.3f}{s['time_per_epoch_s']:>9.2f}{s['spikes_per_inference']:>12.1f}"
              f"{s['synops_per_inference']:>12.0f}")
    print(f"\ntest split, {rows[0]['samples']} recordings, model of the best validation epoch; "
          f"SAST/baseline time per epoch {rows[1]['time_per_epoch_s'] / rows[0]['time_per_epoch_s']:.2f}x")
    print("spikes/inf, synops/inf: hard-mode spikes and effective synaptic operations per test recording "
          "(docs/activity.md)")
    print(f"summaries: {args.out}/baseline/summary.json, {args.out}/sast/summary.json")
    report = evaluate_and_report(args.out)  # robustness grid, diagnostics, tables and plots of the demo's runs
    print(f"report: {report['markdown']} (plots in {report['markdown'].parent / 'plots'})")

    sast = Path(args.out) / "sast"
    print(f"\ndeployment of the SAST model ({sast}): hard spikes, fixed point = Loihi-style integers")
    reports = deploy_and_simulate(sast, lava_samples=args.lava_samples)
    print(format_table(reports))
    print("spike mismatches: neuron-steps that differ from the reference (float: the PyTorch hard model in "
          "float64; fixed: the emulator); quant. gap = torch hard - fixed accuracy, on the same samples")
    print(f"reports: {sast}/net.lava.h5.simulate-*.json, {sast}/net.onnx.simulate-*.json")
    if args.gap:
        gap_pair(args)
    return 0


def gap_pair(args) -> None:
    """The pilot setting of docs/transfer-gap.md on one seed: conv-bn (training-mode BatchNorm, MaxPool,
    k = 1), baseline and SAST, each with its hard-mode BatchNorm re-estimated copy."""
    out = Path(f"{args.out}-gap")
    print(f"\nwhere the transfer gap lives: conv + training-mode BatchNorm (preset conv-bn, MaxPool, k = 1; "
          f"a practical extension), {args.gap_epochs} epochs -> {out}")
    base = TrainConfig(preset="conv-bn", pool="max", k=1.0, epochs=args.gap_epochs, seed=args.seed,
                       device=args.device, bn_recalibrate="hard")
    rows = []
    for name, rho in (("baseline", 0.0), ("sast", args.rho)):
        cfg = TrainConfig(**{**base.to_dict(), "rho": rho, "out": str(out / name)})
        print(f"\n{cfg.method} (rho {rho}) -> {cfg.out}")
        rows.append((train(cfg, overwrite=True), read_json(out / name / "bn-hard" / "summary.json")))
    print(f"\n{'method':<10}{'rho':>6}{'surrogate':>11}{'hard':>8}{'gap':>8}   after BN re-estimation: "
          f"{'hard':>6}{'gap':>8}")
    for s, bn in rows:
        print(f"{s['method']:<10}{s['rho']:>6.2f}{s['surrogate_acc']:>11.3f}{s['hard_acc']:>8.3f}"
              f"{s['transfer_gap']:>+8.3f}{'':>27}{bn['hard_acc']:>6.3f}{bn['transfer_gap']:>+8.3f}")
    print(f"one seed ({args.seed}); the study over norms, pooling, k, rho and 3 seeds, and what it found: "
          "docs/transfer-gap.md (examples/gap_study.sh)")
