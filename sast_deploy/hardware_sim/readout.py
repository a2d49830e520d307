"""The host-side readout o = W_out (counts / T) + b_out (docs/deployment.md), in float64.

Written so that each sample's logits do not depend on how many samples are evaluated together
(no BLAS: its blocking changes the summation order with the batch size). Lava's native readout
process, the Lava runner and the emulator all call this one function, so their logits are
bit-identical whenever their spike counts are.
"""
from __future__ import annotations

import numpy as np


def readout_logits(counts: np.ndarray, weight: np.ndarray, bias: np.ndarray, T: int) -> np.ndarray:
    """counts [B, F] (last layer's spikes per sample, C-order flattened) -> logits [B, classes]."""
    rates = np.asarray(counts, dtype=np.float64) / T
    return (rates[:, None, :] * np.asarray(weight, dtype=np.float64)[None]).sum(-1) + bias
