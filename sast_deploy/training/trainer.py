"""Training runs: baseline or SAST on a LIF SNN, writing (and resuming) a run directory.

RUN_DIR/
  config.json              the TrainConfig, the network spec, versions, git commit, command line
  metrics.jsonl            one line per epoch: train loss/accuracy, validation surrogate and hard
                           accuracy and gap, epoch time, peak memory, B1, M_theta_hat, gamma_hat, lr
  checkpoint.safetensors   the full training state (state.py), at every epoch end and every
                           `checkpoint_every` iterations; `resume(RUN_DIR)` continues from it
  model.safetensors        the selected model (model.checkpoint format): the epoch with the best
                           validation surrogate accuracy (earliest on ties), or the last epoch
  summary.json             test metrics of the selected model plus the DESIGN §1 keys

Under torchrun (WORLD_SIZE > 1) a run is data-parallel over the job's processes, which only
rank 0 writes the run directory for (distributed.py); in one process it is the plain loop.
"""
from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.frames import FrameSet, load_frames
from ..errors import CheckpointError, ConfigError, TrainingDiverged
from ..evaluation.activity import headline
from ..evaluation.model_activity import model_activity
from ..evaluation.theory import theory_constants
from ..jsonio import append_jsonl, read_json, write_json, write_jsonl
from ..model.checkpoint import load_model, save_model
from ..model.network import SNN
from ..model.qat import disable_qat, enable_qat, is_qat, qat_grids, rechoose_grids
from .batches import epoch_batches, fixed_subset
from .bn_recalibration import bn_recalibrate_run
from .config import TrainConfig
from .controls import constraint_projection, network_spec
from .distributed import DEFAULT_TIMEOUT_S, SingleProcess, joined
from .optim import build_optimizer, learning_rate, set_learning_rate
from .provenance import environment
from .rundir import CONFIG_FILE, METRICS_FILE, MODEL_FILE, SUMMARY_FILE
from .state import Progress, TrainState, load_state, restore_optimizer, restore_rng, save_state

CHECKPOINT = "checkpoint.safetensors"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT, MODEL_FILE, SUMMARY_FILE)
SELECTION_METRIC = "val_surrogate_acc"


