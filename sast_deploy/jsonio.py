"""JSON files that are never half-written: temporary file, fsync, rename."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path


def _clean(obj):
    """NaN/Inf are not JSON: write them as null so every reader can parse the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _write_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, obj) -> None:
    """Atomically write `obj` as indented JSON."""
    _write_atomic(path, json.dumps(_clean(obj), indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | os.PathLike, records) -> None:
    """Atomically replace `path` with one JSON line per record."""
    _write_atomic(path, "".join(json.dumps(_clean(r), sort_keys=True) + "\n" for r in records))


def append_jsonl(path: str | os.PathLike, obj) -> None:
    """Append one JSON line (one record per line, flushed)."""
    with open(path, "a") as f:
        f.write(json.dumps(_clean(obj), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_json(path: str | os.PathLike):
    with open(path) as f:
        return json.load(f)
