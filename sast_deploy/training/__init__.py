"""Training: the trainer and its configuration."""
from .trainer import TrainConfig, train

__all__ = ["TrainConfig", "train"]
