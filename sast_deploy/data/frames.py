"""Binned, cached frames of a dataset split, and time-major batches for torch.

Frames are binned once per (dataset, split, T, downsample, files) and cached on disk as uint16
counts ([N, T, C, H, W], memory-mapped), so epochs never re-bin and several processes share one
copy. Normalisation to [0, 1] happens per batch.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .datasets import Recordings, recordings
from .framing import INPUT_NORMS, count_frames, frame_shape, normalize

CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where binned frames are cached: $SAST_DEPLOY_CACHE, else ~/.cache/sast-deploy."""
    return Path(os.environ.get("SAST_DEPLOY_CACHE") or Path.home() / ".cache" / "sast-deploy")


@dataclass
class FrameSet:
    """Event counts of one split, binned and ready to batch."""

    counts: np.ndarray  # [N, T, C, H, W] uint16
    labels: np.ndarray  # [N] int64
    classes: tuple[str, ...]
    norm: str
    dataset: str
    split: str
    paths: list[str]
    downsample: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def T(self) -> int:
        return self.counts.shape[1]

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return tuple(self.counts.shape[2:])

    def frames(self, idx) -> np.ndarray:
        """Normalised frames of samples `idx`, time-major: float32 [T, len(idx), C, H, W]."""
        idx = np.asarray(idx)
        return np.ascontiguousarray(np.moveaxis(normalize(self.counts[idx], self.norm), 0, 1))

    def subset(self, idx) -> "FrameSet":
        idx = np.asarray(idx)
        return FrameSet(self.counts[idx], self.labels[idx], self.classes, self.norm, self.dataset,
                        self.split, [self.paths[i] for i in idx], self.downsample)


def _fingerprint(recs: Recordings, T: int, downsample: int) -> str:
    files = []
    for p in recs.paths:
        st = os.stat(p)
        files.append((os.path.basename(p), st.st_size, int(st.st_mtime)))
    key = json.dumps([CACHE_VERSION, recs.info.name, recs.split, T, downsample, files])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def bin_recordings(recs: Recordings, T: int, downsample: int, progress: bool = True) -> np.ndarray:
    """Bin every recording of `recs` into uint16 counts [N, T, C, H, W] (no caching)."""
    shape = (len(recs), T) + frame_shape(recs.info.sensor_size, downsample)
    out = np.zeros(shape, dtype=np.uint16)
    for i in tqdm(range(len(recs)), desc=f"binning {recs.info.name}/{recs.split}", disable=not progress,
                  unit="rec", leave=False):
        out[i] = count_frames(recs.read(i), recs.info.sensor_size, T, downsample=downsample)
    return out


def load_frames(
    dataset: str,
    split: str,
    T: int,
    data_dir: str | os.PathLike | None = None,
    norm: str = "binary",
    downsample: int | None = None,
    cache: bool = True,
    progress: bool = True,
) -> FrameSet:
    """Frames of one split of `dataset`, binned into T steps (cached on disk when `cache`)."""
    if norm not in INPUT_NORMS:
        raise ValueError(f"unknown input norm {norm!r}; choose one of {INPUT_NORMS}")
    recs = recordings(dataset, split, data_dir)
    downsample = recs.info.downsample if downsample is None else int(downsample)
    if not cache:
        counts = bin_recordings(recs, T, downsample, progress)
    else:
        path = cache_dir() / f"frames-{dataset}-{split}-T{T}-d{downsample}-{_fingerprint(recs, T, downsample)}.npy"
        if not path.exists():
            counts = bin_recordings(recs, T, downsample, progress)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, counts)
            os.replace(tmp, path)  # atomic: concurrent runs never see half a cache file
        counts = np.load(path, mmap_mode="r")
    return FrameSet(counts, recs.labels, recs.info.classes, norm, dataset, split, list(recs.paths), downsample)
