"""The paper's LIF neuron (DESIGN §3): leak alpha, per-neuron threshold theta, reset by subtraction.

    u_t = alpha * u_{t-1} + I_t - theta * s_{t-1}      (reset un-decayed, applied one step later)
    s_t = H(u_t - theta)         hard:      spike iff u_t > theta (strict)
        = sigma(u_t - theta)     surrogate: smooth, exact gradient
        = H(u_t - theta)         ste:       hard forward, sigma' backward

`lif_step` is the single definition of one step; the module only loops it over time.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .surrogates import Surrogate

MODES = ("surrogate", "hard", "ste")


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """H(x) = 1 if x > 0 else 0 (strict: a potential exactly at threshold does not spike)."""
    return (x > 0).to(x.dtype)


class _STEHeaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, surrogate):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.grad(x), None


def spike_function(mode: str, surrogate: Surrogate) -> Callable[[torch.Tensor], torch.Tensor]:
    """The spike nonlinearity s = f(u - theta) for a forward mode."""
    if mode == "surrogate":
        return surrogate
    if mode == "hard":
        return heaviside
    if mode == "ste":
        return lambda x: _STEHeaviside.apply(x, surrogate)
    raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")


def lif_step(u, s_prev, current, alpha, theta, spike):
    """One LIF step: returns (u_t, s_t) from (u_{t-1}, s_{t-1}, I_t)."""
    u = alpha * u + current - theta * s_prev
    return u, spike(u - theta)


def integrate(current: torch.Tensor, step, return_potentials: bool = False):
    """Run `step(u, s, I_t) -> (u_t, s_t)` over time from the zero state (one sequence per call):
    spikes [T, B, *shape], and potentials when asked. Quantization-aware training reuses this loop
    with its own step (model/qat.py)."""
    u = torch.zeros_like(current[0])
    s = torch.zeros_like(current[0])
    spikes, potentials = [], []
    for t in range(current.shape[0]):
        u, s = step(u, s, current[t])
        spikes.append(s)
        if return_potentials:
            potentials.append(u)
    out = torch.stack(spikes)
    return (out, torch.stack(potentials)) if return_potentials else out


class LIF(nn.Module):
    """A layer of LIF neurons over a time-major input current [T, B, *shape] -> spikes [T, B, *shape].

    theta (per neuron) is learned and kept >= theta_min by `project_()`; alpha is fixed. State
    starts at zero for every sequence, so each call is one independent sequence.
    """

    def __init__(self, shape, alpha: float, theta_init: float, surrogate: Surrogate, theta_min: float = 0.05):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        if theta_init <= 0:
            raise ValueError(f"theta_init must be positive, got {theta_init}")
        self.shape = tuple(shape)
        self.alpha = float(alpha)
        self.theta_min = float(theta_min)
        self.surrogate = surrogate
        self.mode = "surrogate"
        self.theta = nn.Parameter(torch.full(self.shape, float(theta_init)))

    def extra_repr(self) -> str:
        return f"shape={self.shape}, alpha={self.alpha}, mode={self.mode}, surrogate={self.surrogate}"

    def forward(self, current: torch.Tensor, return_potentials: bool = False):
        spike = spike_function(self.mode, self.surrogate)
        step = lambda u, s, i: lif_step(u, s, i, self.alpha, self.theta, spike)  # noqa: E731
        return integrate(current, step, return_potentials)

    @torch.no_grad()
    def project_(self) -> None:
        """Keep thresholds positive: theta <- max(theta, theta_min)."""
        self.theta.clamp_(min=self.theta_min)
