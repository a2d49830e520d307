"""The base optimizer and the learning-rate schedule.

The schedule is a pure function of the epoch, so a resumed run needs no scheduler state:
    constant: lr_e = lr
    cosine:   lr_e = lr * (1 + cos(pi * e / E)) / 2           e = 0 .. E-1
    step:     lr_e = lr * gamma ** floor(e / step_epochs)
Weight decay applies to weight matrices and kernels only, never to thresholds, biases or norm
parameters (decaying theta would push neurons towards firing on noise).
"""
from __future__ import annotations

import math

import torch
from torch import nn

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def learning_rate(lr: float, schedule: str, epoch: int, epochs: int, step_epochs: int = 10, gamma: float = 0.1) -> float:
    """The learning rate of 0-based `epoch` out of `epochs`."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "step":
        return lr * gamma ** (epoch // step_epochs)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
