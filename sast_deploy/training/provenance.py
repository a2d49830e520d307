"""What produced a run: package versions, interpreter, platform, threads, processes, git commit."""
from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("sast-deploy", "torch", "numpy", "tonic", "safetensors", "lava-nc", "onnxruntime")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_state(folder: Path) -> dict | None:
    """Commit and dirty flag of the checkout holding `folder`, or None outside git."""
    def git(*args):
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": head.stdout.strip(), "dirty": dirty}


def environment(device: str, world_size: int = 1, backend: str | None = None) -> dict:
    """`world_size` processes (torchrun) talking over `backend` (gloo, nccl; None for one)."""
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "torch_build": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "world_size": world_size,
        "distributed_backend": backend,
        "git": git_state(Path(__file__).resolve().parent),
        "argv": sys.argv,
    }
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env
