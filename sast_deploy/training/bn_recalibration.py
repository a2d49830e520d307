"""BatchNorm re-estimation in hard mode: a post-hoc control next to threshold calibration (DESIGN §10).

Training-mode BatchNorm keeps running statistics of its input, gathered on the graded activations of
surrogate-forward training. Hard mode feeds the same layers binary spikes with other statistics, and
inference-mode BatchNorm normalises them with the surrogate's mean and variance: the pilot's gap.
Re-estimation replaces every BatchNorm layer's running mean and variance by those of its input in
hard mode:

    data      the run's training split (the `--max-samples` subset it trained on); labels unused
    count     per channel, every element of the layer's input: recordings x T steps x positions
    estimate  mean and unbiased variance over all of them (float64 sums): no momentum, what torch's
              cumulative average (momentum=None) gives with the whole split, up to rounding
    order     layer by layer, the network in eval mode, so each layer is measured with the earlier
              layers already re-estimated: what hard-mode inference computes
    frozen    weights, thresholds, BatchNorm's affine weight and bias and eps
"""
from __future__ import annotations

import copy
import os
import time

import numpy as np
import torch
from torch import nn

from ..data.frames import FrameSet
from ..errors import SastError
from ..evaluation.accuracy import accuracy
from ..model.network import SNN
from .batches import fixed_subset
from .copies import copy_dir, write_copy
from .rundir import load_run

BN_RECALIBRATION_FILE = "bn_recalibration.json"
STAT_KEYS = ("running_mean", "running_var")


def batchnorms(model: SNN) -> dict[str, nn.Module]:
    """The BatchNorm modules by state-dict prefix (e.g. 'layers.0.block.1'), in network order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


@torch.no_grad()
def input_statistics(model: SNN, frames: FrameSet, modules: list[nn.Module], mode: str, batch_size: int = 256,
                     device="cpu") -> list[dict]:
    """Per module: the mean and unbiased variance per channel of its input over `frames` with `model`
    in eval mode and spike `mode`, and the number of elements per channel."""
    sums = [[0.0, 0.0, 0] for _ in modules]

    def hook(k):
        def collect(module, args):
            x = args[0].detach().to(torch.float64)
            dims = [0, *range(2, x.ndim)]
            sums[k][0] = sums[k][0] + x.sum(dims)
            sums[k][1] = sums[k][1] + (x * x).sum(dims)
            sums[k][2] += x.numel() // x.shape[1]
        return collect

    handles = [m.register_forward_pre_hook(hook(k)) for k, m in enumerate(modules)]
    model.eval()
    try:
        with model.in_mode(mode):
            for start in range(0, len(frames), batch_size):
                idx = np.arange(start, min(start + batch_size, len(frames)))
                model(torch.from_numpy(frames.frames(idx)).to(device))
    finally:
        for h in handles:
            h.remove()
    out = []
    for s, ss, n in sums:
        if n < 2:
            raise SastError(f"BatchNorm re-estimation needs at least 2 values per channel, got {n}")
        mean = s / n
        out.append({"mean": mean, "var": (ss - n * mean * mean).clamp(min=0) / (n - 1), "count": n})
    return out


def _compare(mean, var, ref_mean, ref_var, eps: float) -> dict:
    """How far statistics (mean, var) are from the reference: median over channels of |shift| / sigma_ref
    and of sigma / sigma_ref."""
    ref_sd = (ref_var.double() + eps).sqrt()
    return {"shift_sigma": float(((mean - ref_mean.double()).abs() / ref_sd).median()),
            "std_ratio": float(((var + eps).sqrt() / ref_sd).median())}


def reestimate(model: SNN, frames: FrameSet, mode: str = "hard", batch_size: int = 256,
               device="cpu") -> tuple[SNN, list[dict]]:
    """A copy of `model` with every BatchNorm's running statistics re-estimated on `frames` in `mode`
    (see the module doc), and one record per BatchNorm: the element count, and how far the training
    (running) statistics were from this mode's and from the exact surrogate-mode ones (a diagnostic
    of the cause: stale running averages or the change of mode)."""
    out = copy.deepcopy(model).to(device)
    bns = batchnorms(out)
    if not bns:
        raise SastError("the network has no BatchNorm layer: there are no statistics to re-estimate")
    surrogate = input_statistics(out, frames, list(bns.values()), "surrogate", batch_size, device)
    records = []
    for (name, bn), sur in zip(bns.items(), surrogate):
        (new,) = input_statistics(out, frames, [bn], mode, batch_size, device)
        old_mean, old_var = bn.running_mean.clone(), bn.running_var.clone()
        bn.running_mean.copy_(new["mean"])
        bn.running_var.copy_(new["var"])
        records.append({"module": name, "channels": int(bn.num_features), "count": new["count"],
                        f"{mode}_vs_running": _compare(new["mean"], new["var"], old_mean, old_var, bn.eps),
                        "surrogate_vs_running": _compare(sur["mean"], sur["var"], old_mean, old_var, bn.eps)})
    return out.cpu(), records


def statistics(model: SNN) -> dict[str, list[float]]:
    """Every BatchNorm's running statistics as JSON lists, keyed by state-dict name."""
    return {f"{name}.{key}": getattr(bn, key).tolist() for name, bn in batchnorms(model).items() for key in STAT_KEYS}


