"""The trained PyTorch model as the reference of the hard-spike simulators (DESIGN §6).

Simulators are checked against the model in hard mode evaluated in float64: float sums in another
order can then move a potential only by ~1e-16 relative, so any spike that differs must sit at such
a tie. The same weights in surrogate mode give the accuracy the transfer gap starts from.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ..model.network import SNN


class ModelRunner:
    """A copy of `model` in `dtype` that maps frames (numpy) to numpy results."""

    def __init__(self, model: SNN, dtype: torch.dtype = torch.float64):
        self.model = copy.deepcopy(model).cpu().to(dtype).eval()
        self.dtype = dtype

    @torch.no_grad()
    def __call__(self, x: np.ndarray, mode: str = "hard", potentials: bool = False):
        """(logits, spikes per layer as uint8 [T, B, *shape], potentials per layer or None)."""
        with self.model.in_mode(mode):
            out = self.model(torch.from_numpy(np.asarray(x)).to(self.dtype), return_potentials=potentials,
                             return_spikes=True)
        logits, spikes = out[0].numpy(), [s.numpy().astype(np.uint8) for s in out[1]]
        return logits, spikes, [u.numpy() for u in out[2]] if potentials else None
