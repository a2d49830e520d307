"""Data-parallel SAST under torchrun: one process per device, PyTorch's DistributedDataParallel.

    torchrun --nproc_per_node N -m sast_deploy.train --batch-size G ...

`--batch-size` is the global minibatch |B| = G of Algorithm 1, split over the N processes: each
iteration's B and B' are exactly those of a single-process run (batches.py: pure functions of
seed and epoch), cut into N contiguous parts whose sizes differ by at most one; process k takes
part k of each. Every process seeds torch with --seed (and DDP broadcasts rank 0's weights).

SAM under DDP (--sam-sync):
  global  pass 1's gradient is all-reduced, so eps = rho g / (||g|| + delta) comes from the whole
          global B, as in one process (Algorithm 1).
  local   pass 1 runs under DDP's no_sync(): each process perturbs with eps from its own part of
          B, a known variant (m-sharpness, m = G / N), labelled "SAST (m-sharpness)".
  Pass 2 all-reduces g' as usual, and every process takes the same optimizer step.

Each process differentiates its part's loss sum times N / |B|: DDP averages the N gradients, so
the result is the gradient of the global batch's mean loss also when the parts differ in size
(the last, smaller minibatch of an epoch). Training-mode BatchNorm becomes SyncBatchNorm, which
PyTorch implements for GPUs only. Evaluation is sharded the same way and the correct counts are
summed, so every sample counts once. Rank 0 alone writes the run directory; every process reads
it (the checkpoint on resume, the selected model at the end), so with several nodes --out must be
on a filesystem they all see.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data.frames import FrameSet
from ..errors import ConfigError, SastError
from ..evaluation.accuracy import predict, transfer_gap
from ..model.network import SNN
from .batches import shard, shard_bounds
from .config import TrainConfig
from .controls import resolve_device
from .step import Updater

DEFAULT_TIMEOUT_S = 1800.0  # PyTorch's own default for gloo; a process that dies is noticed at once


class DistributedError(SastError):
    """A collective failed: another process of the job died or stopped answering."""


class SingleProcess:
    """A run in one process: every collective is the identity, the trainer's path the plain one."""

    rank, size, main, backend = 0, 1, True, None

    def __init__(self, device: str):
        self.device = device

    def updater(self, model: SNN, optimizer: torch.optim.Optimizer, project, cfg: TrainConfig) -> Updater:
        if cfg.sam_sync == "local":
            raise ConfigError("--sam-sync local computes eps per process (m-sharpness); it needs torchrun with "
                              "--nproc_per_node > 1, else use --sam-sync global")
        return Updater(model, optimizer, project, cfg.rho, cfg.asam, cfg.delta, cfg.asam_eta, cfg.compute_matched)

    def shard(self, idx: np.ndarray) -> np.ndarray:
        return idx

    def transfer_gap(self, model: SNN, frames: FrameSet) -> dict:
        return transfer_gap(model, frames, device=self.device)

    def max(self, value: float) -> float:
        return value

    def barrier(self) -> None:
        pass

    def check_shared(self, path: Path) -> None:
        pass


