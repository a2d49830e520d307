"""`sast-deploy train` (= `python -m sast_deploy.train`): train a LIF SNN, baseline or SAST, into a
run directory; `--resume RUN_DIR` continues a stopped run exactly. Under
`torchrun --nproc_per_node N -m sast_deploy.train ...` the same command trains data-parallel
(DistributedDataParallel; docs/distributed.md)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from .data.datasets import DATASETS
from .data.framing import INPUT_NORMS
from .errors import ConfigError
from .evaluation.activity import format_activity
from .model.spec import POOLS, PRESETS
from .model.surrogates import SURROGATES
from .training.config import BN_MODES, BN_RECALIBRATIONS, FORWARDS, SAM_SYNCS, SELECTIONS, TrainConfig
from .training.distributed import DEFAULT_TIMEOUT_S, launched_rank
from .training.optim import OPTIMIZERS, SCHEDULES
from .training.trainer import resume, train

# field -> (help, choices); booleans become on/off switches
FLAGS = {
    "dataset": ("dataset name", DATASETS),
    "data_dir": ("folder holding the dataset in tonic's layout (not needed for nmnist-small)", None),
    "T": ("time bins per recording", None),
    "input_norm": ("binary: 1 where any event fell in a voxel; max: count / the sample's largest count", INPUT_NORMS),
    "max_samples": ("use a fixed subset of at most this many recordings per split (0 = all), for quick runs", None),
    "preset": ("network architecture: mlp, conv, or conv-bn (conv with training-mode BatchNorm; practical "
               "extension outside the theory)", PRESETS),
    "spec": ("network spec JSON file (instead of --preset and its options)", None),
    "hidden": ("hidden LIF units (mlp preset)", None),
    "dense": ("conv presets: LIF units of a dense layer before the readout (0 = none)", None),
    "bn": ("norm after each linear/conv: none, affine (inference-mode, folds at export) or train "
           "(training-mode BatchNorm; practical extension outside the theory; conv-bn has it built in)",
           list(BN_MODES)),
    "pool": ("pooling in the conv presets: avg, or max (practical extension outside the theory)", POOLS),
    "alpha": ("membrane leak per step", None),
    "theta_init": ("initial per-neuron threshold", None),
    "surrogate": ("surrogate spike function sigma", SURROGATES),
    "k": ("surrogate steepness (arctan: B1 = k/pi; fast-sigmoid: B1 = k/2)", None),
    "forward": ("training forward pass: surrogate (smooth, the theory's setting) or ste (hard forward, "
                "sigma' backward)", FORWARDS),
    "init_from": ("fine-tune: start from the model of this run directory (its network, weights and "
                  "thresholds) instead of a fresh initialisation", None),
    "qat": ("quantization-aware training: weights, biases, thresholds and leak on the Loihi fixed-point "
            "grid with straight-through gradients; the export reproduces the model's hard spikes exactly", None),
    "optimizer": ("base optimizer", OPTIMIZERS),
    "lr": ("learning rate", None),
    "momentum": ("SGD momentum", None),
    "weight_decay": ("weight decay on weight matrices and kernels (not thresholds, biases, norms)", None),
    "schedule": ("learning-rate schedule per epoch", SCHEDULES),
    "lr_step": ("step schedule: epochs between decays", None),
    "lr_gamma": ("step schedule: decay factor", None),
    "batch_size": ("minibatch size |B| (under torchrun the global batch, split evenly over the processes)", None),
    "epochs": ("training epochs", None),
    "seed": ("random seed (initialisation and data order)", None),
    "rho": ("SAM radius; 0 = plain surrogate training (one pass per iteration)", None),
    "asam": ("scale-adaptive SAM (Kwon et al. 2021): eps = rho T^2 g / ||T g||, T = |w| + eta", None),
    "asam_eta": ("ASAM's eta", None),
    "delta": ("delta in eps = rho g / (||g|| + delta)", None),
    "reuse_batch": ("ablation: perturb on the same minibatch (B' = B) instead of an independent one", None),
    "compute_matched": ("baseline (rho 0) taking two plain steps per iteration, on B then on B', so it makes "
                        "as many forward/backward passes as SAST over the same epochs", None),
    "theory_aligned": ("keep gamma = alpha + max(theta) B1 <= --gamma-max by projecting theta; refuses "
                       "--bn train, --pool max and --forward ste", None),
    "gamma_max": ("theory-aligned bound on gamma (< 1)", None),
    "sam_sync": ("under torchrun: global = eps from the all-reduced gradient of the whole global batch "
                 "(Algorithm 1); local = eps from each process's own part (m-sharpness, labelled as such)", SAM_SYNCS),
    "select": ("model kept in model.safetensors: best validation surrogate accuracy, or last epoch", SELECTIONS),
    "checkpoint_every": ("also checkpoint every N iterations (0 = at epoch ends only)", None),
    "bn_recalibrate": ("at the end, also write RUN/bn-hard: BatchNorm statistics re-estimated with hard-spike "
                       "forward passes over the training split (as `sast-deploy calibrate --bn-recalibrate`)",
                       BN_RECALIBRATIONS),
    "device": ("torch device; auto = CUDA when present, else CPU (under torchrun: each process's own GPU "
               "with NCCL, or the CPU with gloo)", None),
    "out": ("run directory to write", None),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    for f in fields(TrainConfig):
        help_text, choices = FLAGS[f.name]
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(f.default, bool):
            p.add_argument(flag, dest=f.name, action="store_true", help=help_text)
        else:
            kind = type(f.default) if f.default is not None else str
            p.add_argument(flag, dest=f.name, type=kind, default=f.default, choices=choices, help=help_text)
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last checkpoint, with its recorded settings")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="under torchrun: fail the job when a process waits this long for the others")


def run(args) -> int:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    if not args.dist_timeout > 0:
        raise ConfigError(f"--dist-timeout must be positive, got {args.dist_timeout}")
    if args.resume:
        given = [f.name for f in fields(TrainConfig) if values[f.name] != f.default]
        if given or args.overwrite:
            flags = ", ".join(f"--{n.replace('_', '-')}" for n in given) or "--overwrite"
            raise ConfigError(f"--resume {args.resume} continues the run with its recorded settings; drop {flags}")
        s = resume(args.resume, progress=not args.quiet, dist_timeout_s=args.dist_timeout)
        out = args.resume
    else:
        cfg = TrainConfig(**values)
        s = train(cfg, progress=not args.quiet, overwrite=args.overwrite, dist_timeout_s=args.dist_timeout)
        out = cfg.out
    if launched_rank() != 0:
        return 0
    print(f"{out}: {s['method']}, epoch {s['selected_epoch']} selected; test surrogate {s['surrogate_acc']:.3f}  "
          f"hard {s['hard_acc']:.3f}  gap {s['transfer_gap']:+.3f}  ({s['time_per_epoch_s']:.2f} s/epoch, "
          f"peak {s['peak_mem_mb']:.0f} MB)  -> {out}/summary.json")
    print(f"  hard-mode activity per inference: {format_activity(s)}")
    return 0


def main(argv=None) -> int:
    from .cli import module_main

    return module_main("python -m sast_deploy.train", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
