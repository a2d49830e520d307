"""SAM and ASAM as one small wrapper around any torch optimizer (paper Algorithm 1).

One update, with the caller running forward/backward passes in between:

    g   = grad L_B(w)                                   caller: pass 1 on minibatch B
    eps = rho * T^2 g / (||T g||_2 + delta)             first_step():  w <- w + eps
    g'  = grad L_B'(w + eps)                            caller: pass 2 on minibatch B'
    w   restored bitwise, base optimizer steps with g'  second_step()

T = I for SAM (Foret et al. 2021); T = diag(|w| + eta) for ASAM (Kwon et al. 2021), which makes the
neighbourhood scale with each weight. The norm runs over all parameters that received a gradient.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn


@torch.no_grad()
def perturbation(params, grads, rho: float, adaptive: bool = False, delta: float = 1e-12, eta: float = 0.01):
    """eps = rho * T^2 g / (||T g|| + delta) for each parameter, and ||T g|| (a 0-d tensor)."""
    scales = [p.abs() + eta for p in params] if adaptive else None
    scaled = [s * g for s, g in zip(scales, grads)] if adaptive else list(grads)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in scaled]))
    factor = rho / (norm + delta)
    if adaptive:
        return [s * t * factor for s, t in zip(scales, scaled)], norm
    return [g * factor for g in grads], norm


class SAM:
    """Wraps `base` (any torch optimizer over `params`): first_step climbs to w + eps, second_step
    restores w exactly (a saved copy, not w + eps - eps, which rounds) and lets `base` step."""

    def __init__(self, params, base: torch.optim.Optimizer, rho: float, adaptive: bool = False,
                 delta: float = 1e-12, eta: float = 0.01):
        if rho <= 0:
            raise ValueError(f"SAM needs rho > 0, got {rho}; use the base optimizer alone for rho = 0")
        self.params = list(params)
        self.base = base
        self.rho, self.adaptive, self.delta, self.eta = float(rho), bool(adaptive), float(delta), float(eta)
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @torch.no_grad()
    def first_step(self) -> torch.Tensor:
        """w <- w + eps from the gradients now in .grad; returns ||T g||."""
        live = [p for p in self.params if p.grad is not None]
        eps, norm = perturbation(live, [p.grad for p in live], self.rho, self.adaptive, self.delta, self.eta)
        self._saved = [(p, p.detach().clone()) for p in live]
        for p, e in zip(live, eps):
            p.add_(e)
        return norm

    @torch.no_grad()
    def second_step(self) -> None:
        """Restore w, then step the base optimizer with the gradients now in .grad (g')."""
        if self._saved is None:
            raise RuntimeError("second_step() without first_step()")
        for p, w in self._saved:
            p.copy_(w)
        self._saved = None
        self.base.step()


@contextlib.contextmanager
def frozen_bn_statistics(model: nn.Module):
    """Keep BatchNorm running statistics out of the perturbed pass: there they would record
    activations at w + eps, which the restored weights never produce. Batch statistics still
    normalise (training mode), so the pass computes the same function as pass 1."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True
