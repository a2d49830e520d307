"""The LIF SNN: surrogates, the LIF layer (surrogate | hard | ste), specs, the torch network, model files.

Names load on first use (PEP 562), so the plain-Python parts (`model.spec`, `model.fixed_point`)
import without torch: the artifact reader and the emulator use them in apps that never train.
"""
import importlib

_EXPORTS = {
    "load_model": "checkpoint", "save_model": "checkpoint", "LIF": "lif", "MODES": "lif", "heaviside": "lif",
    "lif_step": "lif", "spike_function": "lif", "SNN": "network", "Affine": "network", "PRESETS": "spec",
    "LayerSpec": "spec", "NetworkSpec": "spec", "preset": "spec", "SURROGATES": "surrogates", "Surrogate": "surrogates",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
