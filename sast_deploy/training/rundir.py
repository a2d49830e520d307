"""Reading run directories written by `sast-deploy train` (and calibrated copies of them).

A run directory holds config.json, metrics.jsonl, model.safetensors and summary.json; the trainer
writes summary.json last, so a run is finished iff summary.json exists.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..data.datasets import Recordings, recordings
from ..data.frames import FrameSet, load_frames
from ..errors import SastError
from ..jsonio import read_json
from ..model.checkpoint import load_model
from ..model.network import SNN

MODEL_FILE = "model.safetensors"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EVALUATION_FILE = "evaluation.json"  # written by `sast-deploy evaluate`


def is_finished(run_dir: str | os.PathLike) -> bool:
    """True iff the run wrote summary.json (its last file)."""
    return (Path(run_dir) / SUMMARY_FILE).is_file()


def _read(path: Path, what: str):
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError) as e:
        raise SastError(f"{path}: cannot read the run's {what} ({e}); rerun the command that wrote it") from None


def train_settings(config: dict) -> dict:
    """The training settings inside a config.json (`{"train": {...}, ...}` or flat)."""
    inner = config.get("train") if isinstance(config, dict) else None
    return inner if isinstance(inner, dict) else (config if isinstance(config, dict) else {})


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch records of metrics.jsonl (empty when the run has none)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise SastError(f"{path}: line {n} is not JSON; the file is damaged") from None
    return records


@dataclass
class Run:
    """A finished run: its model (surrogate mode), model metadata, config and summary."""

    dir: Path
    model: SNN
    meta: dict
    config: dict
    summary: dict

    @property
    def settings(self) -> dict:
        return train_settings(self.config)

    @property
    def data(self) -> dict:
        """{dataset, T, input_norm, downsample}: how the model's inputs are binned."""
        return self.meta["data"]

    def _data_dir(self, data_dir):
        return data_dir if data_dir is not None else self.settings.get("data_dir")

    def frames(self, split: str, data_dir=None, progress: bool = True) -> FrameSet:
        """The split binned exactly as in training (same T, norm and pooling)."""
        d = self.data
        return load_frames(d["dataset"], split, int(d["T"]), self._data_dir(data_dir), d["input_norm"],
                           d.get("downsample"), progress=progress)

    def recordings(self, split: str, data_dir=None) -> Recordings:
        return recordings(self.data["dataset"], split, self._data_dir(data_dir))


def load_run(run_dir: str | os.PathLike) -> Run:
    """Load a finished run directory; SastError says what is missing and what to do."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SastError(f"--run {run_dir}: no such directory; pass a folder written by `sast-deploy train --out`")
    if not is_finished(run_dir):
        raise SastError(f"--run {run_dir}: no {SUMMARY_FILE}, so training did not finish; "
                        f"resume it with `sast-deploy train --resume {run_dir}`")
    model, meta = load_model(run_dir / MODEL_FILE)
    if not isinstance(meta.get("data"), dict) or not {"dataset", "T", "input_norm"} <= set(meta["data"]):
        raise SastError(f"{run_dir / MODEL_FILE}: lacks the data settings (dataset, T, input_norm) in its metadata")
    config = _read(run_dir / CONFIG_FILE, "config") if (run_dir / CONFIG_FILE).is_file() else {}
    return Run(run_dir, model, meta, config, _read(run_dir / SUMMARY_FILE, "summary"))
