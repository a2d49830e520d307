"""`sast-deploy report SWEEP_DIR` (= `python -m sast_deploy.report`): the Table II and IV analogues,
calibration, BatchNorm re-estimation, robustness and diagnostics of every finished run under a
folder, as markdown and CSV, with plots (accuracy and gap vs rho, accuracy vs severity, per-seed
gaps). `--by bn,pool,k`: instead, a study over network settings, one row per setting (study.md)."""
from __future__ import annotations

import argparse
import sys

from .evaluation.report import write_report
from .evaluation.study import write_study


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="a sweep folder, or any folder holding run directories")
    p.add_argument("--out", default=None, help="report folder (default: FOLDER/report)")
    p.add_argument("--by", default="", help="training settings that tell the runs' networks apart, comma-separated "
                                            "(e.g. bn,pool,k): write the study overview, one row per setting")


def run(args) -> int:
    by = [k.strip() for k in args.by.split(",") if k.strip()]
    paths = write_study(args.folder, args.out, by) if by else write_report(args.folder, args.out)
    text = paths["markdown"].read_text()
    start = text.find("## Transfer gap" if by else "## Accuracy and transfer gap")
    print(text[start:text.find("\n#", start + 1)].strip() if start >= 0 else text)
    print()
    for name, path in paths.items():
        print(f"{name:<22} {path}")
    return 0


def main(argv=None) -> int:
    from .cli import module_main

    return module_main("python -m sast_deploy.report", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
