"""Accuracy in surrogate and hard mode, and the transfer gap (paper Definition II.6).

Hard mode changes nothing but sigma -> H: same weights, thresholds, leak, reset and binning.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.frames import FrameSet
from ..model.network import SNN


@torch.no_grad()
def predict(model: SNN, frames: FrameSet, mode: str, batch_size: int = 256, device="cpu") -> np.ndarray:
    """Predicted class of every sample of `frames` with `model` in spike `mode`."""
    model.eval()
    preds = []
    with model.in_mode(mode):
        for start in range(0, len(frames), batch_size):
            x = torch.from_numpy(frames.frames(np.arange(start, min(start + batch_size, len(frames)))))
            preds.append(model(x.to(device)).argmax(1).cpu().numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def accuracy(model: SNN, frames: FrameSet, mode: str, batch_size: int = 256, device="cpu") -> float:
    """Fraction of `frames` that `model` classifies correctly in spike `mode`."""
    return float((predict(model, frames, mode, batch_size, device) == frames.labels).mean())


def transfer_gap(model: SNN, frames: FrameSet, batch_size: int = 256, device="cpu") -> dict:
    """surrogate_acc, hard_acc and transfer_gap = surrogate_acc - hard_acc on `frames`."""
    sur = accuracy(model, frames, "surrogate", batch_size, device)
    hard = accuracy(model, frames, "hard", batch_size, device)
    return {"surrogate_acc": sur, "hard_acc": hard, "transfer_gap": sur - hard}


def per_class_accuracy(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    """Accuracy within each true class (NaN for a class with no samples)."""
    out = []
    for c in range(num_classes):
        mask = labels == c
        out.append(float((preds[mask] == c).mean()) if mask.any() else float("nan"))
    return out
