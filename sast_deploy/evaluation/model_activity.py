"""The activity of a PyTorch model in hard mode (evaluation/activity.py's torch path).

Counted on the model's folded network, the network export deploys: the plain fold, or for a QAT
model its integers de-quantized (the weights its hard forward uses, zeros included).
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.frames import FrameSet
from ..errors import ExportError
from ..export.deployed import DeployedNetwork
from ..model.network import SNN
from .activity import ActivityMeter


def model_network(model: SNN, T: int, input_norm: str) -> DeployedNetwork | None:
    """The float DeployedNetwork `model` computes in hard mode, or None when it does not fold (MaxPool)."""
    from ..export.fold import fold_network
    from ..export.quantize import quantize_network
    from ..model.qat import is_qat, qat_integers

    try:
        net = fold_network(model, T, input_norm)
    except ExportError:
        return None
    if is_qat(model):
        net = quantize_network(net, integers=qat_integers(model), dequantized_floats=True)[0]
    return net


@torch.no_grad()
def model_activity(model: SNN, frames: FrameSet, batch_size: int = 256, device="cpu") -> dict:
    """ActivityMeter.result() of `model` in hard mode over every sample of `frames`."""
    meter = ActivityMeter(model_network(model, frames.T, frames.norm))
    dtype = next(model.parameters()).dtype  # float64 for a reference copy
    model.eval()
    with model.in_mode("hard"):
        for start in range(0, len(frames), batch_size):
            x = frames.frames(np.arange(start, min(start + batch_size, len(frames))))
            _, spikes = model(torch.from_numpy(x).to(device, dtype), return_spikes=True)
            meter.add(x, [s.cpu().numpy().astype(np.uint8) for s in spikes])
    return meter.result()