def with_statistics(model: SNN, stats: dict[str, list[float]]) -> SNN:
    """A copy of `model` with the BatchNorm running statistics `stats` (as written by `statistics`)."""
    out = copy.deepcopy(model)
    state = out.state_dict()
    if set(stats) != set(statistics(out)):
        raise SastError("the stored BatchNorm statistics do not match the network's BatchNorm layers")
    out.load_state_dict({**state, **{k: torch.tensor(v, dtype=state[k].dtype) for k, v in stats.items()}})
    return out


def bn_recalibrate_run(run_dir, out_dir=None, mode: str = "hard", test_split: str = "test", data_dir=None,
                       train: FrameSet | None = None, progress: bool = True) -> dict:
    """Re-estimate the BatchNorm statistics of a finished run on its training split and write the copy
    (default RUN_DIR/bn-<mode>): model.safetensors, config.json, bn_recalibration.json and, last,
    summary.json, with the test accuracies. `train` skips loading the training frames. Returns the summary."""
    if mode != "hard":
        raise SastError(f"--bn-recalibrate {mode!r}: the only re-estimation is 'hard'")
    run = load_run(run_dir)
    out = copy_dir(run, out_dir, f"bn-{mode}", BN_RECALIBRATION_FILE, "BN re-estimated")
    if not batchnorms(run.model):
        raise SastError(f"--run {run_dir}: the network has no BatchNorm layer; re-estimation applies to "
                        "--preset conv-bn / --bn train networks")
    t0 = time.perf_counter()
    if train is None:
        train = run.frames("train", data_dir, progress)
        train = train.subset(fixed_subset(len(train), int(run.settings.get("max_samples", 0) or 0)))
    model, layers = reestimate(run.model, train, mode)
    test = run.frames(test_split, data_dir, progress)
    acc = {name: accuracy(m, test, spike) for name, m, spike in (
        ("surrogate", run.model, "surrogate"), ("source_hard", run.model, "hard"),
        ("hard", model, "hard"), ("reestimated_surrogate", model, "surrogate"))}
    info = {"mode": mode, "split": train.split, "samples": len(train), "source_run": os.fspath(run.dir)}
    record = {**info, "layers": layers, "test_split": test_split,
              "test": {"surrogate_acc": acc["surrogate"], "source_hard_acc": acc["source_hard"],
                       "hard_acc": acc["hard"], "reestimated_surrogate_acc": acc["reestimated_surrogate"]},
              "time_s": time.perf_counter() - t0}
    # the gap a deployment of the copy leaves: the trained surrogate network vs hard spikes with re-estimated BN
    summary = write_copy(run, out, model, "bn_recalibration", {**info, "source_statistics": statistics(run.model)},
                         BN_RECALIBRATION_FILE, record,
                         {"surrogate_acc": acc["surrogate"], "hard_acc": acc["hard"],
                          "transfer_gap": acc["surrogate"] - acc["hard"], "split": test_split, "samples": len(test),
                          "bn_recalibrated": mode}, config_value=info)
    return {**summary, "record": record, "out": os.fspath(out)}
