"""Spike-for-spike comparison of a simulator against a reference, and whether each flip is a float tie.

A float32 backend sums in another order than the float64 reference; the sums differ by ~1e-6, so a
spike can flip only where the reference potential sits that close to the threshold. The first flip
of a sample is the one to explain (later ones follow from it): it is a tie when the reference
margin |u - theta| is below TIE_TOLERANCE (1 + |theta|).
"""
from __future__ import annotations

import numpy as np

TIE_TOLERANCE = 1e-4


def layer_mismatches(spikes: list[np.ndarray], reference: list[np.ndarray]) -> list[int]:
    """Per layer, the number of neuron-steps whose spikes differ ([T, B, *shape] each)."""
    if len(spikes) != len(reference):
        raise ValueError(f"{len(spikes)} layers of spikes compared with {len(reference)}")
    return [int(np.count_nonzero(np.asarray(a) != np.asarray(b))) for a, b in zip(spikes, reference)]


def spike_mismatches(spikes: list[np.ndarray], reference: list[np.ndarray]) -> int:
    """Neuron-steps that differ, over all layers."""
    return sum(layer_mismatches(spikes, reference))


def first_mismatch(spikes: list[np.ndarray], reference: list[np.ndarray]) -> tuple[int, ...] | None:
    """(layer, t, sample, *neuron index) of the earliest differing spike (earliest step, then
    lowest layer), or None when all spikes agree."""
    best = None
    for layer, (a, b) in enumerate(zip(spikes, reference)):
        diff = np.argwhere(np.asarray(a) != np.asarray(b))
        if len(diff):
            t, *rest = diff[0]  # argwhere is in C order: earliest step first
            if best is None or t < best[1]:
                best = (layer, int(t), *map(int, rest))
    return best


def explain_flips(spikes: list[np.ndarray], reference: list[np.ndarray], potentials: list[np.ndarray],
                  thetas: list[np.ndarray]) -> dict:
    """Count mismatches and, per affected sample, report the earliest flip (lowest step, then layer)
    with the reference's float64 margin |u - theta| there."""
    T, B = reference[0].shape[:2]
    first = {}
    for l, (a, b) in enumerate(zip(spikes, reference)):
        diff = (np.asarray(a) != np.asarray(b)).reshape(T, B, -1)
        for t, n, i in zip(*np.nonzero(diff)):
            key = (int(t), l)
            if int(n) not in first or key < first[int(n)][:2]:
                first[int(n)] = (int(t), l, int(i))
    flips = []
    for n, (t, l, i) in sorted(first.items()):
        u = float(np.asarray(potentials[l]).reshape(T, B, -1)[t, n, i])
        theta = float(np.broadcast_to(thetas[l], reference[l].shape[2:]).reshape(-1)[i])
        margin = abs(u - theta)
        flips.append({"sample": n, "layer": l + 1, "t": t + 1, "neuron": i, "margin": margin,
                      "tie": margin <= TIE_TOLERANCE * (1 + abs(theta))})
    return {"spike_mismatches": spike_mismatches(spikes, reference), "samples_affected": len(flips),
            "first_flips": flips, "all_ties": all(f["tie"] for f in flips)}
