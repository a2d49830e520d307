"""Training checkpoints: everything a run needs to continue bitwise as if never stopped.

One safetensors file (no pickle) written atomically: tensors `model/*` (weights and buffers),
`optim/<param>/<key>` (optimizer state) and `rng/torch` (`rng/cuda` on GPU); JSON metadata with the
spec, the config, the optimizer's hyperparameters and scalar state, the progress (epoch, step,
running sums, best epoch) and the number of processes that trained it. SHA-256 digests cover the tensors and the metadata, so a truncated,
tampered or foreign file is refused with one line naming it. The learning-rate schedule and the
data order are pure functions of (config, epoch), so they need no state of their own.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

import torch

from ..errors import CheckpointError, TrainingDiverged
from ..model.checkpoint import atomic_save_tensors, model_from_tensors, read_tensors, tensor_digest
from ..model.network import SNN
from ..model.spec import NetworkSpec
from .config import TrainConfig

STATE_FORMAT = "sast-deploy/train-state"
STATE_VERSION = "1"


@dataclass
class Progress:
    """Where a run stands: `epochs_done` complete epochs plus `step_in_epoch` iterations of the next."""

    epochs_done: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    loss_sum: float = 0.0        # running sums over the current epoch's iterations
    correct: int = 0
    seen: int = 0
    grad_norm_sum: float = 0.0
    epoch_elapsed_s: float = 0.0
    epoch_times: list = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float | None = None

    def start_epoch(self) -> None:
        self.step_in_epoch = 0
        self.loss_sum = self.grad_norm_sum = self.epoch_elapsed_s = 0.0
        self.correct = self.seen = 0


def _meta_digest(meta: dict[str, str]) -> str:
    body = {k: v for k, v in meta.items() if k not in ("sha256", "meta_sha256")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_state(path: str | os.PathLike, model: SNN, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
               progress: Progress, world_size: int = 1) -> None:
    """Write the checkpoint; refuses (TrainingDiverged) to replace a good one with NaN/Inf weights."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise TrainingDiverged(f"{name[6:]} holds NaN or Inf values")
    opt = optimizer.state_dict()
    scalars = {}
    for pid, state in opt["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim/{pid}/{key}"] = value
            else:
                scalars[f"{pid}/{key}"] = value
    tensors["rng/torch"] = torch.get_rng_state()
    if next(model.parameters()).is_cuda:
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    meta = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "spec": model.spec.to_json(),
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
        "optimizer": json.dumps({"param_groups": opt["param_groups"], "scalars": scalars}, sort_keys=True),
        "progress": json.dumps(asdict(progress), sort_keys=True),
        "world_size": str(world_size),
        "sha256": tensor_digest(tensors),
    }
    meta["meta_sha256"] = _meta_digest(meta)
    atomic_save_tensors(path, tensors, meta)


@dataclass
class TrainState:
    """A checkpoint as read back: the config it belongs to, the model, and what to load into the rest."""

    config: TrainConfig
    model: SNN
    progress: Progress
    optimizer_state: dict
    rng: dict[str, torch.Tensor]
    world_size: int = 1  # processes of the run that wrote it (older checkpoints: 1)


def load_state(path: str | os.PathLike) -> TrainState:
    """Read and validate a checkpoint written by `save_state`; CheckpointError names the file."""
    path = os.fspath(path)
    tensors, meta = read_tensors(path, STATE_FORMAT)
    if meta.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')!r} is not supported "
                              f"(expected {STATE_VERSION})")
    if meta.get("meta_sha256") != _meta_digest(meta):
        raise CheckpointError(f"{path}: metadata does not match the recorded checksum; the file was altered")
    try:
        spec = NetworkSpec.from_json(meta["spec"])
        cfg = TrainConfig.from_dict(json.loads(meta["config"]), path)
        opt = json.loads(meta["optimizer"])
        progress = Progress(**json.loads(meta["progress"]))
        world_size = int(meta.get("world_size", "1"))
    except (KeyError, TypeError, ValueError) as e:  # json and Spec/Config errors derive from ValueError
        raise CheckpointError(f"{path}: invalid checkpoint metadata ({e})") from None
    model = model_from_tensors(spec, {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}, path)
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in opt["scalars"].items():
        pid, key = name.split("/", 1)
        state.setdefault(int(pid), {})[key] = value
    rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng/")}
    if "torch" not in rng:
        raise CheckpointError(f"{path}: the checkpoint lacks the RNG state")
    return TrainState(cfg, model, progress, {"state": state, "param_groups": opt["param_groups"]}, rng, world_size)


def restore_optimizer(optimizer: torch.optim.Optimizer, state: TrainState, source: str) -> None:
    try:
        optimizer.load_state_dict(state.optimizer_state)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{source}: the optimizer state does not fit this run's optimizer ({e})") from None


def restore_rng(state: TrainState) -> None:
    torch.set_rng_state(state.rng["torch"])
    if "cuda" in state.rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(state.rng["cuda"])
