"""Surrogate-forward training of a LIF SNN on event frames, writing a run directory.

A run directory holds config.json (what was asked), metrics.jsonl (one line per epoch),
model.safetensors (the final weights with spec and data config) and summary.json (test metrics,
DESIGN §1 keys).
"""
from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.frames import FrameSet, load_frames
from ..evaluation.accuracy import transfer_gap
from ..evaluation.theory import theory_constants
from ..jsonio import append_jsonl, write_json
from ..model.checkpoint import save_model
from ..model.network import SNN
from ..model.spec import preset


@dataclass
class TrainConfig:
    """Everything a training run depends on."""

    dataset: str = "nmnist-small"
    data_dir: str | None = None
    preset: str = "mlp"
    hidden: int = 256
    T: int = 10
    input_norm: str = "binary"
    alpha: float = 0.9
    theta_init: float = 1.0
    surrogate: str = "arctan"
    k: float = 2.0
    batch_size: int = 32
    epochs: int = 5
    lr: float = 1e-3
    seed: int = 0
    rho: float = 0.0
    device: str = "cpu"
    out: str = "runs/demo"
    extra: dict = field(default_factory=dict)


def peak_memory_mb(device: str = "cpu") -> float:
    """Peak memory so far: CUDA allocator peak on GPU, else this process's peak RSS."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_model(cfg: TrainConfig, train: FrameSet) -> SNN:
    spec = preset(cfg.preset, train.frame_shape, len(train.classes), class_names=train.classes,
                  hidden=cfg.hidden, alpha=cfg.alpha, theta_init=cfg.theta_init, surrogate=cfg.surrogate, k=cfg.k)
    return SNN(spec)


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train per `cfg`, write the run directory `cfg.out`, return the summary."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    data = {s: load_frames(cfg.dataset, s, cfg.T, cfg.data_dir, cfg.input_norm, progress=progress)
            for s in ("train", "val", "test")}
    model = build_model(cfg, data["train"]).to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    write_json(out / "config.json", {"train": asdict(cfg), "spec": model.spec.to_dict()})
    (out / "metrics.jsonl").unlink(missing_ok=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_set = data["train"]
    epoch_times = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(train_set), generator=gen).numpy()
        batches = range(0, len(order), cfg.batch_size)
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
        loss_sum = correct = 0.0
        for start in bar:
            idx = order[start:start + cfg.batch_size]
            x = torch.from_numpy(train_set.frames(idx)).to(cfg.device)
            y = torch.from_numpy(train_set.labels[idx]).to(cfg.device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.project_()
            loss_sum += loss.item() * len(idx)
            correct += float((logits.argmax(1) == y).sum())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        epoch_times.append(time.perf_counter() - t0)
        val = transfer_gap(model, data["val"], device=cfg.device)
        record = {"epoch": epoch, "train_loss": loss_sum / len(order), "train_acc": correct / len(order),
                  **{f"val_{k}": v for k, v in val.items()}, "epoch_time_s": epoch_times[-1],
                  "peak_mem_mb": peak_memory_mb(cfg.device), **theory_constants(model)}
        append_jsonl(out / "metrics.jsonl", record)
        if progress:
            tqdm.write(f"epoch {epoch}: loss {record['train_loss']:.4f}  val surrogate {val['surrogate_acc']:.3f}"
                       f"  hard {val['hard_acc']:.3f}  gap {val['transfer_gap']:+.3f}  ({epoch_times[-1]:.1f} s)")
    test = transfer_gap(model, data["test"], device=cfg.device)
    summary = {**test, "rho": cfg.rho, "seed": cfg.seed, "epochs": cfg.epochs, "dataset": cfg.dataset,
               "split": "test", "samples": len(data["test"]),
               "time_per_epoch_s": float(np.mean(epoch_times)) if epoch_times else 0.0,
               "peak_mem_mb": peak_memory_mb(cfg.device), **theory_constants(model)}
    save_model(out / "model.safetensors", model.cpu(),
               {"data": {"dataset": cfg.dataset, "T": cfg.T, "input_norm": cfg.input_norm,
                         "downsample": train_set.downsample}, "summary": summary})
    write_json(out / "summary.json", summary)
    return summary
