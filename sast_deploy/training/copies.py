"""Post-hoc copies of a finished run: threshold calibration and BatchNorm re-estimation.

A copy changes no weight. It is a normal run directory (model.safetensors, config.json, a record
file, summary.json written last) that `evaluate`, `export` and `report` read like any run. Its model
metadata names what it changed under one key of `POSTHOC_KEYS` and keeps what is needed to rebuild
the trained network (`calibration.source_model`): a copy's surrogate accuracy is that network's, its
hard accuracy the copy's, so its transfer gap is the one a deployment of the copy leaves.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import SastError
from ..evaluation.theory import theory_constants
from ..jsonio import write_json
from ..model.checkpoint import save_model
from ..model.network import SNN
from .rundir import CONFIG_FILE, EVALUATION_FILE, MODEL_FILE, SUMMARY_FILE, Run

POSTHOC_KEYS = ("calibration", "bn_recalibration")
KEPT_SUMMARY_KEYS = ("rho", "seed", "epochs", "time_per_epoch_s", "peak_mem_mb", "dataset", "extensions")


def posthoc_kind(meta: dict) -> str | None:
    """The POSTHOC_KEYS entry a model's metadata carries, or None for a trained run."""
    return next((k for k in POSTHOC_KEYS if meta.get(k)), None)


def copy_dir(run: Run, out_dir, default_name: str, record_file: str, what: str) -> Path:
    """The folder a copy of `run` goes to (default RUN/default_name), checked and cleared of stale results."""
    kind = posthoc_kind(run.meta)
    if kind:
        raise SastError(f"--run {run.dir}: is already a post-hoc copy ({kind}); use its source run "
                        f"{run.meta[kind].get('source_run')}")
    out = Path(out_dir) if out_dir is not None else run.dir / default_name
    if out.resolve() == run.dir.resolve():
        raise SastError(f"--out {out}: would overwrite the source run; choose another folder")
    if out.exists() and any(out.iterdir()):
        if not (out / record_file).is_file():
            raise SastError(f"--out {out}: exists and is not a {what} copy; choose a new folder")
        for stale in (SUMMARY_FILE, EVALUATION_FILE):  # an old copy must not look finished while it is rewritten
            (out / stale).unlink(missing_ok=True)
    return out


def write_copy(run: Run, out: Path, model: SNN, key: str, meta_value: dict, record_file: str, record: dict,
               summary: dict, config_value: dict | None = None) -> dict:
    """Write the copy (model with `meta_value` under `key`, config.json with `config_value` (default the
    same), the record, then summary.json); returns the full summary."""
    meta = {k: v for k, v in run.meta.items() if k != "summary"}  # the source's summary describes another model
    save_model(out / MODEL_FILE, model, {**meta, key: meta_value})
    write_json(out / CONFIG_FILE, {**run.config, key: meta_value if config_value is None else config_value})
    write_json(out / record_file, record)
    summary = {**{k: run.summary[k] for k in KEPT_SUMMARY_KEYS if k in run.summary}, **summary,
               **theory_constants(model)}
    write_json(out / SUMMARY_FILE, summary)
    return summary
