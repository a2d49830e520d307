"""Events -> voxel frames, deterministically.

A recording is cut into T equal time bins over a window (by default its first to its last event,
both included); polarity becomes the channel axis. Counting and normalising are separate steps so
that integer counts can be cached once and normalised per batch.
"""
from __future__ import annotations

import numpy as np

INPUT_NORMS = ("binary", "max")


def frame_shape(sensor_size: tuple[int, int, int], downsample: int = 1) -> tuple[int, int, int]:
    """(C, H, W) of the frames made from a (width, height, polarities) sensor."""
    width, height, channels = sensor_size
    return channels, -(-height // downsample), -(-width // downsample)


def event_window(events: np.ndarray) -> tuple[int, int]:
    """The default time window: first and last event time, both included."""
    t = events["t"]
    return int(t.min()), int(t.max())


def count_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int, int],
    T: int,
    window: tuple[int, int] | None = None,
    downsample: int = 1,
) -> np.ndarray:
    """Event counts per voxel, shape [T, C, H, W], dtype uint16 (saturating).

    Time bin of an event at t in window (t0, t1): floor((t - t0) * T / (t1 - t0 + 1)), exact in
    integers. Events outside the window are dropped. `downsample` pools space by an integer factor.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    t0, t1 = event_window(events) if window is None else (int(window[0]), int(window[1]))
    C, H, W = frame_shape(sensor_size, downsample)
    t = np.asarray(events["t"], dtype=np.int64)
    keep = (t >= t0) & (t <= t1)
    t = t[keep]
    b = ((t - t0) * T) // (t1 - t0 + 1)
    x = np.asarray(events["x"], dtype=np.int64)[keep] // downsample
    y = np.asarray(events["y"], dtype=np.int64)[keep] // downsample
    p = np.asarray(events["p"], dtype=np.int64)[keep]
    flat = ((b * C + p) * H + y) * W + x
    counts = np.bincount(flat, minlength=T * C * H * W)
    return np.minimum(counts, np.iinfo(np.uint16).max).astype(np.uint16).reshape(T, C, H, W)


def normalize(counts, norm: str = "binary"):
    """Counts [..., T, C, H, W] -> float32 values in [0, 1] (numpy or torch, batched or not).

    binary: 1 where any event fell in the voxel. max: count / the sample's largest count.
    """
    if norm == "binary":
        return (counts > 0).astype(np.float32) if isinstance(counts, np.ndarray) else (counts > 0).float()
    if norm == "max":
        if isinstance(counts, np.ndarray):
            c = counts.astype(np.float32)
            axes = tuple(range(c.ndim - 4, c.ndim))
            m = c.max(axis=axes, keepdims=True)
            return c / np.maximum(m, 1.0)
        c = counts.float()
        m = c.flatten(start_dim=c.ndim - 4).amax(dim=-1)
        return c / m.clamp(min=1.0).reshape(m.shape + (1, 1, 1, 1))
    raise ValueError(f"unknown input norm {norm!r}; choose one of {INPUT_NORMS}")
