"""argparse value types shared by the subcommands: comma-separated lists."""
from __future__ import annotations

import argparse


def float_list(text: str) -> list[float]:
    """'0,0.1,0.2' -> [0.0, 0.1, 0.2]."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def int_list(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def choice_list(choices):
    """A type for comma-separated names from `choices` ('none' or '' for an empty list)."""
    def parse(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip() and v.strip() != "none"]
        bad = [n for n in names if n not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; choose from {', '.join(choices)} (or none)")
        return names
    return parse
