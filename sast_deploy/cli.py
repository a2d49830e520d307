"""`sast-deploy` command line: one subcommand per job. Each subcommand lives in its own module
with `add_arguments(parser)` and `run(args)`; this file only dispatches."""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import SastError

# subcommand -> (module, one-line help)
COMMANDS = {
    "train": ("sast_deploy.train", "train a LIF SNN (baseline or SAST) and write a run directory"),
    "evaluate": ("sast_deploy.evaluate", "accuracy, transfer gap, robustness grid and theory diagnostics of a run"),
    "calibrate": ("sast_deploy.calibrate", "post-hoc controls: threshold calibration or hard-mode BatchNorm "
                  "re-estimation, written as a copy of a run"),
    "sweep": ("sast_deploy.sweep", "rho grid x seeds plus controls, in parallel worker processes, resumable"),
    "report": ("sast_deploy.report", "tables (markdown, CSV) and plots of a sweep or a folder of runs"),
    "export": ("sast_deploy.export.command", "fold, quantize and export a trained run to a Lava artifact or ONNX"),
    "simulate": ("sast_deploy.simulate", "run an exported network with hard spikes on lava, the emulator, onnx or "
                                         "torch, next to its references"),
    "demo": ("sast_deploy.demo", "the whole pipeline on the embedded nmnist-small dataset"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sast-deploy",
        description="Sharpness-aware surrogate training for spiking networks, and hard-spike deployment.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod = importlib.import_module(module)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def run_command(run, args) -> int:
    """Call a subcommand; user errors become one line on stderr, not a traceback."""
    try:
        return run(args) or 0
    except SastError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def module_main(prog: str, description: str, add_arguments, run, argv=None) -> int:
    """`python -m sast_deploy.<command>`: the same parser and error handling as the subcommand."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    return run_command(run, p.parse_args(argv))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args._run, args)


if __name__ == "__main__":
    sys.exit(main())
