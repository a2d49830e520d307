"""Theory diagnostics of a trained network on held-out examples (DESIGN §5, paper Sections III-IV).

Everything is measured in surrogate mode (the network SAST trains), in float64, with the model in
eval mode, on a fixed subset of n held-out examples; w is the vector of all trainable parameters and
L(w) = 1/n sum_i l_i(w) the mean cross-entropy.

    SAM gap        L(w + eps) - L(w),  eps = r g / ||g||, g = grad L(w)  (SAM's first-order eps*, ||eps|| = r)
    per example    ||grad_w l_i|| = ||J_i^T (softmax(o_i) - e_{y_i})||  and  ||grad_x l_i||
    secant         beta_hat(r) = max_j ||grad L(w + d_j) - grad L(w)|| / ||d_j||,
                   d_j = r u_j / ||u_j||, u_j ~ N(0, I), j = 1..m (the same m directions for every r)
    bound          beta(r) >= sup over ||dw|| <= r of ||hess L(w + dw)||   (`beta_bound`, docs/theory.md)
    conditioning   sigma_min(J_i J_i^T), J_i = d o_i / d w in R^{C x P}, per example
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from tqdm.auto import tqdm

from ..data.frames import FrameSet
from ..model.network import SNN
from ..model.spec import op_output_shape
from .stats import summarize
from .theory import theory_constants


class Objective:
    """L(w) and grad L(w) of `model` (surrogate mode) on fixed inputs x [T, B, ...] and labels y,
    as functions of the flat parameter vector w; `restore()` puts the original weights back."""

    def __init__(self, model: SNN, x: torch.Tensor, y: torch.Tensor):
        self.model, self.x, self.y = model, x, y
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.w0 = parameters_to_vector(self.params).detach().clone()

    def _set(self, w: torch.Tensor) -> None:
        vector_to_parameters(w.detach().clone(), self.params)  # clone: params must not alias w

    def loss(self, w: torch.Tensor) -> float:
        self._set(w)
        with torch.no_grad(), self.model.in_mode("surrogate"):
            return float(F.cross_entropy(self.model(self.x), self.y))

    def grad(self, w: torch.Tensor) -> torch.Tensor:
        self._set(w)
        with self.model.in_mode("surrogate"):
            loss = F.cross_entropy(self.model(self.x), self.y)
            return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, self.params)])

    def restore(self) -> None:
        self._set(self.w0)


def sam_gap(obj: Objective, radii) -> dict[str, float]:
    """L(w + r g/||g||) - L(w) for each radius r (keys are the radii as strings)."""
    g = obj.grad(obj.w0)
    base = obj.loss(obj.w0)
    unit = g / g.norm().clamp_min(1e-300)
    gaps = {f"{r:g}": obj.loss(obj.w0 + r * unit) - base for r in radii}
    obj.restore()
    return gaps


def secant_smoothness(grad_fn, w0: torch.Tensor, radii, directions: int = 8, seed: int = 0) -> dict:
    """beta_hat(r) = max_j ||grad_fn(w0 + d_j) - grad_fn(w0)|| / ||d_j|| over `directions` random
    d_j of norm r, for every r in `radii`; `beta_hat` is the largest over all radii."""
    gen = torch.Generator().manual_seed(int(seed))
    u = torch.randn((directions, w0.numel()), generator=gen, dtype=torch.float64).to(w0.dtype)
    u = u / u.norm(dim=1, keepdim=True)
    g0 = grad_fn(w0)
    ratios = [[float((grad_fn(w0 + r * d) - g0).norm()) / r for d in u] for r in radii]
    per_radius = [max(rs) for rs in ratios]
    return {"radii": [float(r) for r in radii], "directions": int(directions), "beta_hat_per_radius": per_radius,
            "beta_hat": max(per_radius), "ratios": ratios}


def logit_jacobian(model: SNN, x: torch.Tensor, params) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits o [C] of one example x [T, 1, ...] and J = d o / d w [C, P] (surrogate mode)."""
    with model.in_mode("surrogate"):
        o = model(x)[0]
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(o[c], params, retain_graph=c < len(o) - 1)])
            for c in range(len(o))]
    return o.detach(), torch.stack(rows)


