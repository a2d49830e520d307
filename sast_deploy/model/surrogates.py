"""Surrogate spike functions sigma(x) of the membrane margin x = u - theta.

Each exposes the two constants the paper's theory uses: B1 = sup |sigma'| and B2 = sup |sigma''|.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SURROGATES = ("arctan", "fast-sigmoid")


@dataclass(frozen=True)
class Surrogate:
    """sigma(x) with steepness k.

    arctan:       sigma(x) = 1/2 + atan(k x)/pi,           sigma'(x) = k / (pi (1 + k^2 x^2))
                  B1 = k/pi, B2 = 3 sqrt(3) k^2 / (8 pi)
    fast-sigmoid: sigma(x) = 1/2 (1 + k x / (1 + k|x|)),    sigma'(x) = k / (2 (1 + k|x|)^2)
                  B1 = k/2,  B2 = k^2 (the supremum of |sigma''|, approached at x -> 0)
    """

    name: str = "arctan"
    k: float = 2.0

    def __post_init__(self):
        if self.name not in SURROGATES:
            raise ValueError(f"unknown surrogate {self.name!r}; choose one of {SURROGATES}")
        if not (self.k > 0 and math.isfinite(self.k)):
            raise ValueError(f"surrogate steepness k must be positive and finite, got {self.k}")

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """sigma(x); written into `out` when given (no autograd then: LIFRecurrence's forward)."""
        kx = self.k * x
        if self.name == "arctan":
            return torch.atan(kx, out=out).div_(math.pi).add_(0.5)
        # |k x| = k |x| exactly (k > 0): the same roundings as 1/2 (1 + k x / (1 + k |x|))
        return torch.div(kx, kx.abs().add_(1.0), out=out).add_(1.0).mul_(0.5)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """sigma'(x): the gradient in STE mode, and of both modes in LIFRecurrence's backward."""
        if self.name == "arctan":
            return (self.k / math.pi) / (1.0 + (self.k * x).square())
        return (self.k / 2.0) / (1.0 + self.k * x.abs()).square()

    @property
    def B1(self) -> float:
        return self.k / math.pi if self.name == "arctan" else self.k / 2.0

    @property
    def B2(self) -> float:
        return 3.0 * math.sqrt(3.0) * self.k**2 / (8.0 * math.pi) if self.name == "arctan" else self.k**2
