"""sast-deploy: sharpness-aware surrogate training for spiking networks, and hard-spike deployment."""

__version__ = "0.1.0"