def per_example(model: SNN, x: torch.Tensor, y: torch.Tensor, progress: bool = False) -> dict[str, np.ndarray]:
    """Per example i: ||grad_w l_i||, ||grad_x l_i|| and sigma_min(J_i J_i^T)."""
    params = [p for p in model.parameters() if p.requires_grad]
    gw, smin = [], []
    for i in tqdm(range(x.shape[1]), desc="per-example Jacobians", disable=not progress, leave=False):
        o, J = logit_jacobian(model, x[:, i:i + 1], params)
        residual = torch.softmax(o, 0) - F.one_hot(y[i], len(o)).to(o.dtype)  # d l_i / d o_i
        gw.append(float((J.T @ residual).norm()))  # chain rule: grad_w l_i = J_i^T (p_i - e_y)
        smin.append(float(torch.linalg.eigvalsh(J @ J.T)[0]))  # J J^T is symmetric PSD: eigenvalues = singular values
    xg = x.detach().clone().requires_grad_(True)
    with model.in_mode("surrogate"):
        # the examples do not interact, so the gradient of the summed loss holds every grad_x l_i
        (gx,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    gx_norm = gx.transpose(0, 1).reshape(x.shape[1], -1).norm(dim=1)
    return {"grad_w_norm": np.array(gw), "grad_x_norm": gx_norm.numpy(), "sigma_min_JJt": np.array(smin)}


def _spectral(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.detach().double(), ord=2))


def beta_bound(model: SNN, T: int, radius: float = 0.0) -> dict:
    """Our conservative bound beta >= ||hess_w L|| on the ball ||dw|| <= radius around the current
    weights, in the spirit of the paper's Appendix A (derivation and assumptions: docs/theory.md).

    Per LIF layer l (input norm bound zeta = sqrt(n_in), inputs and spikes in [0, 1]):
        a = ||A||_2, e = weight sensitivity, h = bias sensitivity of the block (conv: sqrt(kh kw) ||K||_F,
        sqrt(kh kw), sqrt(H W); each avgpool(k) divides all three by k)
        gamma = alpha + theta_max B1, S = sum_{k<T} gamma^k, q = max(theta_max B1, 1)
        Lambda = sqrt((S a)^2 + T ((S e zeta)^2 + (S h)^2 + (S q + 1)^2))
        L_l = B1 Lambda,  M_l = B2 Lambda^2 + B1 S (e + 2 B1 Lambda + theta_max B2 Lambda^2)
    composed as L <- L_l max(1, L), M <- M_l max(1, L)^2 + L_l M; readout o = W_o mean_t(s_t) + b_o
    adds L_R = sqrt(||W_o||^2 / T + n_L + 1), M_R = 1/sqrt(T); finally beta = L^2 / 2 + sqrt(2) M.
    Norms, theta_max and ||W_o|| are taken at w plus `radius`. Ops outside {flatten, linear, conv,
    avgpool} get no bound: beta is None and `reason` says why.
    """
    surrogate = model.lifs[0].surrogate
    B1, B2, r = surrogate.B1, surrogate.B2, float(radius)
    L, M = 0.0, 0.0  # the input carries no parameters
    shape, layers = model.spec.input_shape, []
    for i, (spec, layer) in enumerate(zip(model.spec.layers, model.layers)):
        n_in = math.prod(shape)
        a = e = 1.0
        h = 0.0
        for op, module in zip(spec.ops, layer.block):
            kind, out_shape = op["kind"], op_output_shape(op, shape)
            if kind == "linear":
                a, e, h = _spectral(module.weight) + r, 1.0, float(op["bias"])
            elif kind == "conv":
                kk = float(op["kernel"])  # sqrt(kh kw): each input pixel lies in at most kh kw windows
                a = kk * (float(module.weight.detach().double().norm()) + r)
                e, h = kk, math.sqrt(math.prod(out_shape[1:])) * float(op["bias"])
            elif kind == "avgpool":  # ||avgpool_k||_2 = 1/k (each output is the mean of k^2 inputs)
                a, e, h = a / op["kernel"], e / op["kernel"], h / op["kernel"]
            elif kind != "flatten":
                return {"beta": None, "radius": r, "reason": f"layer {i}: no bound derived for {kind!r} ops"}
            shape = out_shape
        theta_max = float(layer.lif.theta.detach().max()) + r
        gamma = layer.lif.alpha + theta_max * B1
        S = float(sum(gamma**k for k in range(T)))
        q = max(theta_max * B1, 1.0)
        zeta = math.sqrt(n_in)
        lam = math.sqrt((S * a) ** 2 + T * ((S * e * zeta) ** 2 + (S * h) ** 2 + (S * q + 1) ** 2))
        L_l = B1 * lam
        M_l = B2 * lam**2 + B1 * S * (e + 2 * B1 * lam + theta_max * B2 * lam**2)
        lift = max(1.0, L)
        L, M = L_l * lift, M_l * lift**2 + L_l * M
        layers.append({"a": a, "e": e, "h": h, "zeta": zeta, "theta_max": theta_max, "gamma": gamma, "S": S,
                       "q": q, "Lambda": lam, "L": L_l, "M": M_l})
    n_L = math.prod(shape)
    L_R = math.sqrt((_spectral(model.readout.weight) + r) ** 2 / T + n_L + 1)
    M_R = 1.0 / math.sqrt(T)
    lift = max(1.0, L)
    L, M = L_R * lift, M_R * lift**2 + L_R * M
    return {"beta": 0.5 * L**2 + math.sqrt(2.0) * M, "radius": r, "L_o": L, "M_o": M, "layers": layers}