def peak_memory_mb(device: str = "cpu") -> float:
    """Peak memory so far: CUDA allocator peak on GPU, else this process's peak RSS."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_data(cfg: TrainConfig, progress: bool = True) -> dict[str, FrameSet]:
    """train/val/test frames for `cfg`, each cut to the fixed `max_samples` subset when set."""
    data = {}
    for split in ("train", "val", "test"):
        fs = load_frames(cfg.dataset, split, cfg.T, cfg.data_dir, cfg.input_norm, progress=progress)
        data[split] = fs.subset(fixed_subset(len(fs), cfg.max_samples))
    return data


def train(cfg: TrainConfig, progress: bool = True, overwrite: bool = False,
          data: dict[str, FrameSet] | None = None, dist_timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """Train per `cfg` into the run directory `cfg.out`; returns the summary.

    An existing run there is an error unless `overwrite` (then its files are replaced). `data`
    (train/val/test FrameSets) skips loading, e.g. for a sweep that trains many runs. Under
    torchrun, a collective that waits longer than `dist_timeout_s` fails the run."""
    cfg.validate()
    out = Path(cfg.out)
    existing = [n for n in RUN_FILES if (out / n).exists()]
    if existing and not overwrite:
        raise ConfigError(f"{out} already holds a run ({', '.join(existing)}); continue it with --resume {out}, "
                          "pass --overwrite, or choose another --out")
    with joined(cfg, dist_timeout_s) as world:
        if world.main:
            for name in existing:
                (out / name).unlink()
        return _Run(cfg, progress, data, None, world).run()


def resume(run_dir: str | Path, progress: bool = True, data: dict[str, FrameSet] | None = None,
           dist_timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """Continue the run in `run_dir` from its checkpoint, exactly as recorded; returns the summary."""
    run_dir = Path(run_dir)
    config_path, ckpt = run_dir / CONFIG_FILE, run_dir / CHECKPOINT
    if not config_path.is_file():
        raise ConfigError(f"--resume {run_dir}: no config.json there; is it a run directory?")
    if not ckpt.is_file():
        raise ConfigError(f"--resume {run_dir}: no {CHECKPOINT} yet (stopped before the first checkpoint); start again with --overwrite")
    try:
        recorded = read_json(config_path)["train"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{config_path}: not a readable run config") from None
    cfg = TrainConfig.from_dict(recorded, str(config_path))
    cfg.out = str(run_dir)  # the folder may have moved since
    state = load_state(ckpt)
    mine, theirs = {**cfg.to_dict(), "out": None}, {**state.config.to_dict(), "out": None}
    if mine != theirs:
        differ = sorted(k for k in mine if mine[k] != theirs[k])
        raise CheckpointError(f"{ckpt}: belongs to another run (its settings differ from {config_path} in {differ})")
    if state.progress.epochs_done >= cfg.epochs and (run_dir / SUMMARY_FILE).is_file():
        raise ConfigError(f"--resume {run_dir}: the run already finished all {cfg.epochs} epochs")
    cfg.validate()
    with joined(cfg, dist_timeout_s) as world:
        return _Run(cfg, progress, data, state, world).run()


def initial_model(cfg: TrainConfig, train: FrameSet) -> SNN:
    """A fresh network from the spec or preset, or the model of `--init-from RUN_DIR` (fine-tuning).
    The source must have been trained on the same data encoding; QAT grids it carries are dropped
    (with --qat the grids are chosen anew from the weights)."""
    if not cfg.init_from:
        return SNN(network_spec(cfg, train))
    model, meta = load_model(Path(cfg.init_from) / MODEL_FILE)
    data = meta.get("data", {})
    for key, mine in (("dataset", cfg.dataset), ("T", cfg.T), ("input_norm", cfg.input_norm)):
        if key in data and data[key] != mine:
            flag = key.replace("_", "-")
            raise ConfigError(f"--init-from {cfg.init_from} was trained with --{flag} {data[key]}; pass --{flag} {data[key]}")
    return disable_qat(model) if is_qat(model) else model


class _Run:
    """One training run from a fresh start or a checkpoint."""

    def __init__(self, cfg: TrainConfig, show: bool, data: dict[str, FrameSet] | None, state: TrainState | None,
                 world: SingleProcess):
        self.cfg, self.world = cfg, world
        self.show = show and world.main
        self.out = Path(cfg.out)
        self.device = world.device
        if state is not None and cfg.sam_sync == "local" and state.world_size != world.size:
            raise ConfigError(f"--resume {self.out}: its eps is computed per process (--sam-sync local) on "
                              f"{state.world_size} processes; resume it on {state.world_size}, not {world.size}")
        self.data = data or load_data(cfg, self.show)
        torch.manual_seed(cfg.seed)
        self.model = state.model if state else initial_model(cfg, self.data["train"])
        if cfg.qat:
            enable_qat(self.model, cfg.input_norm)
        self.project = constraint_projection(self.model, cfg)
        if state is None:
            self.project()  # the initial thresholds obey the constraints too
        self.model.to(self.device)
        self.model.mode = cfg.forward
        self.optimizer = build_optimizer(self.model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
        self.updater = world.updater(self.model, self.optimizer, self.project, cfg)
        self.saved = "none was written yet"
        env = environment(self.device, world.size, world.backend)
        world.barrier()  # every process has read the run directory before rank 0 writes there
        if state is None:
            self.progress = Progress()
            if world.main:
                write_json(self.out / CONFIG_FILE, {"train": cfg.to_dict(), "method": cfg.method,
                                                      "spec": self.model.spec.to_dict(), "environment": env})
        else:
            self.progress = state.progress
            restore_optimizer(self.optimizer, state, str(self.out / CHECKPOINT))
            restore_rng(state)
            self.saved = self._describe_checkpoint()
            if world.main:
                self._trim_metrics()
                recorded = read_json(self.out / CONFIG_FILE)
                recorded.setdefault("resumes", []).append({"from": self.saved, "environment": env})
                write_json(self.out / CONFIG_FILE, recorded)
        world.check_shared(self.out / CONFIG_FILE)
        if self.show and self.model.spec.extensions():
            print(f"note: {', '.join(self.model.spec.extensions())}: practical extension(s) outside the paper's theory")
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()

    # -- files ---------------------------------------------------------------------------------
    def _trim_metrics(self) -> None:
        """Drop metric lines of epochs the checkpoint does not cover (and a half-written last line)."""
        path = self.out / METRICS_FILE
        records = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        write_jsonl(path, [r for r in records if r.get("epoch", 0) <= self.progress.epochs_done])

    def _describe_checkpoint(self) -> str:
        p = self.progress
        where = f"epoch {p.epochs_done + 1}, iteration {p.step_in_epoch}" if p.step_in_epoch else f"end of epoch {p.epochs_done}"
        return f"{self.out / CHECKPOINT} ({where})"

    def _checkpoint(self) -> None:
        if self.world.main:
            save_state(self.out / CHECKPOINT, self.model, self.optimizer, self.cfg, self.progress, self.world.size)
        self.saved = self._describe_checkpoint()

    def _model_meta(self) -> dict:
        train = self.data["train"]
        return {"data": {"dataset": self.cfg.dataset, "T": self.cfg.T, "input_norm": self.cfg.input_norm,
                         "downsample": train.downsample}, "train": self.cfg.to_dict(), "method": self.cfg.method,
                **({"qat": qat_grids(self.model)} if self.cfg.qat else {})}

    # -- the loop ------------------------------------------------------------------------------
    def _batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        fs = self.data["train"]
        return (torch.from_numpy(fs.frames(idx)).to(self.device),
                torch.from_numpy(np.asarray(fs.labels[idx], dtype=np.int64)).to(self.device))

    def run(self) -> dict:
        cfg, p = self.cfg, self.progress
        n = len(self.data["train"])
        while p.epochs_done < cfg.epochs:
            epoch = p.epochs_done
            set_learning_rate(self.optimizer, learning_rate(cfg.lr, cfg.schedule, epoch, cfg.epochs, cfg.lr_step,
                                                            cfg.lr_gamma))
            pairs = [(self.world.shard(b), self.world.shard(b2))  # this process's part of B and B'
                     for b, b2 in epoch_batches(n, cfg.batch_size, cfg.seed, epoch, cfg.reuse_batch)]
            self._train_epoch(epoch, pairs)
            self._end_epoch(epoch)
        summary = self._finish()
        if cfg.bn_recalibrate != "none":  # training-end option: the re-estimated copy, RUN/bn-<mode>
            bn_recalibrate_run(self.out, mode=cfg.bn_recalibrate, train=self.data["train"], progress=self.show)
        return summary

    def _train_epoch(self, epoch: int, pairs) -> None:
        cfg, p = self.cfg, self.progress
        self.model.train()
        t0 = time.perf_counter() - p.epoch_elapsed_s
        bar = tqdm(total=len(pairs), initial=p.step_in_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not self.show, leave=False, unit="batch")
        for i in range(p.step_in_epoch, len(pairs)):
            idx, idx2 = pairs[i]
            batch = self._batch(idx)
            second = (lambda: batch) if cfg.reuse_batch else (lambda: self._batch(idx2))
            try:
                r = self.updater(batch, second if self.updater.needs_second_batch else None)
            except TrainingDiverged as e:
                bar.close()
                raise TrainingDiverged(f"{self.out}: {e} at epoch {epoch + 1}, iteration {i + 1}; the run stopped. "
                                       f"Last good checkpoint: {self.saved}. Lower --lr or --rho and start a new "
                                       "run") from None
            p.step_in_epoch, p.global_step = i + 1, p.global_step + 1
            p.loss_sum += r.loss * r.seen
            p.correct += r.correct
            p.seen += r.seen
            if self.updater.sam is not None:
                p.grad_norm_sum += r.grad_norm
            bar.update()
            bar.set_postfix(loss=f"{p.loss_sum / p.seen:.3f}", acc=f"{p.correct / p.seen:.3f}")
            if cfg.checkpoint_every and p.global_step % cfg.checkpoint_every == 0 and i + 1 < len(pairs):
                p.epoch_elapsed_s = time.perf_counter() - t0
                self._checkpoint()
        bar.close()
        p.epoch_elapsed_s = time.perf_counter() - t0

    def _end_epoch(self, epoch: int) -> None:
        cfg, p = self.cfg, self.progress
        if cfg.qat:
            rechoose_grids(self.model)  # validate and save on the grid of the weights after the last step
        val = self.world.transfer_gap(self.model, self.data["val"])
        record = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                  "train_loss": p.loss_sum / p.seen, "train_acc": p.correct / p.seen,
                  **{f"val_{k}": v for k, v in val.items()}, "epoch_time_s": p.epoch_elapsed_s,
                  "peak_mem_mb": self.world.max(peak_memory_mb(self.device)), "iterations": p.global_step,
                  **theory_constants(self.model)}
        if self.updater.sam is not None:
            record["grad_norm"] = p.grad_norm_sum / p.step_in_epoch
        if self.world.main:
            append_jsonl(self.out / METRICS_FILE, record)
        if self.show:
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.4f}  val surrogate "
                       f"{val['surrogate_acc']:.3f}  hard {val['hard_acc']:.3f}  gap {val['transfer_gap']:+.3f}  "
                       f"({p.epoch_elapsed_s:.2f} s)")
        metric = record[SELECTION_METRIC]
        if cfg.select == "last" or p.best_metric is None or metric > p.best_metric:
            p.best_metric, p.best_epoch = metric, epoch + 1
            if self.world.main:
                save_model(self.out / MODEL_FILE, self.model, {**self._model_meta(), "epoch": epoch + 1, "val": val})
        p.epoch_times.append(p.epoch_elapsed_s)
        p.epochs_done += 1
        p.start_epoch()
        self._checkpoint()

    def _finish(self) -> dict:
        cfg, p, world = self.cfg, self.progress, self.world
        world.barrier()  # rank 0 has written the selected model
        model, meta = load_model(self.out / MODEL_FILE)
        model.to(self.device)
        test = world.transfer_gap(model, self.data["test"])
        summary = {
            **test, "split": "test", "samples": len(self.data["test"]), "dataset": cfg.dataset,
            "method": cfg.method, "rho": cfg.rho, "seed": cfg.seed, "epochs": cfg.epochs,
            "selected_epoch": p.best_epoch, "select": cfg.select, "selection_metric": SELECTION_METRIC,
            **{f"val_{k}": v for k, v in meta["val"].items()},
            "time_per_epoch_s": float(np.median(p.epoch_times)), "peak_mem_mb": world.max(peak_memory_mb(self.device)),
            "iterations": p.global_step, "passes_per_iteration": self.updater.passes,
            "optimizer_steps": p.global_step * self.updater.optimizer_steps, "device": self.device,
            **theory_constants(model), "surrogate": model.spec.surrogate, "k": model.spec.k,
            "extensions": model.spec.extensions(), "world_size": world.size, "sam_sync": cfg.sam_sync,
            "eps_batch_size": self._eps_batch_size(),
            **{k: getattr(cfg, k) for k in ("forward", "asam", "reuse_batch", "compute_matched", "theory_aligned",
                                           "bn", "pool", "T", "batch_size", "optimizer", "lr", "schedule",
                                           "qat", "init_from")},
        }
        if world.main:  # hard-mode spikes and synaptic operations on the whole test split (docs/activity.md)
            summary.update(headline(model_activity(model, self.data["test"], device=self.device)))
            save_model(self.out / MODEL_FILE, model.cpu(), {**meta, "summary": summary})
            write_json(self.out / SUMMARY_FILE, summary)
        return summary

    def _eps_batch_size(self) -> int | None:
        """Samples each SAM perturbation is computed from: |B|, or |B| / processes (m-sharpness's m)."""
        if self.cfg.rho == 0:
            return None
        return self.cfg.batch_size // self.world.size if self.cfg.sam_sync == "local" else self.cfg.batch_size

