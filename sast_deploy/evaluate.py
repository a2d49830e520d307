"""`sast-deploy evaluate` (= `python -m sast_deploy.evaluate`): accuracy in surrogate and hard mode,
transfer gap and per-class accuracy of a run; with flags, the robustness grid and theory diagnostics.
Writes RUN_DIR/evaluation.json and prints a summary."""
from __future__ import annotations

import argparse
import sys

from .cliargs import choice_list, float_list
from .data.corruptions import CORRUPTIONS, SEVERITIES
from .errors import SastError
from .evaluation.activity import format_activity
from .evaluation.protocol import MODES, evaluate_run
from .training.rundir import EVALUATION_FILE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="finished run directory (written by `sast-deploy train`)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to evaluate")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: the one the run was trained on)")
    p.add_argument("--out", default=None, help=f"JSON to write (default: RUN/{EVALUATION_FILE})")
    p.add_argument("--robustness", action="store_true", help="also run the corruption grid in both modes")
    p.add_argument("--corruptions", type=choice_list(CORRUPTIONS), default=list(CORRUPTIONS),
                   help="corruptions of the robustness grid (comma-separated)")
    p.add_argument("--severities", type=float_list, default=list(SEVERITIES), help="severities p of the grid")
    p.add_argument("--corruption-seed", type=int, default=0,
                   help="seed of the corruptions (keep it equal across methods so they see the same inputs)")
    p.add_argument("--diagnostics", action="store_true", help="also compute the theory diagnostics")
    p.add_argument("--diag-samples", type=int, default=64, help="held-out examples for the diagnostics")
    p.add_argument("--sam-radii", type=float_list, default=[0.05, 0.1, 0.2], help="radii r of the SAM gap")
    p.add_argument("--secant-radii", type=float_list, default=[1e-3, 1e-2, 1e-1], help="radii of the secant estimate")
    p.add_argument("--secant-directions", type=int, default=8, help="random directions m of the secant estimate")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size")


def format_result(r: dict) -> str:
    """The one-screen summary of an evaluation result."""
    lines = [f"{r['run']} ({r['split']}, {r['samples']} recordings): surrogate {r['surrogate_acc']:.3f}  "
             f"hard {r['hard_acc']:.3f}  gap {r['transfer_gap']:+.3f}"]
    if r.get("calibration"):
        c = r["calibration"]
        lines.append(f"  calibrated copy ({c['method']}, lambdas {c['lambdas']}): surrogate = source thresholds, "
                     "hard = calibrated thresholds")
    if r.get("bn_recalibration"):
        b = r["bn_recalibration"]
        lines.append(f"  BN re-estimated copy ({b['mode']} mode, {b['samples']} {b['split']} recordings): surrogate = "
                     "training-time BatchNorm statistics, hard = re-estimated statistics")
    lines.append(f"  hard-mode activity per inference: {format_activity(r)}")
    pc = r["per_class"]
    lines.append("  per class  " + "".join(f"{str(c)[:6]:>7}" for c in pc["classes"]))
    for m in MODES:
        lines.append(f"  {m:<10} " + "".join(f"{v:>7.2f}" for v in pc[m]))
    if "robustness" in r:
        rob = r["robustness"]
        lines.append(f"  robustness: accuracy at p = {', '.join(f'{p:g}' for p in rob['severities'])}; mean; AUC")
        for kind, curve in rob["curves"].items():
            for m in MODES:
                c = curve[m]
                lines.append(f"    {kind:<12}{m:<10}" + "".join(f"{a:>6.2f}" for a in c["acc"])
                             + f"   mean {c['mean']:.3f}  auc {c['auc']:.4f}")
    if "diagnostics" in r:
        d = r["diagnostics"]
        k = d["constants"]
        lines.append(f"  diagnostics ({d['samples']} held-out examples, surrogate mode): B1 {k['B1']:.3f}  "
                     f"M_theta {k['M_theta_hat']:.3f}  gamma {k['gamma_hat']:.3f}  loss {d['loss']:.4f}")
        lines.append("    SAM gap L(w+eps)-L(w): " + "  ".join(f"r={rr} {v:+.2e}" for rr, v in d["sam_gap"].items()))
        for key, name in (("grad_w_norm", "||grad_w l_i||"), ("grad_x_norm", "||grad_x l_i||"),
                          ("sigma_min_JJt", "sigma_min(J J^T)")):
            s = d[key]
            lines.append(f"    {name:<18} {s['mean']:.3e} ± {s['std']:.3e}   median {s['median']:.3e} "
                         f"[{s['q25']:.3e}, {s['q75']:.3e}]")
        sec, bound = d["secant"], d["beta_bound"]
        lines.append("    secant beta_hat: " + "  ".join(f"r={rr:g} {v:.3e}" for rr, v in
                                                         zip(sec["radii"], sec["beta_hat_per_radius"])))
        b = bound["beta"]
        value = f"{b:.3e}" if b is not None else f"n/a ({bound['reason']})"
        lines.append(f"    bound beta (r={bound['radius']:g}): {value}")
    return "\n".join(lines)


def check(args) -> None:
    """SastError naming the flag for values outside their range."""
    if not args.severities or not all(0.0 <= v <= 1.0 for v in args.severities):
        raise SastError(f"--severities {args.severities}: give severities in [0, 1]")
    for flag, values in (("--sam-radii", args.sam_radii), ("--secant-radii", args.secant_radii)):
        if not values or not all(v > 0 for v in values):
            raise SastError(f"{flag} {values}: give positive radii")
    for flag, value in (("--diag-samples", args.diag_samples), ("--secant-directions", args.secant_directions),
                        ("--batch-size", args.batch_size)):
        if value < 1:
            raise SastError(f"{flag} must be >= 1, got {value}")


def run(args) -> int:
    check(args)
    r = evaluate_run(args.run, args.split, args.data_dir, args.robustness, args.diagnostics, args.corruptions,
                     args.severities, args.corruption_seed, args.diag_samples, args.sam_radii, args.secant_radii,
                     args.secant_directions, args.out, args.batch_size)
    print(format_result(r))
    print(f"-> {args.out or f'{args.run}/{EVALUATION_FILE}'}")
    return 0


def main(argv=None) -> int:
    from .cli import module_main

    return module_main("python -m sast_deploy.evaluate", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
