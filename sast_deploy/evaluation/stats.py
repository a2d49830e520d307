"""Summaries of a sample of values: mean ± std and median with interquartile range."""
from __future__ import annotations

import math

import numpy as np


def summarize(values) -> dict:
    """n, mean, std (sample std, ddof = 1; 0 for one value), median, q25, q75, iqr = q75 - q25,
    min, max. Non-finite values are left out and counted as `n_nonfinite`; an empty sample gives NaNs."""
    v = np.asarray(list(values), dtype=np.float64).ravel()
    finite = v[np.isfinite(v)]
    out = {"n": int(finite.size), "n_nonfinite": int(v.size - finite.size)}
    if finite.size == 0:
        return {**out, **{k: math.nan for k in ("mean", "std", "median", "q25", "q75", "iqr", "min", "max")}}
    q25, median, q75 = np.percentile(finite, [25, 50, 75])
    return {**out, "mean": float(finite.mean()), "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
            "median": float(median), "q25": float(q25), "q75": float(q75), "iqr": float(q75 - q25),
            "min": float(finite.min()), "max": float(finite.max())}
