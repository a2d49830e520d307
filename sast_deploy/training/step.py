"""One training iteration: plain surrogate training, its compute-matched twin, or SAST.

    rho = 0:                one forward/backward on B, one optimizer step (no overhead)
    rho = 0, matched:       two plain steps, on B then on B' (the passes and samples SAST uses)
    rho > 0 (SAST):         SAM: g on B, eps, g' on B' at w + eps, restore w, one step with g'

States reset before every pass (each forward is a fresh sequence). After every optimizer step the
parameter constraints are applied (`project`). `_forward`, `_pass` and `_norm` are the three places
data-parallel training (distributed.py) changes; here they are the single-process originals.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import TrainingDiverged
from ..model.network import SNN
from .sam import SAM, frozen_bn_statistics

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class StepResult:
    loss: float           # mean loss on B at w (pass 1)
    correct: int          # correct predictions on B at w
    grad_norm: float      # ||T g|| of pass 1 (SAST only, else nan)
    seen: int             # samples in B


class Updater:
    """Calls itself once per iteration with B and, where needed, a loader of B'."""

    def __init__(self, model: SNN, optimizer: torch.optim.Optimizer, project: Callable[[], None], rho: float = 0.0,
                 adaptive: bool = False, delta: float = 1e-12, eta: float = 0.01, compute_matched: bool = False):
        self.model, self.optimizer, self.project = model, optimizer, project
        self.compute_matched = compute_matched
        self.sam = SAM(model.parameters(), optimizer, rho, adaptive, delta, eta) if rho > 0 else None

    @property
    def needs_second_batch(self) -> bool:
        return self.sam is not None or self.compute_matched

    @property
    def passes(self) -> int:
        """Forward/backward passes per iteration."""
        return 2 if self.needs_second_batch else 1

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps per iteration."""
        return 2 if self.compute_matched else 1

    def _forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float, int, int]:
        """The loss to differentiate, and the minibatch's mean loss, correct predictions and size."""
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        return loss, loss.item(), int((logits.argmax(1) == y).sum()), len(y)

    def _pass(self, which: str) -> contextlib.AbstractContextManager:
        """Context around the forward/backward of pass `which` (first, perturbed, second)."""
        return contextlib.nullcontext()

    def _norm(self, norm: torch.Tensor) -> float:
        """The reported ||T g|| of pass 1."""
        return float(norm)

    def _backward(self, x: torch.Tensor, y: torch.Tensor, which: str) -> tuple[float, int, int]:
        self.optimizer.zero_grad(set_to_none=True)
        with self._pass(which):
            loss, value, correct, seen = self._forward(x, y)
            if not math.isfinite(value):
                raise TrainingDiverged(f"the loss is {value} on the {which} pass")
            loss.backward()
        return value, correct, seen

    def _step(self) -> None:
        self.optimizer.step()
        self.project()

    def __call__(self, batch: Batch, second: Callable[[], Batch] | None = None) -> StepResult:
        x, y = batch
        loss, correct, seen = self._backward(x, y, "first")
        grad_norm = math.nan
        if self.sam is not None:
            grad_norm = self._norm(self.sam.first_step())
            x2, y2 = second()
            with frozen_bn_statistics(self.model):
                self._backward(x2, y2, "perturbed")
            self.sam.second_step()
            self.project()
        else:
            self._step()
            if self.compute_matched:
                self._backward(*second(), "second")
                self._step()
        return StepResult(loss, correct, grad_norm, seen)
