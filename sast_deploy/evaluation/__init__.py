"""Evaluation: accuracy per spike mode, transfer gap, theory constants."""
from .accuracy import predict, transfer_gap
from .theory import theory_constants

__all__ = ["predict", "transfer_gap", "theory_constants"]
