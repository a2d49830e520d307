"""`sast-deploy sweep` (= `python -m sast_deploy.sweep`): a rho grid x seed list plus the controls,
trained, evaluated and calibrated by parallel worker processes of the `sast-deploy train`,
`evaluate` and `calibrate` command lines. Resumable: rerun the same command to finish an
interrupted sweep. Then `sast-deploy report SWEEP_DIR`."""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path

from .cliargs import choice_list, float_list, int_list
from .data.datasets import DATASETS
from .errors import SastError
from .jsonio import read_json
from .training.sweep import CONTROLS, COPIES, DEFAULT_CONTROLS, EVAL_EXTRAS, SWEEP_FILE, SweepRun, plan_runs, run_sweep

OWN_FLAGS = ("--rho", "--seed", "--out", "--resume")  # set by the sweep for every run


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="nmnist-small", choices=list(DATASETS), help="dataset of every run")
    p.add_argument("--data-dir", default=None, help="dataset folder (not needed for nmnist-small)")
    p.add_argument("--rho", type=float_list, default=[0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5],
                   help="SAM radii (0 = baseline); SAST runs at every positive one")
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2], help="seeds, the same for every method")
    p.add_argument("--controls", type=choice_list(CONTROLS), default=list(DEFAULT_CONTROLS),
                   help="controls to add (comma-separated, or none); bn-reestimation (BatchNorm networks only) "
                        "is not among the defaults")
    p.add_argument("--control-rho", type=float_list, default=None,
                   help="radii of the reuse-batch and asam controls (default: every positive --rho)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the trainer's)")
    p.add_argument("--train-args", default="",
                   help="more `sast-deploy train` flags for every run, given with '=': --train-args='--T 20'")
    p.add_argument("--eval-args", default="",
                   help="more `sast-deploy evaluate` flags, e.g. '--diag-samples 32' (the SAM gap is measured "
                        "at the positive --rho values unless --sam-radii is given here)")
    p.add_argument("--eval-extras", type=choice_list(EVAL_EXTRAS), default=list(EVAL_EXTRAS),
                   help="what `sast-deploy evaluate` adds for every run (comma-separated); none: no evaluate "
                        "step (the run summaries already hold the accuracies and the gap)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel (worker processes)")
    p.add_argument("--out", default="runs/sweep", help="sweep folder (runs/, logs/, sweep.json)")


class _StrictParser(argparse.ArgumentParser):
    def error(self, message):
        raise SastError(message)


def command_parser(module: str) -> argparse.ArgumentParser:
    """The real parser of a subcommand, raising SastError instead of exiting."""
    p = _StrictParser(prog=module, add_help=False)
    importlib.import_module(module).add_arguments(p)
    return p


def check_commands(runs: list[SweepRun], train_args, eval_args, extras=EVAL_EXTRAS) -> None:
    """Parse every worker command with the real parsers before anything runs (SastError on the first
    that would fail), so a sweep never dies hours in on a flag this trainer lacks."""
    train = command_parser("sast_deploy.train")
    for run in runs:
        try:
            train.parse_args([*train_args, *run.train_flags, "--seed", str(run.seed), "--out", "x"])
        except SastError as e:
            hint = (f"this trainer lacks the {run.method} control: leave it out of --controls"
                    if run.method not in ("baseline", "sast") else "check --train-args")
            raise SastError(f"sweep run {run.name}: `sast-deploy train` rejects its arguments ({e}); {hint}") from None
    try:
        command_parser("sast_deploy.evaluate").parse_args(["--run", "x", *[f"--{e}" for e in extras], *eval_args])
    except SastError as e:
        raise SastError(f"--eval-args: `sast-deploy evaluate` rejects them ({e})") from None


def worker_args(args) -> tuple[list[str], list[str]]:
    """The train and evaluate arguments every run shares."""
    user_train, user_eval = shlex.split(args.train_args), shlex.split(args.eval_args)
    own = [f for f in user_train if f.split("=")[0] in OWN_FLAGS + ("--dataset", "--data-dir", "--epochs")]
    if own:
        raise SastError(f"--train-args: {', '.join(own)} are set by the sweep; use the sweep's own flags")
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    train = ["--dataset", args.dataset, *data, *(["--epochs", str(args.epochs)] if args.epochs else []), *user_train]
    positive = [r for r in args.rho if r > 0]
    radii = ["--sam-radii", ",".join(f"{r:g}" for r in positive)] if positive and "--sam-radii" not in user_eval else []
    return train, [*data, *radii, *user_eval]


def run(args) -> int:
    if args.jobs < 1:
        raise SastError(f"--jobs must be >= 1, got {args.jobs}")
    train_args, eval_args = worker_args(args)
    runs = plan_runs(args.rho, args.seeds, args.controls, args.control_rho)
    check_commands(runs, train_args, eval_args, args.eval_extras)
    print(f"sweep: {len(runs)} runs ({len(args.seeds)} seeds; rho {args.rho}; controls {args.controls or 'none'}) "
          f"with {args.jobs} worker(s) -> {args.out}")
    manifest = run_sweep(args.out, runs, train_args, eval_args, args.jobs, extras=args.eval_extras)
    out = Path(args.out)
    copies = [c for name, c in COPIES.items() if name in args.controls]
    print(f"\n{'run':<32}{'status':>8}{'surrogate':>10}{'hard':>7}{'gap':>8}"
          + "".join(f"{c.title:>17}" for c in copies))
    failed = 0
    for run_ in runs:
        entry = manifest["runs"][run_.name]
        failed += entry["status"] != "done"
        s = _summary(out / entry["dir"])
        cells = (f"{s['surrogate_acc']:>10.3f}{s['hard_acc']:>7.3f}{s['transfer_gap']:>+8.3f}" if s else f"{'-':>25}")
        for c in copies:
            copy = _summary(out / entry["dir"] / c.folder)
            cells += f"{copy['hard_acc']:>17.3f}" if copy else f"{'-':>17}"
        print(f"{run_.name:<32}{entry['status']:>8}{cells}")
    print(f"\n{len(runs) - failed}/{len(runs)} runs done; manifest {out / SWEEP_FILE}; "
          f"next: sast-deploy report {out}")
    if failed:
        print(f"{failed} run(s) failed: see {out / 'logs'}; rerun the same command to retry them", file=sys.stderr)
    return 1 if failed else 0


def _summary(run_dir: Path) -> dict | None:
    path = run_dir / "summary.json"
    return read_json(path) if path.is_file() else None


def main(argv=None) -> int:
    from .cli import module_main

    return module_main("python -m sast_deploy.sweep", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