class DataParallel(SingleProcess):
    """This process's place in a torchrun job (the default process group)."""

    def __init__(self, device: str):
        super().__init__(device)
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.main = self.rank == 0
        self.backend = dist.get_backend()
        self._device_ids = [torch.device(device).index] if device.startswith("cuda") else None

    def updater(self, model: SNN, optimizer: torch.optim.Optimizer, project, cfg: TrainConfig) -> Updater:
        if "batchnorm" in model.spec.extensions():
            if self._device_ids is None:
                raise ConfigError("training-mode BatchNorm (--bn train) under torchrun needs SyncBatchNorm, which "
                                  "PyTorch implements for GPUs only: use --device cuda, or one process")
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place: the optimizer's parameters stay
        ddp = DistributedDataParallel(model, device_ids=self._device_ids)
        return ReplicatedUpdater(ddp, self, cfg.sam_sync == "local", optimizer, project, cfg.rho, cfg.asam,
                                 cfg.delta, cfg.asam_eta, cfg.compute_matched)

    def shard(self, idx: np.ndarray) -> np.ndarray:
        return shard(idx, self.rank, self.size)

    def transfer_gap(self, model: SNN, frames: FrameSet) -> dict:
        """surrogate_acc, hard_acc, transfer_gap over all of `frames`; each process predicts its part."""
        lo, hi = shard_bounds(len(frames), self.rank, self.size)
        part = dataclasses.replace(frames, counts=frames.counts[lo:hi], labels=frames.labels[lo:hi],
                                   paths=frames.paths[lo:hi])
        correct = [int((predict(model, part, mode, device=self.device) == part.labels).sum())
                   for mode in ("surrogate", "hard")]
        total = self.sum(torch.tensor(correct, dtype=torch.float64, device=self.device))
        sur, hard = (total / len(frames)).tolist()
        return {"surrogate_acc": sur, "hard_acc": hard, "transfer_gap": sur - hard}

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t)
        return t

    def max(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.item()

    def barrier(self) -> None:
        dist.barrier(device_ids=self._device_ids)

    def check_shared(self, path: Path) -> None:
        """Every process must see `path`, which rank 0 wrote: the run directory is shared."""
        self.barrier()
        if not Path(path).is_file():
            raise ConfigError(f"process {self.rank} on {socket.gethostname()} does not see {path}, which rank 0 "
                              "wrote: with several nodes, --out must be on a filesystem all of them share")


class ReplicatedUpdater(Updater):
    """The iteration of step.py on a DDP-wrapped model (module docstring: loss scaling, --sam-sync)."""

    def __init__(self, ddp: DistributedDataParallel, world: DataParallel, local_eps: bool, *args):
        super().__init__(ddp.module, *args)
        self.ddp, self.world = ddp, world
        self.local_eps = local_eps and self.sam is not None

    def _forward(self, x, y):
        logits = self.ddp(x)
        total = F.cross_entropy(logits, y, reduction="sum")
        stats = torch.tensor([total.item(), int((logits.argmax(1) == y).sum()), len(y)], dtype=torch.float64,
                             device=logits.device)
        loss_sum, correct, seen = self.world.sum(stats).tolist()  # a NaN anywhere stops every process
        # DDP averages the processes' gradients: scaled by N / |B| their average is grad of the global mean.
        # (Under --sam-sync local pass 1 stays local; its scale cancels in eps = rho g / ||g||.)
        return total * (self.world.size / seen), loss_sum / seen, int(correct), int(seen)

    def _pass(self, which):
        # m-sharpness: pass 1's gradient is not all-reduced, so eps comes from this process's part of B
        return self.ddp.no_sync() if self.local_eps and which == "first" else contextlib.nullcontext()

    def _norm(self, norm):
        # the same on every process (global), or the mean over processes of the local ||T g|| (local)
        return self.world.sum(norm.double().reshape(1)).item() / self.world.size if self.local_eps else float(norm)


def replica_device(name: str) -> str:
    """The device of this torchrun process: its own GPU cuda:LOCAL_RANK, or the CPU."""
    device = resolve_device(name)
    if device == "cpu":
        return device
    if device != "cuda":
        raise ConfigError(f"--device {name}: under torchrun each process uses the CPU or its own GPU "
                          "(cuda:LOCAL_RANK); pass --device auto, cuda or cpu")
    local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local >= count:
        raise ConfigError(f"the process with LOCAL_RANK {local} has no GPU of its own ({count} here): "
                          f"use --nproc_per_node {count} or --device cpu")
    return f"cuda:{local}"


def _collective_failure(e: BaseException) -> bool:
    # gloo reports a lost peer or a timeout as a plain RuntimeError naming gloo
    return isinstance(e, dist.DistError) or bool(re.search(r"gloo|nccl", str(e), re.IGNORECASE))


@contextlib.contextmanager
def joined(cfg: TrainConfig, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[SingleProcess]:
    """The processes a run spans: torchrun's job when WORLD_SIZE > 1 (joined here, NCCL for CUDA,
    gloo for CPU, unless the caller already initialised a process group), else this process alone."""
    initialised = dist.is_available() and dist.is_initialized()
    size = dist.get_world_size() if initialised else int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        yield SingleProcess(resolve_device(cfg.device))
        return
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run one process")
    device = replica_device(cfg.device)
    if cfg.batch_size % size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is the global minibatch; it must split evenly over the "
                          f"{size} processes")
    if not initialised:
        if device != "cpu":
            torch.cuda.set_device(device)
        dist.init_process_group("gloo" if device == "cpu" else "nccl", timeout=timedelta(seconds=timeout_s))
    world = DataParallel(device)
    try:
        yield world
    except RuntimeError as e:
        if not _collective_failure(e):
            raise
        # the first sentence of the first line, without gloo's "[file.cc:123] " prefix
        cause = re.sub(r"^\[[^\]]*\]\s*", "", str(e).strip().splitlines()[0]).split(". ")[0][:200]
        raise DistributedError(f"process {world.rank} of {world.size}: the job lost another process (it died, or "
                               f"did not answer within --dist-timeout {timeout_s:g} s): {cause}; continue with "
                               f"torchrun ... -m sast_deploy.train --resume {cfg.out}") from None
    if not initialised:  # not after a failure: a collective could wait on the lost process
        dist.destroy_process_group()


def launched_rank() -> int:
    """This process's rank in a torchrun job (0 outside one)."""
    return int(os.environ.get("RANK", "0"))
