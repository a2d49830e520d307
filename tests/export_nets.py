"""Small networks for the export, emulator and ONNX tests (not a test module)."""
import numpy as np
import torch

from sast_deploy.evaluation.reference import ModelRunner
from sast_deploy.model import SNN, LayerSpec, NetworkSpec


def conv_spec(classes: int = 5) -> NetworkSpec:
    """conv -> norm -> avgpool2 | strided conv -> avgpool3 | flatten -> linear -> norm: every fold rule."""
    return NetworkSpec((2, 12, 12), classes, [
        LayerSpec([{"kind": "conv", "out": 6, "kernel": 3, "padding": 1}, {"kind": "norm"},
                   {"kind": "avgpool", "kernel": 2}], alpha=0.8, theta_init=0.3),
        LayerSpec([{"kind": "conv", "out": 8, "kernel": 3, "stride": 2, "padding": 1},
                   {"kind": "avgpool", "kernel": 3}], alpha=0.9, theta_init=0.3),
        LayerSpec([{"kind": "flatten"}, {"kind": "linear", "out": 20}, {"kind": "norm"}], alpha=0.7, theta_init=0.3),
    ])


def mlp_spec(input_shape=(2, 6, 6), hidden=(24, 16), classes: int = 4, alphas=(0.85, 0.6)) -> NetworkSpec:
    layers = [LayerSpec([{"kind": "flatten"}, {"kind": "linear", "out": hidden[0]}], alpha=alphas[0], theta_init=0.5)]
    layers += [LayerSpec([{"kind": "linear", "out": h}], alpha=a, theta_init=0.5) for h, a in zip(hidden[1:], alphas[1:])]
    return NetworkSpec(tuple(input_shape), classes, layers)


def randomized(spec: NetworkSpec, seed: int = 0, gain: float = 1.5) -> SNN:
    """An SNN with weights scaled up and per-neuron thresholds spread out, so layers spike."""
    torch.manual_seed(seed)
    model = SNN(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(gain)
        for lif in model.lifs:
            lif.theta.uniform_(0.2, 0.6)
    return model.eval()


def frames(spec: NetworkSpec, T: int, B: int, binary: bool = True, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((T, B, *spec.input_shape))
    return (x < 0.3).astype(np.float32) if binary else x.astype(np.float32)


def hard_forward(model: SNN, x: np.ndarray, dtype=torch.float64):
    """The PyTorch hard model: logits, spikes (uint8 arrays), potentials."""
    return ModelRunner(model, dtype)(x, potentials=True)
