"""The training-step workload of DESIGN §7 built four ways: ours, snnTorch, SpikingJelly, dense.

Every network: x [T, B, 2, 34, 34] -> Linear 2312 -> H on all T*B rows at once -> H neurons ->
mean over T -> Linear H -> 10; cross-entropy, Adam (lr 1e-3), one forward + backward + step per
call. The neurons are LIF with reset by subtraction (leak alpha, threshold theta, arctan surrogate
of steepness k), or ReLU for the dense floor: the same matrix work with nothing recurrent. Peer
settings and where they differ from ours: bench/README.md. A peer that is not installed raises
ImportError from its builder.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sast_deploy.model import SNN, preset
from sast_deploy.training.optim import build_optimizer
from sast_deploy.training.step import Updater

INPUT_SHAPE = (2, 34, 34)
CLASSES = 10
LR = 1e-3


@dataclass(frozen=True)
class Workload:
    T: int = 30
    batch_size: int = 64
    hidden: int = 256
    density: float = 0.1  # input voxels are Bernoulli(density)
    alpha: float = 0.9
    theta: float = 1.0
    k: float = 2.0

    def describe(self) -> str:
        return (f"LIF MLP {math.prod(INPUT_SHAPE)} -> {self.hidden} -> {CLASSES}, batch {self.batch_size}, "
                f"T {self.T}, input Bernoulli({self.density}), alpha {self.alpha}, theta {self.theta}, "
                f"arctan k {self.k}, Adam; forward + backward + optimizer step")

    def batches(self, device: torch.device, n: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed)
        shape = (self.T, self.batch_size, *INPUT_SHAPE)
        return [((torch.rand(shape, generator=g) < self.density).float().to(device),
                 torch.randint(0, CLASSES, (self.batch_size,), generator=g).to(device)) for _ in range(n)]


Step = Callable[[], None]


def ours(w: Workload, batches, device, mode: str = "surrogate", rho: float = 0.0, fused: bool = True) -> Step:
    """The toolkit's own iteration (training/step.py Updater): baseline (rho 0) or SAST."""
    torch.manual_seed(0)
    model = SNN(preset("mlp", INPUT_SHAPE, CLASSES, hidden=w.hidden, alpha=w.alpha, theta_init=w.theta, k=w.k))
    model.to(device)
    model.mode = mode
    for lif in model.lifs:
        lif.fused = fused
    update = Updater(model, build_optimizer(model, "adam", LR), model.project_, rho=rho)
    counter = itertools.count()

    def step():
        i = next(counter)
        update(batches[i % len(batches)], lambda: batches[(i + 1) % len(batches)])
    return step


class _Net(nn.Module):
    """Linear on all T*B rows, `neurons` over [T, B, H], readout of the time average."""

    def __init__(self, w: Workload, neurons: nn.Module):
        super().__init__()
        self.fc = nn.Linear(math.prod(INPUT_SHAPE), w.hidden)
        self.neurons = neurons
        self.readout = nn.Linear(w.hidden, CLASSES)

    def forward(self, x):
        T, B = x.shape[:2]
        current = self.fc(x.reshape(T * B, -1)).reshape(T, B, -1)
        return self.readout(self.neurons(current).mean(0))


def _plain(net: nn.Module, batches, device) -> Step:
    net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    counter = itertools.count()

    def step():
        x, y = batches[next(counter) % len(batches)]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return step


def dense_floor(w: Workload, batches, device) -> Step:
    torch.manual_seed(0)
    return _plain(_Net(w, nn.ReLU()), batches, device)


class _SnnTorchLIF(nn.Module):
    """snnTorch's Leaky stepped over T (its API is single-step)."""

    def __init__(self, w: Workload):
        super().__init__()
        import snntorch
        from snntorch import surrogate

        # atan(a) has sigma'(x) = (a/2) / (1 + (pi a x / 2)^2): ours (k/pi) / (1 + (k x)^2) at a = 2k/pi
        self.lif = snntorch.Leaky(beta=w.alpha, threshold=torch.full((w.hidden,), w.theta), learn_threshold=True,
                                  spike_grad=surrogate.atan(alpha=2 * w.k / math.pi), reset_mechanism="subtract")

    def forward(self, current):
        mem, spikes = torch.zeros_like(current[0]), []
        for i in current:
            spk, mem = self.lif(i, mem)
            spikes.append(spk)
        return torch.stack(spikes)


def snntorch_leaky(w: Workload, batches, device) -> Step:
    torch.manual_seed(0)
    return _plain(_Net(w, _SnnTorchLIF(w)), batches, device)


class _SpikingJellyLIF(nn.Module):
    """SpikingJelly's LIFNode in multi-step mode; its state is reset before every sequence."""

    def __init__(self, w: Workload, spiking: bool):
        super().__init__()
        from spikingjelly.activation_based import neuron, surrogate

        # decay_input=False: v <- v (1 - 1/tau) + x, so alpha = 1 - 1/tau; v_reset=None: soft reset
        # ATan(a): sigma as ours at a = 2k/pi; spiking=False puts sigma itself in the forward pass
        self.node = neuron.LIFNode(tau=1.0 / (1.0 - w.alpha), decay_input=False, v_threshold=w.theta, v_reset=None,
                                   surrogate_function=surrogate.ATan(alpha=2 * w.k / math.pi, spiking=spiking),
                                   detach_reset=False, step_mode="m", backend="torch")

    def forward(self, current):
        self.node.reset()
        return self.node(current)


def spikingjelly_lif(w: Workload, batches, device, spiking: bool = True) -> Step:
    torch.manual_seed(0)
    return _plain(_Net(w, _SpikingJellyLIF(w, spiking)), batches, device)
