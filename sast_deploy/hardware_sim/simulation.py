"""Run an exported network on one backend over a dataset split, next to its references: the engine
of `sast-deploy simulate` (REPORT keys: DESIGN §1; what each one means: docs/deployment.md,
"Simulating").

Backends: `lava` and `emulator` run a `*.lava.h5` artifact (float or fixed point), `onnx` runs an
exported sequence graph in onnxruntime (its own precision), `torch` runs the source run's model in
hard mode as trained (float32). References, on the same samples: float -> the source run's model
in hard mode evaluated in float64; fixed -> the emulator's fixed point on the same integers. torch
is imported only where the source run's model is used.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ArtifactError, BackendError, ConfigError, SastError
from ..evaluation.activity import ActivityMeter, headline
from ..export.deployed import DeployedNetwork
from .backends import require_backend
from .conformance import explain_flips, first_mismatch, layer_mismatches
from .emulator import emulate

FLOAT_REFERENCE = "PyTorch hard model (float64)"
FIXED_REFERENCE = "emulator fixed point"
DERIVED_HARD = "emulator float (the folded PyTorch hard model in float64)"


@dataclass
class Artifact:
    """An exported file: a Lava artifact (`network`) or an ONNX sequence graph (`onnx`)."""

    path: Path
    network: DeployedNetwork | None
    onnx: object | None  # export.onnx_model.OnnxNetwork
    T: int
    input_shape: tuple[int, ...]
    input_norm: str
    precision: str  # the most a file holds: a fixed lava artifact holds float parameters too
    source: dict  # {"run": dir, "metrics": {...}, "qat": bool} as export recorded it
    data: dict  # {"dataset", "T", "input_norm", "downsample"}


def open_artifact(path) -> Artifact:
    """Read and validate an exported file (one-line ArtifactError if it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file; pass a *.lava.h5 or *.onnx written by `sast-deploy export`")
    if path.suffix == ".onnx":
        from ..export.onnx_model import OnnxNetwork

        o = OnnxNetwork(path)
        meta = {k: json.loads(o.meta.get(k) or "{}") for k in ("source", "data")}
        return Artifact(path, None, o, o.T, o.input_shape, o.input_norm, o.precision, meta["source"], meta["data"])
    from ..export.artifact import load_artifact

    net = load_artifact(path)
    return Artifact(path, net, None, net.T, tuple(net.input_shape), net.input_norm,
                    "fixed" if net.is_quantized else "float", net.meta.get("source", {}), net.meta.get("data", {}))


@dataclass
class Source:
    """The artifact's source run, when its directory is here: its model as trained, in float64
    (hard mode: the float reference; surrogate mode: the transfer gap) and, for the torch backend,
    in float32."""

    dir: Path
    run: object  # training.rundir.Run
    model: object  # SNN as trained (QAT grids enabled for a QAT run)
    float64: object  # evaluation.reference.ModelRunner

    def runner(self, dtype):
        from ..evaluation.reference import ModelRunner

        return ModelRunner(self.model, dtype)


def find_source(art: Artifact, run_dir=None) -> tuple[Source | None, str | None]:
    """(the source run, None) or (None, why not). `run_dir` overrides the recorded path; then a
    broken run is an error, a recorded one that is gone is only noted."""
    path = run_dir or art.source.get("run")
    if not path:
        return None, "the artifact records no source run (pass --run DIR)"
    if run_dir is None and not (Path(path) / "model.safetensors").is_file():
        return None, f"its source run {path} is not here (pass --run DIR)"
    from ..evaluation.reference import ModelRunner
    from ..training.rundir import load_run

    try:
        run = load_run(path)
    except SastError as e:
        if run_dir is not None:
            raise
        return None, f"its source run cannot be read ({e})"
    model = run.model  # load_model restores a QAT model's grids
    if tuple(model.spec.input_shape) != art.input_shape or int(run.data["T"]) != art.T:
        raise ConfigError(f"{path}: its model takes T={run.data['T']} x {model.spec.input_shape}, the artifact "
                          f"T={art.T} x {art.input_shape}; pass the run the artifact was exported from (--run)")
    return Source(Path(path), run, model, ModelRunner(model)), None


def resolve_precision(art: Artifact, backend: str, precision: str | None) -> str:
    """The precision to run at, or a one-line error for a combination the artifact cannot run."""
    if backend == "torch":
        if precision == "fixed":
            raise ConfigError("--backend torch runs the PyTorch model (float); for fixed point use "
                              "--backend emulator or --backend lava with a *.lava.h5 artifact")
        return "float"
    if backend == "onnx":
        if art.onnx is None:
            raise ConfigError(f"--backend onnx runs an ONNX file: pass the *.onnx written by "
                              f"`sast-deploy export --target onnx`, not {art.path}")
        if precision not in (None, art.precision):
            raise ConfigError(f"{art.path} is the {art.precision} ONNX graph; export one with "
                              f"`sast-deploy export --target onnx --precision {precision}` to run {precision}")
        return art.precision
    if art.network is None:
        raise ConfigError(f"--backend {backend} runs a Lava artifact: pass the *.lava.h5 written by "
                          f"`sast-deploy export --target lava`, not {art.path}")
    if precision == "fixed" and art.precision != "fixed":
        raise BackendError(f"{art.path} holds no fixed-point parameters: export it with "
                           "`sast-deploy export --target lava` (fixed is the default) or use --precision float")
    return precision or art.precision


def _backend(backend: str, art: Artifact, precision: str, source: Source | None):
    """x -> (logits, spikes per layer) of the backend under test."""
    if backend == "emulator":
        return lambda x: _pair(emulate(art.network, x, precision))
    if backend == "lava":
        from .lava_runner import run_lava

        return lambda x: _pair(run_lava(art.network, x, precision, progress=False))
    if backend == "onnx":
        return lambda x: _pair(art.onnx.run(x))
    import torch

    runner = source.runner(torch.float32)
    return lambda x: runner(x)[:2]


def _pair(result):
    return result.logits, result.spikes


def _deployed_network(art: Artifact, source: Source | None, precision: str) -> DeployedNetwork | None:
    """The folded network the backend runs (the fixed-point reference's integers; what activity is
    counted on): the artifact's own, or for an ONNX file the one export derives again from the
    source run (deterministic: the same numbers); None without either."""
    if art.network is not None:
        return art.network
    if source is None:
        return None
    from ..export.command import deploy

    return deploy(source.model, source.run.meta, source.run.summary, str(source.dir), precision, False)[0]


@dataclass
class Tally:
    """Counts over the batches seen so far (None: not measured)."""

    samples: int = 0
    correct: int = 0
    hard_correct: int | None = None
    surrogate_correct: int | None = None
    agree: int | None = None
    per_layer: np.ndarray | None = None
    seconds: float = 0.0
    flips: list = field(default_factory=list)
    first: dict | None = None

    def add(self, key: str, value) -> None:
        current = getattr(self, key)
        setattr(self, key, value if current is None else current + value)


class Simulation:
    """One backend at one precision on one artifact, with the references it can have."""

    def __init__(self, art: Artifact, backend: str, precision: str, source: Source | None, check: bool):
        self.art, self.backend, self.precision, self.source, self.check = art, backend, precision, source, check
        self.run_backend = _backend(backend, art, precision, source)
        self.net = _deployed_network(art, source, precision)
        self.ref_net = self.net if precision == "fixed" else None
        self.meter = ActivityMeter(self.net, precision)  # the backend's own spikes (docs/activity.md)
        # where torch_hard_accuracy comes from, and what agreement and spike_mismatches compare with
        self.hard_from = FLOAT_REFERENCE if source else DERIVED_HARD if art.network is not None else None
        self.reference = (FIXED_REFERENCE if self.ref_net is not None else None) if precision == "fixed" \
            else self.hard_from
        self.is_self = backend == "emulator" and self.reference in (FIXED_REFERENCE, DERIVED_HARD)
        self.tally = Tally()

    def notes(self) -> list[str]:
        notes = []
        if self.hard_from == DERIVED_HARD:
            notes.append(f"torch_hard_accuracy is the {DERIVED_HARD}: the same model up to the order of float sums")
        if self.reference is None:
            notes.append("agreement and spike_mismatches: no reference network without the source run")
        elif self.is_self:
            notes.append(f"agreement and spike_mismatches: the {self.reference} is this backend itself")
        if self.net is None:
            notes.append("synaptic operations: counted on the folded network, which an ONNX file needs its source run for")
        return notes

    @property
    def compared(self) -> bool:
        return self.reference is not None and not self.is_self

    def batch(self, x: np.ndarray, labels: np.ndarray, index: np.ndarray) -> None:
        """Run the backend on one batch (timed) and its references (not timed); `index`: the
        samples' positions in the split."""
        tally = self.tally
        t0 = time.perf_counter()
        logits, spikes = self.run_backend(x)
        tally.seconds += time.perf_counter() - t0
        tally.samples += len(labels)
        tally.correct += int((np.argmax(logits, 1) == labels).sum())
        self.meter.add(x, spikes)
        hard = derived = None
        if self.source is not None:
            hard = self.source.float64(x, "hard", potentials=self.check and self.precision == "float")
            surrogate = self.source.float64(x, "surrogate")[0]
            tally.add("surrogate_correct", int((surrogate.argmax(1) == labels).sum()))
        elif self.hard_from == DERIVED_HARD:
            em = (logits, spikes) if self.is_self and self.precision == "float" else \
                _pair(emulate(self.art.network, x, "float"))
            derived = (*em, None)
        reference_hard = hard or derived
        if reference_hard is not None:
            tally.add("hard_correct", int((reference_hard[0].argmax(1) == labels).sum()))
        if not self.compared:
            return
        if self.reference == FIXED_REFERENCE:
            em = emulate(self.ref_net, x, "fixed")
            ref_logits, ref_spikes, ref_pots = em.logits, em.spikes, None
        else:
            ref_logits, ref_spikes, ref_pots = reference_hard
        tally.add("agree", int((np.argmax(logits, 1) == ref_logits.argmax(1)).sum()))
        per_layer = np.array(layer_mismatches(spikes, ref_spikes))
        tally.add("per_layer", per_layer)
        if self.check and per_layer.any():
            if tally.first is None:
                layer, t, b, *neuron = first_mismatch(spikes, ref_spikes)
                tally.first = {"layer": layer + 1, "t": t + 1, "sample": int(index[b]), "neuron": neuron}
            if ref_pots is not None:  # float: is the first flip of each sample a tie of float sums?
                flips = explain_flips(spikes, ref_spikes, ref_pots, self._thetas())["first_flips"]
                tally.flips += [{**f, "sample": int(index[f["sample"]])} for f in flips]

    def _thetas(self) -> list[np.ndarray]:
        if self.art.network is not None:  # the thresholds the network runs (QAT: on its grid)
            return [layer.theta for layer in self.art.network.layers]
        return [lif.theta.detach().double().numpy() for lif in self.source.model.lifs]

    def report(self, frames, split: str, notes: list[str]) -> dict:
        """The REPORT of the batches so far (DESIGN §1 keys first)."""
        t, art, n = self.tally, self.art, self.tally.samples
        accuracy, hard_acc, surrogate = _rate(t.correct, n), _rate(t.hard_correct, n), _rate(t.surrogate_correct, n)
        notes = notes + self.notes()
        metrics = art.source.get("metrics", {})
        if surrogate is None and "surrogate_acc" in metrics and n == len(frames) and \
                (metrics.get("dataset"), metrics.get("split")) == (frames.dataset, split):
            surrogate = float(metrics["surrogate_acc"])
            notes.append("surrogate accuracy from the source run's summary (the same whole split)")
        elif surrogate is None:
            notes.append("transfer_gap: the surrogate model needs the source run")
        compared = self.compared and t.per_layer is not None
        report = {
            "backend": self.backend, "precision": self.precision, "samples": n, "accuracy": accuracy,
            "torch_hard_accuracy": hard_acc,
            "agreement": _rate(t.agree, n) if compared else None,
            "spike_mismatches": int(t.per_layer.sum()) if compared else None,
            "transfer_gap": None if surrogate is None or accuracy is None else surrogate - accuracy,
            "quantization_gap": hard_acc - accuracy if self.precision == "fixed" and hard_acc is not None else None,
            "samples_per_s": n / t.seconds if t.seconds > 0 else None, **headline(self.meter.result()),
            "artifact": str(art.path), "dataset": frames.dataset, "split": split, "T": art.T,
            "source_run": str(self.source.dir) if self.source else None, "reference": self.reference,
            "torch_hard_reference": self.hard_from, "surrogate_accuracy": surrogate,
            "spike_mismatches_per_layer": [int(v) for v in t.per_layer] if compared else None,
            "notes": notes,
        }
        if self.check and compared:
            report["check"] = {"first_mismatch": t.first}
            if self.reference == FLOAT_REFERENCE:
                report["check"].update(samples_affected=len(t.flips), first_flips=t.flips,
                                       all_ties=all(f["tie"] for f in t.flips))
        return report


def _rate(count, n):
    return None if count is None or n == 0 else count / n


def simulate(artifact, backend: str, precision: str | None = None, dataset: str | None = None,
             data_dir=None, split: str = "test", limit: int | None = None, batch_size: int = 128,
             check: bool = False, run_dir=None, progress: bool | None = None) -> dict:
    """Run `artifact` on `backend` over `split` of `dataset` (default: the artifact's), or over
    `limit` samples evenly spaced in it (the splits are ordered by class), and return the REPORT
    (DESIGN §1 keys, plus `reference`, `notes` and, with `check`, a `check` section)."""
    require_backend(backend)
    if batch_size < 1 or (limit is not None and limit < 1):
        raise ConfigError("--batch-size and --limit must be >= 1")
    art = open_artifact(artifact)
    precision = resolve_precision(art, backend, precision)
    source, why_no_source = find_source(art, run_dir)
    if backend == "torch" and source is None:
        raise SastError(f"--backend torch runs the model of the artifact's source run, but {why_no_source}")
    frames = _frames(art, dataset, data_dir, split, source)
    sim = Simulation(art, backend, precision, source, check)
    samples = subset(len(frames), limit)
    bar = tqdm(total=len(samples), unit="sample", desc=f"{backend} {precision}",
               disable=None if progress is None else not progress)
    try:
        for start in range(0, len(samples), batch_size):
            idx = samples[start:start + batch_size]
            sim.batch(frames.frames(idx), frames.labels[idx], idx)
            bar.update(len(idx))
    finally:
        bar.close()
    return sim.report(frames, split, [f"no PyTorch model: {why_no_source}"] if source is None else [])


def subset(size: int, limit: int | None) -> np.ndarray:
    """Indices of `limit` samples evenly spaced over a split of `size` (all when limit is None):
    every class in proportion, as the splits are ordered by class."""
    n = size if limit is None else min(limit, size)
    return np.arange(n) * size // max(n, 1)


def _frames(art: Artifact, dataset, data_dir, split: str, source: Source | None):
    from ..data.frames import load_frames

    recorded = art.data.get("dataset")
    dataset = dataset or recorded
    if not dataset:
        raise ConfigError(f"{art.path} records no dataset; pass --dataset")
    if data_dir is None and source is not None:
        data_dir = source.run.settings.get("data_dir")
    downsample = art.data.get("downsample") if dataset == recorded else None
    frames = load_frames(dataset, split, art.T, data_dir, art.input_norm, downsample, progress=True)
    if tuple(frames.frame_shape) != art.input_shape:
        raise ConfigError(f"{dataset} frames are {frames.frame_shape} but {art.path} takes {art.input_shape}; "
                          "pass the dataset the network was trained on")
    return frames
