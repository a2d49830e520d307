"""`sast-deploy calibrate` (= `python -m sast_deploy.calibrate`): the threshold-calibration baseline.
Weights frozen; thresholds scaled by lambdas chosen on the validation split by hard accuracy, applied
once to test; writes a calibrated run directory that `evaluate` and `export` read like any run."""
from __future__ import annotations

import argparse
import sys

from .training.calibration import METHODS, calibrate_run


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="finished run directory to calibrate")
    p.add_argument("--out", default=None, help="calibrated run directory to write (default: RUN/calibrated)")
    p.add_argument("--method", default="per-layer", choices=list(METHODS),
                   help="lambdas the calibrated copy uses: one global lambda, or per-layer lambdas "
                        "(coordinate search from the global one); both are reported")
    p.add_argument("--val-split", default="val", help="split the lambdas are chosen on")
    p.add_argument("--test-split", default="test", help="split the chosen lambdas are reported on")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: the one the run was trained on)")


def run(args) -> int:
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
    return 0


def main(argv=None) -> int:
    from .cli import run_command

    p = argparse.ArgumentParser(prog="python -m sast_deploy.calibrate", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    return run_command(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
