"""The runs under a folder (a sweep or any tree of run directories), labelled by method.

A run directory is any folder holding summary.json and model.safetensors. Its method is read from
its own config (the `sast-deploy train` settings rho, compute_matched, reuse_batch, asam, forward),
post-hoc copies from their record file (calibration.json, bn_recalibration.json), so a report never
depends on folder names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SastError
from ..jsonio import read_json
from ..training.bn_recalibration import BN_RECALIBRATION_FILE
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
# settings that make a run's method or place, not its network, data or training
METHOD_SETTINGS = ("rho", "seed", "out", "compute_matched", "reuse_batch", "asam", "asam_eta", "forward", "delta",
                   "bn_recalibrate", "checkpoint_every", "device")
CALIBRATED = "+calibration"  # suffix of the method key of a calibrated copy
BN_REESTIMATED = "+bn-reestimation"  # ... of a copy with BatchNorm statistics re-estimated in hard mode
POSTHOC = {CALIBRATED: " + calibration", BN_REESTIMATED: " + BN re-estimation"}  # suffix -> label suffix


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
    bn_recalibration: dict | None = None
    settings: dict = field(default_factory=dict)  # the `sast-deploy train` settings of the (source) run

    @property
    def label(self) -> str:
        return group_label(self.method, self.rho)

    @property
    def group(self) -> tuple[str, float]:
        return self.method, self.rho


def split_method(method: str) -> tuple[str, str]:
    """(training method, post-hoc suffix or '')."""
    for suffix in POSTHOC:
        if method.endswith(suffix):
            return method.removesuffix(suffix), suffix
    return method, ""


def is_posthoc(method: str) -> bool:
    return bool(split_method(method)[1])


def group_label(method: str, rho: float) -> str:
    """'SAST rho=0.1', 'baseline + calibration', 'SAST rho=0.3 + BN re-estimation', ..."""
    base, suffix = split_method(method)
    return METHOD_LABELS.get(base, base) + (f" rho={rho:g}" if rho > 0 else "") + POSTHOC.get(suffix, "")


def group_order(group: tuple[str, float]) -> tuple:
    """Table order: training methods as in METHOD_LABELS, then their calibrated copies, then their BN
    re-estimated copies; rho ascending."""
    method, rho = group
    (base, suffix), keys = split_method(method), list(METHOD_LABELS)
    return (["", *POSTHOC].index(suffix), keys.index(base) if base in keys else len(keys), base, rho)


def by_group(items: list, key=lambda r: r.group) -> dict[tuple, list]:
    """`items` (runs, or table rows with `key`) grouped by (method, rho), groups in table order."""
    out: dict[tuple, list] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return {g: out[g] for g in sorted(out, key=group_order)}


def method_of(settings: dict, rho: float, posthoc: str = "") -> str:
    """The method key of a run from its training settings (and the suffix of a post-hoc copy)."""
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
    return method + posthoc


def varying_settings(records: list[RunRecord]) -> list[str]:
    """The training settings (other than METHOD_SETTINGS) that differ between the runs."""
    keys = sorted({k for r in records for k in r.settings} - set(METHOD_SETTINGS))
    return [k for k in keys if len({repr(r.settings.get(k)) for r in records}) > 1]


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
    bn = _json(run_dir / BN_RECALIBRATION_FILE)
    rho = float(summary.get("rho", settings.get("rho", 0.0)) or 0.0)
    seed = int(summary.get("seed", settings.get("seed", 0)) or 0)
    posthoc = CALIBRATED if calibration is not None else BN_REESTIMATED if bn is not None else ""
    return RunRecord(run_dir, method_of(settings, rho, posthoc), rho, seed, summary,
                     current_evaluation(run_dir), calibration, bn, settings)


def find_runs(folder) -> list[RunRecord]:
    """Every finished run under `folder` (itself included), sorted by method, rho, seed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SastError(f"{folder}: no such folder; pass a sweep folder or a folder of run directories")
    dirs = [Path(d) for d, _, files in os.walk(folder) if SUMMARY_FILE in files and MODEL_FILE in files]
    records = [load_record(d) for d in sorted(dirs)]
    return sorted(records, key=lambda r: (group_order(r.group), r.seed, str(r.dir)))
