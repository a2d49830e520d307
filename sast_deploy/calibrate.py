"""`sast-deploy calibrate` (= `python -m sast_deploy.calibrate`): post-hoc controls that change no weight.
Default: the threshold-calibration baseline (thresholds scaled by lambdas chosen on the validation
split by hard accuracy, applied once to test). `--bn-recalibrate hard`: BatchNorm running statistics
re-estimated with hard-spike forward passes over the training split. Either writes a copy of the run
that `evaluate` and `export` read like any run."""
from __future__ import annotations

import argparse
import sys

from .training.bn_recalibration import bn_recalibrate_run
from .training.calibration import METHODS, calibrate_run
from .training.config import BN_RECALIBRATIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="finished run directory to calibrate")
    p.add_argument("--out", default=None,
                   help="copy to write (default: RUN/calibrated, or RUN/bn-hard with --bn-recalibrate hard)")
    p.add_argument("--bn-recalibrate", default="none", choices=list(BN_RECALIBRATIONS),
                   help="hard: instead of scaling thresholds, re-estimate every BatchNorm layer's running mean and "
                        "variance from hard-mode forward passes over the training split (weights frozen, labels "
                        "unused; docs/transfer-gap.md)")
    p.add_argument("--method", default="per-layer", choices=list(METHODS),
                   help="threshold calibration: lambdas the copy uses: one global lambda, or per-layer lambdas "
                        "(coordinate search from the global one); both are reported")
    p.add_argument("--val-split", default="val", help="threshold calibration: split the lambdas are chosen on")
    p.add_argument("--test-split", default="test", help="split the copy is reported on")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: the one the run was trained on)")


def _thresholds(args) -> None:
    s = calibrate_run(args.run, args.out, args.method, args.val_split, args.test_split, data_dir=args.data_dir)
    rec = s["record"]
    print(f"{args.run}: lambdas chosen on {args.val_split} by hard accuracy "
          f"(uncalibrated {rec['uncalibrated_val_hard_acc']:.3f})")
    for m in METHODS:
        print(f"  {m:<10} lambdas {rec[m]['lambdas']}  val hard {rec[m]['val_hard_acc']:.3f}  "
              f"{args.test_split} hard {rec['test'][f'{m}_hard_acc']:.3f}")
    t = rec["test"]
    print(f"  {args.test_split}: surrogate {t['surrogate_acc']:.3f}  hard {t['uncalibrated_hard_acc']:.3f} -> "
          f"{s['hard_acc']:.3f} calibrated ({args.method})  gap {s['transfer_gap']:+.3f}")
    print(f"-> {s['out']} (summary.json, calibration.json, model.safetensors)")


def _batchnorm(args) -> None:
    s = bn_recalibrate_run(args.run, args.out, args.bn_recalibrate, args.test_split, args.data_dir)
    rec = s["record"]
    key = f"{rec['mode']}_vs_running"
    print(f"{args.run}: BatchNorm statistics re-estimated in {rec['mode']} mode on {rec['samples']} {rec['split']} "
          "recordings (weights frozen, labels unused)")
    for layer in rec["layers"]:
        print(f"  {layer['module']:<18} {layer['channels']:>4} channels, {layer['count']} values each: running "
              f"statistics vs {rec['mode']}: mean shift {layer[key]['shift_sigma']:.2f} sigma, std ratio "
              f"{layer[key]['std_ratio']:.2f} (vs surrogate: {layer['surrogate_vs_running']['shift_sigma']:.2f} "
              f"sigma, {layer['surrogate_vs_running']['std_ratio']:.2f}); medians over channels")
    t = rec["test"]
    print(f"  {args.test_split}: surrogate {t['surrogate_acc']:.3f}  hard {t['source_hard_acc']:.3f} -> "
          f"{t['hard_acc']:.3f} re-estimated  gap {s['transfer_gap']:+.3f}")
    print(f"-> {s['out']} (summary.json, bn_recalibration.json, model.safetensors)")


def run(args) -> int:
    (_batchnorm if args.bn_recalibrate != "none" else _thresholds)(args)
    return 0


def main(argv=None) -> int:
    from .cli import module_main

    return module_main("python -m sast_deploy.calibrate", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
