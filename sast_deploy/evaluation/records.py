"""The runs under a folder (a sweep or any tree of run directories), labelled by method.

A run directory is any folder holding summary.json and model.safetensors. Its method is read from
its own config (the `sast-deploy train` settings rho, compute_matched, reuse_batch, asam, forward),
so a report never depends on folder names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import SastError
from ..jsonio import read_json
from ..training.calibration import CALIBRATION_FILE
from ..training.rundir import CONFIG_FILE, EVALUATION_FILE, MODEL_FILE, SUMMARY_FILE, train_settings

# method key -> row label, in table order
METHOD_LABELS = {
    "baseline": "baseline",
    "sast": "SAST",
    "compute-matched": "baseline (compute-matched)",
    "reuse-batch": "SAST (B'=B)",
    "asam": "ASAM-SAST",
    "ste": "STE baseline",
}
CALIBRATED = "+calibration"  # suffix of the method key of a calibrated copy


@dataclass
class RunRecord:
    """One finished run: where it is, what it is, and what was measured."""

    dir: Path
    method: str
    rho: float
    seed: int
    summary: dict
    evaluation: dict | None
    calibration: dict | None

    @property
    def label(self) -> str:
        return group_label(self.method, self.rho)

    @property
    def group(self) -> tuple[str, float]:
        return self.method, self.rho


def group_label(method: str, rho: float) -> str:
    """'SAST rho=0.1', 'baseline + calibration', ..."""
    base = method.removesuffix(CALIBRATED)
    label = METHOD_LABELS.get(base, base) + (f" rho={rho:g}" if rho > 0 else "")
    return label + " + calibration" if method.endswith(CALIBRATED) else label


def group_order(group: tuple[str, float]) -> tuple:
    """Table order: training methods as in METHOD_LABELS, then their calibrated copies; rho ascending."""
    method, rho = group
    base, keys = method.removesuffix(CALIBRATED), list(METHOD_LABELS)
    return (method.endswith(CALIBRATED), keys.index(base) if base in keys else len(keys), base, rho)


def method_of(settings: dict, rho: float, calibrated: bool) -> str:
    """The method key of a run from its training settings."""
    if settings.get("forward") == "ste":
        method = "ste"
    elif settings.get("compute_matched"):
        method = "compute-matched"
    elif rho > 0 and settings.get("asam"):
        method = "asam"
    elif rho > 0 and settings.get("reuse_batch"):
        method = "reuse-batch"
    else:
        method = "sast" if rho > 0 else "baseline"
    return method + CALIBRATED if calibrated else method


def _json(path: Path):
    try:
        return read_json(path) if path.is_file() else None
    except (OSError, ValueError) as e:
        raise SastError(f"{path}: cannot read it ({e}); rerun the command that wrote it") from None


def current_evaluation(run_dir: Path) -> dict | None:
    """evaluation.json, unless it is missing or older than summary.json (then it describes an older model)."""
    ev = run_dir / EVALUATION_FILE
    if not ev.is_file() or ev.stat().st_mtime_ns < (run_dir / SUMMARY_FILE).stat().st_mtime_ns:
        return None
    return _json(ev)


def load_record(run_dir: Path) -> RunRecord:
    summary = _json(run_dir / SUMMARY_FILE)
    config = _json(run_dir / CONFIG_FILE) or {}
    settings = train_settings(config)
    calibration = _json(run_dir / CALIBRATION_FILE)
    rho = float(summary.get("rho", settings.get("rho", 0.0)) or 0.0)
    seed = int(summary.get("seed", settings.get("seed", 0)) or 0)
    return RunRecord(run_dir, method_of(settings, rho, calibration is not None), rho, seed, summary,
                     current_evaluation(run_dir), calibration)


def find_runs(folder) -> list[RunRecord]:
    """Every finished run under `folder` (itself included), sorted by method, rho, seed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SastError(f"{folder}: no such folder; pass a sweep folder or a folder of run directories")
    dirs = [Path(d) for d, _, files in os.walk(folder) if SUMMARY_FILE in files and MODEL_FILE in files]
    records = [load_record(d) for d in sorted(dirs)]
    return sorted(records, key=lambda r: (group_order(r.group), r.seed, str(r.dir)))
