"""Controls that act on the network during training: the spec a config asks for, the constraint
projection after each step (theory-aligned mode), and the device.

Theory-aligned mode keeps every layer contractive, gamma_l = alpha_l + max(theta_l) * B1 <= gamma_max
< 1, by projecting thresholds onto theta_min <= theta <= (gamma_max - alpha_l) / B1 after every
optimizer step (and once at the start).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..data.frames import FrameSet
from ..errors import ConfigError, SpecError
from ..model.network import SNN
from ..model.spec import NetworkSpec, preset
from .config import BN_MODES, TrainConfig


def network_spec(cfg: TrainConfig, train: FrameSet) -> NetworkSpec:
    """The spec from --spec FILE, else the preset with the config's overrides; checked against the data."""
    if cfg.spec:
        try:
            with open(cfg.spec) as f:
                spec = NetworkSpec.from_json(f.read())
        except OSError as e:
            raise ConfigError(f"--spec {cfg.spec}: cannot read it ({e.strerror})") from None
        except SpecError as e:
            raise ConfigError(f"--spec {cfg.spec}: {e}") from None
        if spec.input_shape != train.frame_shape or spec.num_classes != len(train.classes):
            raise ConfigError(f"--spec {cfg.spec}: input {spec.input_shape} -> {spec.num_classes} classes does not fit "
                              f"{cfg.dataset} ({train.frame_shape} -> {len(train.classes)} classes)")
        if not spec.class_names:
            spec.class_names = list(train.classes)
        return spec
    try:
        return preset(cfg.preset, train.frame_shape, len(train.classes), class_names=train.classes,
                      hidden=cfg.hidden, dense=cfg.dense, alpha=cfg.alpha, theta_init=cfg.theta_init, surrogate=cfg.surrogate,
                      k=cfg.k, norm=BN_MODES[cfg.bn], pool=cfg.pool)
    except SpecError as e:
        raise ConfigError(str(e)) from None


def theta_ceilings(model: SNN, gamma_max: float) -> list[float]:
    """Per layer the largest threshold with alpha_l + theta * B1 <= gamma_max."""
    B1 = model.lifs[0].surrogate.B1
    ceilings = []
    for i, lif in enumerate(model.lifs):
        top = (gamma_max - lif.alpha) / B1
        if top < lif.theta_min:
            raise ConfigError(f"--theory-aligned: layer {i} has alpha {lif.alpha} and B1 {B1:.4g}, so no threshold "
                              f">= theta_min {lif.theta_min} keeps gamma <= --gamma-max {gamma_max}; "
                              "lower --alpha or --k")
        ceilings.append(top)
    return ceilings


def constraint_projection(model: SNN, cfg: TrainConfig) -> Callable[[], None]:
    """The projection applied after every optimizer step: theta >= theta_min, and in theory-aligned
    mode theta <= (gamma_max - alpha) / B1. Refuses practical extensions in theory-aligned mode."""
    if not cfg.theory_aligned:
        return model.project_
    if model.spec.extensions():
        raise ConfigError(f"--theory-aligned refuses {', '.join(model.spec.extensions())} in the network "
                          "(practical extensions outside the theory)")
    ceilings = theta_ceilings(model, cfg.gamma_max)

    @torch.no_grad()
    def project() -> None:
        model.project_()
        for lif, top in zip(model.lifs, ceilings):
            lif.theta.clamp_(max=top)

    return project


def resolve_device(name: str) -> str:
    """`auto` is CUDA when present, else CPU; an unavailable CUDA device is an error, not a fallback."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available here; use --device cpu or auto")
    try:
        torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a torch device (cpu, cuda, cuda:1, auto)") from None
    return name

