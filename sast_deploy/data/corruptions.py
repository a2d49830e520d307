"""Seeded input corruptions for the robustness grid (DESIGN §5), written here because tonic's
DropEvent / TimeJitter draw from numpy's global RNG and TimeJitter truncates times (DESIGN §8).

Families and severities p in [0, 1]:
    family 1  voxel-drop   every input voxel (time bin, polarity, y, x) is zeroed with probability p;
                           no rescaling of the survivors.
    family 2  time-jitter  every event time t -> t + p * w * z, z ~ N(0, 1), w = (t1 - t0 + 1) / T the
                           bin width; reflected back into the recording's window [t0, t1], rounded to
                           the nearest microsecond and binned in that same fixed window.
              bin-drop     exactly round(p * T) whole time bins are zeroed (round half up).

The random numbers of sample i come from SeedSequence([seed, stream(kind), i]) and never depend on
p: every method sees identical corrupted inputs, dropped voxel and bin sets nest as p grows (one
uniform draw per voxel, one permutation of the bins), and jitter scales one fixed noise draw.
p = 0 is the identity.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError
from .datasets import Recordings
from .frames import FrameSet
from .framing import count_frames, event_window

CORRUPTIONS = ("voxel-drop", "time-jitter", "bin-drop")
FAMILY = {"voxel-drop": 1, "time-jitter": 2, "bin-drop": 2}
SEVERITIES = (0.0, 0.1, 0.2, 0.3, 0.4)
_STREAM = {"voxel-drop": 1, "time-jitter": 2, "bin-drop": 3}  # fixed ids: never reorder


def corruption_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """The generator of sample `index` for corruption `kind` (independent of the severity)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM[kind], int(index)]))


def _check_severity(p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"severity must lie in [0, 1], got {p}")
    return p


def drop_voxels(counts: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Counts [T, C, H, W] with each voxel zeroed where its uniform draw u < p."""
    p = _check_severity(p)
    return np.where(rng.random(counts.shape) < p, 0, counts).astype(counts.dtype)


def dropped_bins(T: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """The round(p * T) (half up) time bins to zero: a prefix of one random permutation of 0..T-1."""
    n = int(np.floor(_check_severity(p) * T + 0.5 + 1e-9))  # 1e-9 absorbs float error: 0.29 * 50 = 14.499999999999998
    return np.sort(rng.permutation(T)[:n])


def drop_bins(counts: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Counts [T, C, H, W] with round(p * T) whole time bins zeroed."""
    out = counts.copy()
    out[dropped_bins(counts.shape[0], p, rng)] = 0
    return out


def reflect(t: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Fold values into [t0, t1] by reflection at both ends (as often as needed)."""
    span = float(t1 - t0)
    if span == 0:
        return np.full_like(t, t0, dtype=np.float64)
    r = np.mod(t - t0, 2.0 * span)
    return t0 + np.where(r > span, 2.0 * span - r, r)


def jitter_times(events: np.ndarray, p: float, T: int, window: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A copy of `events` with t -> round(reflect(t + p * w * z)), w = (t1 - t0 + 1) / T, sorted by time."""
    p = _check_severity(p)
    t0, t1 = window
    z = rng.standard_normal(len(events))
    t = events["t"].astype(np.float64) + p * (t1 - t0 + 1) / T * z
    out = events.copy()
    out["t"] = np.rint(reflect(t, t0, t1)).astype(events.dtype["t"])
    return out[np.argsort(out["t"], kind="stable")]


def corrupt_frames(frames: FrameSet, kind: str, p: float, seed: int = 0,
                   recs: Recordings | None = None, progress: bool = False) -> FrameSet:
    """`frames` with every sample corrupted by `kind` at severity p (a new FrameSet, same order).

    time-jitter re-bins raw events and needs `recs`, the recordings `frames` were binned from.
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; choose from {', '.join(CORRUPTIONS)}")
    _check_severity(p)
    if p == 0.0:
        return frames
    if kind == "time-jitter" and (recs is None or list(recs.paths) != list(frames.paths)):
        raise DataError(f"time-jitter re-bins raw events: pass the recordings of {frames.dataset}/{frames.split} "
                        "that the frames were binned from")
    counts = np.empty(frames.counts.shape, dtype=frames.counts.dtype)
    for i in tqdm(range(len(frames)), desc=f"{kind} p={p:g}", disable=not progress, leave=False, unit="rec"):
        rng = corruption_rng(seed, kind, i)
        if kind == "voxel-drop":
            counts[i] = drop_voxels(frames.counts[i], p, rng)
        elif kind == "bin-drop":
            counts[i] = drop_bins(frames.counts[i], p, rng)
        else:
            events = recs.read(i)
            window = event_window(events)
            counts[i] = count_frames(jitter_times(events, p, frames.T, window, rng), recs.info.sensor_size,
                                     frames.T, window=window, downsample=frames.downsample)
    return dataclasses.replace(frames, counts=counts)
