"""Training: SAM/ASAM (sam.py), one iteration (step.py), the run loop with checkpoints and resume
(trainer.py), its configuration and controls."""
from .config import TrainConfig
from .sam import SAM, perturbation
from .trainer import load_data, resume, train

__all__ = ["TrainConfig", "SAM", "perturbation", "load_data", "resume", "train"]
