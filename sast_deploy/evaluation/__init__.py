"""Evaluation: accuracy per spike mode, transfer gap, theory constants, activity.

Imported lazily: `evaluation.activity` is numpy only and the hardware simulators use it without torch.
"""
__all__ = ["predict", "transfer_gap", "theory_constants"]


def __getattr__(name):
    if name in ("predict", "transfer_gap"):
        from . import accuracy

        return getattr(accuracy, name)
    if name == "theory_constants":
        from .theory import theory_constants

        return theory_constants
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
