"""`sast-deploy train` (= `python -m sast_deploy.train`): train a LIF SNN and write a run directory."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from .data.datasets import DATASETS
from .data.framing import INPUT_NORMS
from .model.spec import PRESETS
from .model.surrogates import SURROGATES
from .training.trainer import TrainConfig, train

HELP = {
    "dataset": "dataset name", "data_dir": "folder holding the dataset in tonic's layout (not needed for nmnist-small)",
    "preset": "network architecture", "hidden": "hidden LIF units (mlp preset)", "T": "time bins per recording",
    "input_norm": "binary: 1 where any event; max: count / sample max", "alpha": "membrane leak per step",
    "theta_init": "initial per-neuron threshold", "surrogate": "surrogate spike function", "k": "surrogate steepness",
    "batch_size": "minibatch size", "epochs": "training epochs", "lr": "learning rate", "seed": "random seed",
    "rho": "SAM radius (0 = plain surrogate training)", "device": "torch device", "out": "run directory to write",
}
CHOICES = {"dataset": list(DATASETS), "preset": list(PRESETS), "input_norm": list(INPUT_NORMS),
           "surrogate": list(SURROGATES)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    for f in fields(TrainConfig):
        if f.name == "extra":
            continue
        default = f.default
        kind = type(default) if default is not None else str
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=default,
                       choices=CHOICES.get(f.name), help=HELP.get(f.name, f.name))


def run(args) -> int:
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "extra"})
    s = train(cfg)
    print(f"{cfg.out}: surrogate {s['surrogate_acc']:.3f}  hard {s['hard_acc']:.3f}  gap {s['transfer_gap']:+.3f}"
          f"  ({s['time_per_epoch_s']:.2f} s/epoch)  -> {cfg.out}/summary.json")
    return 0


def main(argv=None) -> int:
    from .cli import run_command

    p = argparse.ArgumentParser(prog="python -m sast_deploy.train", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    return run_command(run, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
