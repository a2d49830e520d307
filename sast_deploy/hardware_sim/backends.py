"""Which simulate backends exist, and a clear refusal for Loihi 2 silicon (DESIGN §6)."""
from __future__ import annotations

from ..errors import BackendError

BACKENDS = ("lava", "emulator", "onnx", "torch")


def require_backend(name: str) -> None:
    """Raise BackendError unless `name` is a backend this toolkit can run here."""
    if name == "loihi2":
        from lava.utils.loihi import is_installed

        have = "is installed, but" if is_installed() else "(not installed) and"
        raise BackendError(
            f"backend loihi2 needs Intel's proprietary lava-loihi {have} a microcoded Loihi 2 neuron "
            "for reset by subtraction with per-neuron thresholds, which sast-deploy does not ship; "
            "use --backend lava --precision fixed for the bit-accurate CPU simulation")
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} (or loihi2)")
