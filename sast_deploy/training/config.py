"""TrainConfig: everything a training run depends on, checked before any work starts."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..data.datasets import DATASETS
from ..data.framing import INPUT_NORMS
from ..errors import ConfigError
from ..model.spec import POOLS, PRESETS
from ..model.surrogates import SURROGATES
from .optim import OPTIMIZERS, SCHEDULES

FORWARDS = ("surrogate", "ste")
BN_MODES = {"none": "none", "affine": "affine", "train": "batchnorm"}  # --bn value -> preset norm
BN_RECALIBRATIONS = ("none", "hard")
SELECTIONS = ("best", "last")
SAM_SYNCS = ("global", "local")  # eps from the whole global minibatch, or per process (m-sharpness)
# With --spec the file defines these; a non-default value next to it would be silently ignored.
ARCHITECTURE_FIELDS = ("preset", "hidden", "dense", "bn", "pool", "alpha", "theta_init", "surrogate", "k")


@dataclass
class TrainConfig:
    # data
    dataset: str = "nmnist-small"
    data_dir: str | None = None
    T: int = 10
    input_norm: str = "binary"
    max_samples: int = 0
    # network
    preset: str = "mlp"
    spec: str | None = None
    hidden: int = 256
    dense: int = 0
    bn: str = "none"
    pool: str = "avg"
    alpha: float = 0.9
    theta_init: float = 1.0
    surrogate: str = "arctan"
    k: float = 2.0
    forward: str = "surrogate"
    init_from: str | None = None
    qat: bool = False
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    lr_step: int = 10
    lr_gamma: float = 0.1
    batch_size: int = 32
    epochs: int = 10
    seed: int = 0
    # SAST and controls
    rho: float = 0.0
    asam: bool = False
    asam_eta: float = 0.01
    delta: float = 1e-12
    reuse_batch: bool = False
    compute_matched: bool = False
    theory_aligned: bool = False
    gamma_max: float = 0.99
    sam_sync: str = "global"
    # run
    select: str = "best"
    checkpoint_every: int = 0
    bn_recalibrate: str = "none"
    device: str = "auto"
    out: str = "runs/train"

    def __post_init__(self):
        # conv-bn's norm is training-mode BatchNorm: record it as --bn train (left at its default, --bn is unset)
        if self.preset == "conv-bn" and self.bn == "none":
            self.bn = "train"

    @classmethod
    def from_dict(cls, d, source: str) -> "TrainConfig":
        """Read a config recorded in `source` (config.json or a checkpoint)."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: the training config is not a JSON object")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"{source}: unknown training settings {sorted(unknown)}; written by another version?")
        for f in fields(cls):
            value = d.get(f.name, f.default)
            if not _fits(value, f.default):
                want = "string or null" if f.default is None else type(f.default).__name__
                raise ConfigError(f"{source}: setting {f.name} = {value!r} is not a {want}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def method(self) -> str:
        """A row label: baseline, baseline (compute-matched), SAST or ASAM-SAST, with (B'=B) for reuse
        (m-sharpness) for eps computed per process (--sam-sync local) and (QAT) for quantization-aware training."""
        if self.rho > 0:
            name = "ASAM-SAST" if self.asam else "SAST"
            if self.sam_sync == "local":
                name += " (m-sharpness)"
        else:
            name = "baseline (compute-matched)" if self.compute_matched else "baseline"
        return name + (" (B'=B)" if self.reuse_batch else "") + (" (QAT)" if self.qat else "")

    def validate(self) -> None:
        """ConfigError naming the flag on the first invalid or contradictory setting."""
        choices = {"dataset": DATASETS, "input_norm": INPUT_NORMS, "preset": PRESETS, "bn": BN_MODES,
                   "pool": POOLS, "surrogate": SURROGATES, "forward": FORWARDS, "optimizer": OPTIMIZERS,
                   "schedule": SCHEDULES, "select": SELECTIONS, "sam_sync": SAM_SYNCS,
                   "bn_recalibrate": BN_RECALIBRATIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{_flag(name)} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        positive = ("T", "batch_size", "epochs", "lr", "k", "theta_init", "hidden", "lr_step", "asam_eta", "lr_gamma")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{_flag(name)} must be positive, got {getattr(self, name)}")
        for name in ("max_samples", "dense", "checkpoint_every", "rho", "weight_decay", "delta"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{_flag(name)} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"--alpha must lie in [0, 1], got {self.alpha}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"--momentum must lie in [0, 1), got {self.momentum}")
        if not 0.0 < self.gamma_max < 1.0:
            raise ConfigError(f"--gamma-max must lie in (0, 1), got {self.gamma_max}")
        if self.rho > 0 and self.compute_matched:
            raise ConfigError("--compute-matched is the baseline (--rho 0) matched to a SAST run; drop one of them")
        if self.rho == 0 and self.asam:
            raise ConfigError("--asam needs --rho > 0 (ASAM's radius is usually larger than SAM's, e.g. 0.5-2)")
        if self.sam_sync == "local" and self.rho == 0:
            raise ConfigError("--sam-sync local computes SAST's eps per process; it needs --rho > 0")
        if self.reuse_batch and not (self.rho > 0 or self.compute_matched):
            raise ConfigError("--reuse-batch sets B' = B, which only SAST (--rho > 0) or --compute-matched use")
        if self.spec and self.init_from:
            raise ConfigError("--init-from takes the network of its run; drop --spec")
        if self.preset == "conv-bn" and self.bn != "train":
            raise ConfigError(f"--preset conv-bn has training-mode BatchNorm built in; for --bn {self.bn} use --preset conv")
        if self.preset == "conv" and self.bn == "train":
            raise ConfigError("the conv network with training-mode BatchNorm is --preset conv-bn")
        if self.bn_recalibrate != "none" and self.bn != "train" and not (self.spec or self.init_from):
            raise ConfigError(f"--bn-recalibrate {self.bn_recalibrate} re-estimates BatchNorm statistics; this network "
                              "has none (use --preset conv-bn or --bn train)")
        if self.spec or self.init_from:
            changed = [n for n in ARCHITECTURE_FIELDS if getattr(self, n) != getattr(TrainConfig, n)]
            if changed:
                raise ConfigError(f"--{'spec' if self.spec else 'init-from'} {self.spec or self.init_from} "
                                  "defines the network; drop "
                                  + ", ".join(f"--{_flag(n)}" for n in changed))
        if self.theory_aligned:
            if self.forward != "surrogate":
                raise ConfigError("--theory-aligned needs --forward surrogate (the theory does not cover STE)")
            if self.bn == "train" or self.pool == "max":
                raise ConfigError("--theory-aligned refuses --bn train and --pool max (practical extensions "
                                  "outside the theory)")


def _fits(value, default) -> bool:
    """Does `value` have the type of the field whose default is `default`?"""
    if default is None:
        return value is None or isinstance(value, str)
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _flag(name: str) -> str:
    return name.replace("_", "-")
