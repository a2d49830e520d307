"""Threshold calibration, the post-hoc baseline to SAST (DESIGN §4): weights frozen, thresholds scaled
theta_l <- lambda_l theta_l, lambdas chosen by hard-spike accuracy on the validation split only,
then applied once to test.

    global     one lambda for all layers from GRID = {0.5, 0.6, ..., 1.5}
    per-layer  coordinate search from the global choice: for each layer in turn, try every lambda of
               GRID with the other layers fixed; move only on a strict improvement; repeat up to
               `rounds` times or until no layer moves
Ties go to the lambda closest to 1 (the smallest change), then to the smaller one.
"""
from __future__ import annotations

import copy
import os
import time

import torch

from ..data.frames import FrameSet
from ..errors import SastError
from ..evaluation.accuracy import accuracy
from ..model.network import SNN
from .bn_recalibration import with_statistics
from .copies import copy_dir, write_copy
from .rundir import load_run

GRID = tuple(round(0.5 + 0.1 * i, 1) for i in range(11))
METHODS = ("global", "per-layer")
CALIBRATION_FILE = "calibration.json"


def scale_thresholds(model: SNN, lambdas) -> SNN:
    """A copy of `model` with theta_l multiplied by lambdas[l]."""
    lambdas = [float(v) for v in lambdas]
    if len(lambdas) != len(model.lifs) or min(lambdas) <= 0:
        raise ValueError(f"need one positive lambda per LIF layer ({len(model.lifs)}), got {lambdas}")
    out = copy.deepcopy(model)
    with torch.no_grad():
        for lif, lam in zip(out.lifs, lambdas):
            lif.theta.mul_(lam)
    return out


def _better(acc: float, lam: float, best_acc: float, best_lam: float) -> bool:
    return acc > best_acc or (acc == best_acc and (abs(lam - 1), lam) < (abs(best_lam - 1), best_lam))


def calibrate(model: SNN, val: FrameSet, grid=GRID, rounds: int = 2, device="cpu") -> dict:
    """Choose lambdas on `val` (the only data this function sees) by hard accuracy; see the module doc."""
    n_layers = len(model.lifs)
    acc_of = {}

    def acc(lambdas) -> float:
        key = tuple(lambdas)
        if key not in acc_of:
            acc_of[key] = accuracy(scale_thresholds(model, key), val, "hard", device=device)
        return acc_of[key]

    curve = {f"{lam:g}": acc([lam] * n_layers) for lam in grid}
    best = min(grid, key=lambda lam: (abs(lam - 1), lam))
    for lam in grid:
        if _better(acc([lam] * n_layers), lam, acc([best] * n_layers), best):
            best = lam
    lambdas = [best] * n_layers
    for _ in range(rounds):
        moved = False
        for layer in range(n_layers):
            for lam in grid:
                trial = lambdas[:layer] + [lam] + lambdas[layer + 1:]
                if acc(trial) > acc(lambdas):
                    lambdas, moved = trial, True
        if not moved:
            break
    return {"grid": list(grid), "split": val.split, "uncalibrated_val_hard_acc": acc([1.0] * n_layers),
            "global": {"lambdas": [best] * n_layers, "val_hard_acc": acc([best] * n_layers), "val_curve": curve},
            "per-layer": {"lambdas": lambdas, "val_hard_acc": acc(lambdas)},
            "evaluations": len(acc_of)}


def source_model(model: SNN, meta: dict) -> SNN:
    """The trained network behind a post-hoc copy (copies.py): thresholds theta_l / lambda_l for a
    calibrated copy, the training-time BatchNorm statistics for a re-estimated one; `model` itself for
    a trained run. Its surrogate mode is the trained network being deployed."""
    if meta.get("calibration"):
        return scale_thresholds(model, [1.0 / v for v in meta["calibration"]["lambdas"]])
    if meta.get("bn_recalibration"):
        return with_statistics(model, meta["bn_recalibration"]["source_statistics"])
    return model


def calibrate_run(run_dir, out_dir=None, method: str = "per-layer", val_split: str = "val",
                  test_split: str = "test", grid=GRID, data_dir=None, progress: bool = True) -> dict:
    """Calibrate a finished run on `val_split`, evaluate once on `test_split`, and write a calibrated
    run directory (default RUN_DIR/calibrated): model.safetensors with scaled thresholds, config.json,
    calibration.json and, last, summary.json. Returns the summary."""
    if method not in METHODS:
        raise SastError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if val_split == test_split:
        raise SastError(f"--val-split and --test-split are both {val_split!r}: calibration must not choose "
                        "thresholds on the split it reports")
    run = load_run(run_dir)
    out = copy_dir(run, out_dir, "calibrated", CALIBRATION_FILE, "calibrated")
    t0 = time.perf_counter()
    val = run.frames(val_split, data_dir, progress)
    choice = calibrate(run.model, val, grid)
    test = run.frames(test_split, data_dir, progress)
    sur = accuracy(run.model, test, "surrogate")
    results = {m: accuracy(scale_thresholds(run.model, choice[m]["lambdas"]), test, "hard") for m in METHODS}
    calibrated = scale_thresholds(run.model, choice[method]["lambdas"])
    cal_meta = {"method": method, "lambdas": choice[method]["lambdas"], "selected_on": val_split,
                "source_run": os.fspath(run.dir)}
    record = {**choice, "method": method, "test_split": test_split, "source_run": os.fspath(run.dir),
              "test": {"surrogate_acc": sur, "uncalibrated_hard_acc": accuracy(run.model, test, "hard"),
                       **{f"{m}_hard_acc": results[m] for m in METHODS},
                       "calibrated_surrogate_acc": accuracy(calibrated, test, "surrogate")},
              "time_s": time.perf_counter() - t0}
    # the gap a calibrated deployment leaves: the trained surrogate network vs calibrated hard spikes
    summary = write_copy(run, out, calibrated, "calibration", cal_meta, CALIBRATION_FILE, record, {
        "surrogate_acc": sur, "hard_acc": results[method], "transfer_gap": sur - results[method],
        "split": test_split, "samples": len(test), "calibrated": True, "calibration_method": method,
        "lambdas": choice[method]["lambdas"]})
    return {**summary, "record": record, "out": os.fspath(out)}
