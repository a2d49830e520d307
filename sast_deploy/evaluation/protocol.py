"""The paper's evaluation protocol for one run (DESIGN §5): accuracy per mode and the transfer gap
(Definition II.6), per-class accuracy, the robustness grid and the theory diagnostics, written to
RUN_DIR/evaluation.json.

Definition II.6: hard mode changes only sigma -> H (same weights, thresholds, leak, reset, binning).
Post-hoc copies are the exception, and labelled so: their surrogate row is the trained network they
came from (thresholds theta_l / lambda_l; training-time BatchNorm statistics), their hard row the
calibrated thresholds or the re-estimated BatchNorm statistics.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.corruptions import CORRUPTIONS, SEVERITIES
from ..errors import SastError
from ..jsonio import write_json
from ..training.calibration import source_model
from ..training.copies import posthoc_kind
from ..training.rundir import EVALUATION_FILE, load_run, read_metrics
from .accuracy import per_class_accuracy, predict
from .activity import headline
from .diagnostics import diagnose
from .model_activity import model_activity
from .robustness import robustness_grid

MODES = ("surrogate", "hard")


def evaluate_run(run_dir, split: str = "test", data_dir=None, robustness: bool = False, diagnostics: bool = False,
                 corruptions=CORRUPTIONS, severities=SEVERITIES, corruption_seed: int = 0,
                 diag_samples: int = 64, sam_radii=(0.05, 0.1, 0.2), secant_radii=(1e-3, 1e-2, 1e-1),
                 directions: int = 8, out=None, batch_size: int = 256, progress: bool = True) -> dict:
    """Evaluate a finished run on `split` and write the result (default RUN_DIR/evaluation.json)."""
    run = load_run(run_dir)
    kind = posthoc_kind(run.meta)
    if diagnostics and kind:
        raise SastError(f"--diagnostics: {run_dir} is a post-hoc copy ({kind}); the diagnostics describe the trained "
                        f"network, so run them on its source run {run.meta[kind].get('source_run')}")
    models = {"surrogate": source_model(run.model, run.meta), "hard": run.model}
    frames = run.frames(split, data_dir, progress)
    preds = {m: predict(models[m], frames, m, batch_size) for m in MODES}
    acc = {m: float((preds[m] == frames.labels).mean()) for m in MODES}
    classes = list(run.model.spec.class_names or frames.classes)
    result = {
        "run": os.fspath(run.dir), "split": split, "samples": len(frames), "dataset": run.data["dataset"],
        "surrogate_acc": acc["surrogate"], "hard_acc": acc["hard"],
        "transfer_gap": acc["surrogate"] - acc["hard"], "calibration": run.meta.get("calibration"),
        "bn_recalibration": {k: v for k, v in (run.meta.get("bn_recalibration") or {}).items()
                             if k != "source_statistics"} or None,
        "per_class": {"classes": classes,
                      "support": np.bincount(frames.labels, minlength=len(classes)).tolist(),
                      **{m: per_class_accuracy(preds[m], frames.labels, len(classes)) for m in MODES}},
        **headline(model_activity(models["hard"], frames, batch_size)),  # hard mode (docs/activity.md)
    }
    if robustness:
        recs = run.recordings(split, data_dir) if "time-jitter" in corruptions else None
        result["robustness"] = robustness_grid(models, frames, recs, corruptions, severities, corruption_seed,
                                               batch_size, progress=progress)
    if diagnostics:
        result["diagnostics"] = diagnose(run.model, frames, diag_samples, sam_radii, secant_radii, directions,
                                         checkpoints=read_metrics(run.dir), progress=progress)
    write_json(Path(out) if out is not None else run.dir / EVALUATION_FILE, result)
    return result
