"""The Loihi-style fixed-point grid of one layer (docs/deployment.md, "Fixed point"): plain numpy.

One place decides how a layer's float parameters map to integers; post-training quantization
(export/quantize.py) and quantization-aware training (model/qat.py) both call it, so a QAT model
and its export use the same integers.

With S = 2^scale_exp integer membrane units per float unit and c = input_scale (255 for graded
first-layer input encoded as rint(255 x), else 1):

    w = w_int 2^(weight_exp + 6) c / S     w_int = 2 m, m in [-127, 127]   (even: Lava's Dense drops
                                                                           the lowest bit of mixed-sign weights)
    b = bias_mant 2^bias_exp / S           bias_mant in [-4095, 4095], bias_exp in 0..7
    theta = vth 2^6 / S                    vth in [1, 65536]   (17-bit field; one bit kept as headroom)
    alpha = (4096 - dv) / 4096             dv in 0..4095

S is a power of two, so every de-quantized value is dyadic and float sums of them are exact.
`choose_grid` picks, in this order: the finest weight step at which no weight clips and the
worst-case input sum of any neuron stays below 2^17 (so `a_in << 6` never leaves the 24-bit
current); then the largest weight_exp (dense only; Lava's Conv ignores it) whose S keeps vth and
the bias in range: a larger S gives thresholds and biases more resolution at the same weight step.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

GRADED_LEVELS = 255  # graded input is encoded as rint(255 x)
ACT_SHIFT = 6  # Lava shifts the synaptic input and the threshold left by 6 bits
MANTISSA_MAX = 127  # |m|, w_int = 2 m
BIAS_MANT_MAX = 4095
BIAS_EXP_MAX = 7
VTH_MAX = 2**16  # vth << 6 stays <= 2^22: half of the 24-bit state above the threshold is headroom
WEIGHT_EXP_MAX = 7
A_IN_LIMIT = 2**17  # |a_in| < 2^17  <=>  |a_in << 6| < 2^23: Lava's 24-bit current never wraps
DECAY_UNITY = 4096
DV_MAX = 4095
STATE_MAX = 2**23 - 1


@dataclass(frozen=True)
class Grid:
    """The fixed-point grid of one layer."""

    scale_exp: int  # S = 2^scale_exp
    weight_exp: int
    bias_exp: int
    dv: int
    input_scale: int = 1

    @property
    def scale(self) -> float:
        return math.ldexp(1.0, self.scale_exp)

    @property
    def weight_step(self) -> float:
        """Float weight per unit of m (w_int = 2 m)."""
        return self.input_scale * math.ldexp(1.0, self.weight_exp + ACT_SHIFT + 1 - self.scale_exp)

    @property
    def integer_weight_step(self) -> float:
        """Weight per unit of m applied to the integer-encoded input (weight_step / input_scale): dyadic."""
        return math.ldexp(1.0, self.weight_exp + ACT_SHIFT + 1 - self.scale_exp)

    @property
    def theta_step(self) -> float:
        return math.ldexp(1.0, ACT_SHIFT - self.scale_exp)

    @property
    def bias_step(self) -> float:
        return math.ldexp(1.0, self.bias_exp - self.scale_exp)

    @property
    def alpha(self) -> float:
        return (DECAY_UNITY - self.dv) / DECAY_UNITY

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Grid":
        return cls(**{k: int(d[k]) for k in ("scale_exp", "weight_exp", "bias_exp", "dv", "input_scale")})


@dataclass
class LayerIntegers:
    """A layer's parameters on its grid, plus how many values had to be clipped."""

    w_int: np.ndarray  # int64, even
    bias_mant: np.ndarray  # int64, same shape as the bias given
    vth: np.ndarray  # int64, same shape as theta
    clipped: dict  # name -> number of values clipped to the range


def input_scale(layer_index: int, input_norm: str) -> int:
    """c of a layer: 255 for the first layer of a network with graded input (not "binary"), else 1."""
    return GRADED_LEVELS if layer_index == 0 and input_norm != "binary" else 1


def decay_dv(alpha: float) -> int:
    """dv = rint(4096 (1 - alpha)), within 0..4095 (alpha = 0 becomes 1/4096)."""
    return int(np.clip(np.rint(DECAY_UNITY * (1.0 - alpha)), 0, DV_MAX))


