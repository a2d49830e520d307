"""The robustness grid (DESIGN §5): accuracy under seeded corruptions at each severity, per mode.

Per curve (corruption, mode) over severities p_0 < ... < p_n:
    mean = 1/(n+1) sum_i acc(p_i)
    auc  = sum_i (p_{i+1} - p_i) (acc(p_i) + acc(p_{i+1})) / 2      (trapezoid; max = p_n - p_0)
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..data.corruptions import CORRUPTIONS, FAMILY, SEVERITIES, corrupt_frames
from ..data.datasets import Recordings
from ..data.frames import FrameSet
from ..model.network import SNN
from .accuracy import predict


def curve_summary(severities, acc) -> dict:
    """Mean over severities and trapezoid area under the accuracy-severity curve."""
    return {"acc": [float(a) for a in acc], "mean": float(np.mean(acc)),
            "auc": float(np.trapz(np.asarray(acc, dtype=np.float64), np.asarray(severities, dtype=np.float64)))}


def robustness_grid(models: dict[str, SNN], frames: FrameSet, recs: Recordings | None = None,
                    corruptions=CORRUPTIONS, severities=SEVERITIES, seed: int = 0,
                    batch_size: int = 256, device="cpu", progress: bool = True) -> dict:
    """Accuracy of each `models[mode]` (evaluated in that mode) on `frames` corrupted by every
    corruption at every severity. The corrupted inputs are built once per (corruption, p) and shared
    by all modes. `recs` (the recordings of `frames`) is needed for time-jitter."""
    severities = sorted(float(p) for p in severities)
    curves = {}
    steps = tqdm(total=len(corruptions) * len(severities), desc="robustness", disable=not progress, leave=False)
    for kind in corruptions:
        acc = {mode: [] for mode in models}
        for p in severities:
            corrupted = corrupt_frames(frames, kind, p, seed, recs)
            for mode, model in models.items():
                preds = predict(model, corrupted, mode, batch_size, device)
                acc[mode].append(float((preds == corrupted.labels).mean()))
            steps.update()
        curves[kind] = {"family": FAMILY[kind], **{mode: curve_summary(severities, a) for mode, a in acc.items()}}
    steps.close()
    return {"seed": int(seed), "severities": severities, "samples": len(frames), "curves": curves}
