"""The LIF SNN: surrogates, the LIF layer (surrogate | hard | ste), specs, the torch network, model files."""
from .checkpoint import load_model, save_model
from .lif import LIF, MODES, heaviside, lif_step, spike_function
from .network import SNN, Affine
from .spec import PRESETS, LayerSpec, NetworkSpec, preset
from .surrogates import SURROGATES, Surrogate

__all__ = [
    "load_model", "save_model", "LIF", "MODES", "heaviside", "lif_step", "spike_function", "SNN",
    "Affine", "PRESETS", "LayerSpec", "NetworkSpec", "preset", "SURROGATES", "Surrogate",
]
