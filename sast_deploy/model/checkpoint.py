"""Model files: weights in safetensors, the network spec and metadata as JSON in its header.

No pickle anywhere: a model file received from someone else can only carry tensors and strings.
Loading validates everything (format, version, spec, tensor names and shapes, finite values, and a
SHA-256 of the tensors that catches tampering) and fails with one line naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, SastError
from .network import SNN
from .spec import NetworkSpec

MODEL_FORMAT = "sast-deploy/model"
MODEL_VERSION = "1"


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of `tensors`, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # reshape: 0-d too
    return h.hexdigest()


def atomic_save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file via a temporary file and a rename, so readers never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_tensors(path: str | os.PathLike, expected_format: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read and integrity-check a sast-deploy safetensors file; CheckpointError names the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        tensors = load_file(path)
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file, truncated or corrupt ({e})") from None
    fmt = meta.get("format")
    if fmt != expected_format:
        raise CheckpointError(f"{path}: not a {expected_format} file (format {fmt!r}); was it written by sast-deploy?")
    if meta.get("sha256") != tensor_digest(tensors):
        raise CheckpointError(f"{path}: tensor contents do not match the recorded checksum; the file was altered")
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: tensor {name} holds NaN or Inf values")
    return tensors, meta


def save_model(path: str | os.PathLike, model: SNN, meta: dict | None = None) -> None:
    """Save `model`'s weights, its spec and JSON-able `meta` (e.g. data config, metrics)."""
    tensors = dict(model.state_dict())
    metadata = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "spec": model.spec.to_json(),
        "meta": json.dumps(meta or {}, sort_keys=True),
        "sha256": tensor_digest(tensors),
    }
    atomic_save_tensors(path, tensors, metadata)


def model_from_tensors(spec: NetworkSpec, tensors: dict[str, torch.Tensor], source: str) -> SNN:
    """Build an SNN from `spec` and load `tensors` into it, checking names and shapes."""
    model = SNN(spec)
    want = model.state_dict()
    missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
    if missing or extra:
        raise CheckpointError(f"{source}: weights do not match the spec (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, t in want.items():
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise CheckpointError(f"{source}: {name} has shape {list(tensors[name].shape)}, the spec needs {list(t.shape)}")
    model.load_state_dict({k: v.to(want[k].dtype) for k, v in tensors.items()})
    return model


def load_model(path: str | os.PathLike) -> tuple[SNN, dict]:
    """Load a model file written by `save_model`: returns (model in surrogate mode, meta). A model
    trained with QAT (meta "qat") comes back on its frozen fixed-point grids, as it was evaluated."""
    tensors, meta = read_tensors(path, MODEL_FORMAT)
    if meta.get("version") != MODEL_VERSION:
        raise CheckpointError(f"{path}: model file version {meta.get('version')!r} is not supported (expected {MODEL_VERSION})")
    try:
        spec = NetworkSpec.from_json(meta.get("spec", ""))
        extra = json.loads(meta.get("meta", "{}"))
    except (SastError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: invalid metadata ({e})") from None
    model = model_from_tensors(spec, tensors, os.fspath(path))
    if extra.get("qat"):
        from .qat import enable_qat  # torch-heavy; only QAT models need it

        try:
            enable_qat(model, extra.get("data", {}).get("input_norm", "binary"), grids=extra["qat"])
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: invalid QAT grids ({e})") from None
    return model, extra
