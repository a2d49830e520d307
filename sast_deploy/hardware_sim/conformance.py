"""Spike-for-spike comparison of two simulators' per-layer spikes [T, B, *shape].

A flip in float precision is acceptable only as a tie within rounding: `first_mismatch` locates the
earliest one (later ones may be its consequences), whose reference potential the caller then
compares with the threshold.
"""
from __future__ import annotations

import numpy as np


def spike_mismatches(got: list[np.ndarray], want: list[np.ndarray]) -> list[int]:
    """Per layer, the number of neuron-steps whose spikes differ."""
    if len(got) != len(want):
        raise ValueError(f"{len(got)} layers of spikes compared with {len(want)}")
    return [int(np.count_nonzero(np.asarray(g) != np.asarray(w))) for g, w in zip(got, want)]


def first_mismatch(got: list[np.ndarray], want: list[np.ndarray]) -> tuple[int, ...] | None:
    """(layer, t, sample, *neuron index) of the earliest differing spike (earliest step, then
    lowest layer), or None when all spikes agree."""
    best = None
    for layer, (g, w) in enumerate(zip(got, want)):
        diff = np.argwhere(np.asarray(g) != np.asarray(w))
        if len(diff):
            t, *rest = diff[0]  # argwhere is in C order: earliest step first
            if best is None or t < best[1]:
                best = (layer, int(t), *map(int, rest))
    return best