def held_out_subset(n_total: int, samples: int, seed: int = 0) -> np.ndarray:
    """A fixed random subset of indices (sorted), the same for every run of a dataset split."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=min(int(samples), n_total), replace=False))


def diagnose(model: SNN, frames: FrameSet, samples: int = 64, sam_radii=(0.05, 0.1, 0.2),
             secant_radii=(1e-3, 1e-2, 1e-1), directions: int = 8, seed: int = 0,
             checkpoints=(), progress: bool = True) -> dict:
    """All diagnostics of `model` on `samples` held-out examples of `frames` (see the module doc).
    `checkpoints` are per-epoch records (metrics.jsonl) holding B1, M_theta_hat and gamma_hat."""
    model = copy.deepcopy(model).double().eval()
    model.mode = "surrogate"
    idx = held_out_subset(len(frames), samples, seed)
    x = torch.from_numpy(frames.frames(idx)).double()
    y = torch.from_numpy(np.asarray(frames.labels[idx]))
    obj = Objective(model, x, y)
    ex = per_example(model, x, y, progress)
    secant = secant_smoothness(obj.grad, obj.w0, secant_radii, directions, seed)
    obj.restore()
    keys = ("B1", "M_theta_hat", "gamma_hat")
    return {
        "samples": len(idx), "split": frames.split, "seed": int(seed),
        "constants": theory_constants(model),
        "constants_per_checkpoint": [{"epoch": c.get("epoch"), **{k: c[k] for k in keys}}
                                     for c in checkpoints if all(k in c for k in keys)],
        "loss": obj.loss(obj.w0),
        "sam_gap": sam_gap(obj, sam_radii),
        **{k: summarize(v) for k, v in ex.items()},
        "secant": secant,
        "beta_bound": beta_bound(model, frames.T, max(secant_radii)),
    }
