"""Reading and validating event recordings.

Events are numpy structured arrays with at least the fields ``x``, ``y``, ``t`` (microseconds) and
``p`` (polarity), as tonic produces them. Every reader here validates what it returns, so a garbled
file fails loudly with its name instead of producing silent garbage frames.
"""
from __future__ import annotations

import os

import numpy as np
from tonic.io import read_mnist_file

from ..errors import DataError

NMNIST_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def validate_events(events: np.ndarray, sensor_size: tuple[int, int, int], source: str) -> np.ndarray:
    """Check that `events` fit `sensor_size` = (width, height, polarities); return them unchanged.

    Raises DataError naming `source` for empty recordings, coordinates or polarities outside the
    sensor, negative or non-finite times, and times that run backwards (a sign of garbled bytes).
    """
    width, height, channels = sensor_size
    if events.dtype.names is None or not {"x", "y", "t", "p"} <= set(events.dtype.names):
        raise DataError(f"{source}: not an event array with fields x, y, t, p")
    if len(events) == 0:
        raise DataError(f"{source}: the recording holds no events")
    x, y, t, p = (np.asarray(events[k]) for k in ("x", "y", "t", "p"))
    for name, v, hi in (("x", x, width), ("y", y, height), ("polarity", p.astype(np.int64), channels)):
        lo_bad, hi_bad = v.min() < 0, v.max() >= hi
        if lo_bad or hi_bad:
            raise DataError(
                f"{source}: {name} values span {v.min()}..{v.max()}, outside the sensor's 0..{hi - 1} "
                f"(sensor {width}x{height}x{channels}); the file is garbled or from another sensor"
            )
    tf = t.astype(np.float64)
    if not np.all(np.isfinite(tf)) or tf.min() < 0:
        raise DataError(f"{source}: timestamps are negative or not finite")
    if np.any(np.diff(tf) < 0):
        raise DataError(f"{source}: timestamps run backwards; the file is garbled")
    return events


def read_nmnist(path: str | os.PathLike, sensor_size=(34, 34, 2)) -> np.ndarray:
    """Read one N-MNIST `.bin` recording with tonic's reader, after checking its framing."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if size == 0 or size % 5:
        raise DataError(
            f"{path}: {size} bytes is not a whole number of 5-byte N-MNIST events; the file is truncated"
        )
    events = read_mnist_file(path, dtype=NMNIST_DTYPE)
    return validate_events(events, sensor_size, path)