def _mantissas(weight: np.ndarray, step: float) -> np.ndarray:
    return np.rint(weight / step)


def worst_case_input(w_int: np.ndarray, input_scale: int) -> int:
    """Largest |sum_j w_int[i, j] z_j| any neuron can receive, z_j in [0, input_scale]."""
    rows = w_int.reshape(w_int.shape[0], -1)
    pos = rows.clip(min=0).sum(1)
    neg = pos - rows.sum(1)  # sum of |negative weights|
    return int(max(pos.max(initial=0), neg.max(initial=0)) * input_scale)


def _bias_exp(bias: np.ndarray, scale: float) -> int | None:
    """Smallest bias_exp whose mantissas fit, or None."""
    bmax = float(np.abs(bias).max(initial=0.0)) * scale
    for e in range(BIAS_EXP_MAX + 1):
        if np.rint(bmax / 2**e) <= BIAS_MANT_MAX:
            return e
    return None


def choose_grid(kind: str, weight, bias, theta, alpha: float, input_scale: int = 1) -> Grid:
    """The grid of one layer (see the module docstring for the rule)."""
    weight, bias, theta = (np.asarray(a, dtype=np.float64) for a in (weight, bias, theta))
    if not all(np.isfinite(a).all() for a in (weight, bias, theta)):
        raise ValueError("cannot quantize non-finite parameters")
    dv = decay_dv(alpha)
    wmax = float(np.abs(weight).max(initial=0.0))
    tmax = max(float(theta.max(initial=0.0)), 1e-30)
    if wmax > 0:  # start one step finer than the first candidate that could fit, then coarsen
        j = math.floor(math.log2(wmax / (input_scale * MANTISSA_MAX))) - 1
    else:  # no weights to fit: start where theta alone sets S (weight_exp 0)
        j = ACT_SHIFT + 1 - math.floor(math.log2(VTH_MAX * 2**ACT_SHIFT / tmax))
    exps = range(WEIGHT_EXP_MAX, -1, -1) if kind == "dense" else (0,)
    for _ in range(200):
        step = input_scale * math.ldexp(1.0, j)
        if np.rint(wmax / step) <= MANTISSA_MAX:  # rint is monotonic and odd: the largest |w| decides
            acc = worst_case_input(2 * _mantissas(weight, step), input_scale)
            for we in exps:
                scale_exp = we + ACT_SHIFT + 1 - j
                scale = math.ldexp(1.0, scale_exp)
                if acc * 2**we >= A_IN_LIMIT or np.rint(tmax * scale / 2**ACT_SHIFT) > VTH_MAX:
                    continue
                be = _bias_exp(bias, scale)
                if be is not None:
                    return Grid(scale_exp, we, be, dv, input_scale)
        j += 1
    raise ValueError("no fixed-point grid fits these parameters")


def quantize(grid: Grid, weight, bias, theta) -> LayerIntegers:
    """Round weights, biases and thresholds onto `grid` (round half to even, then clip)."""
    m = _mantissas(np.asarray(weight, dtype=np.float64), grid.weight_step)
    bm = np.rint(np.asarray(bias, dtype=np.float64) / grid.bias_step)
    vt = np.rint(np.asarray(theta, dtype=np.float64) / grid.theta_step)
    clipped = {"weight": int((np.abs(m) > MANTISSA_MAX).sum()), "bias": int((np.abs(bm) > BIAS_MANT_MAX).sum()),
               "theta": int(((vt < 1) | (vt > VTH_MAX)).sum())}
    return LayerIntegers(
        w_int=2 * np.clip(m, -MANTISSA_MAX, MANTISSA_MAX).astype(np.int64),
        bias_mant=np.clip(bm, -BIAS_MANT_MAX, BIAS_MANT_MAX).astype(np.int64),
        vth=np.clip(vt, 1, VTH_MAX).astype(np.int64),
        clipped=clipped,
    )


def dequantize(grid: Grid, w_int, bias_mant, vth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The float parameters the integers stand for: (weight per unit input, bias, theta)."""
    return (np.asarray(w_int, dtype=np.float64) / 2 * grid.weight_step,
            np.asarray(bias_mant, dtype=np.float64) * grid.bias_step,
            np.asarray(vth, dtype=np.float64) * grid.theta_step)
