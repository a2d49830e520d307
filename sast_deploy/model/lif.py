"""The paper's LIF neuron (DESIGN §3): leak alpha, per-neuron threshold theta, reset by subtraction.

    u_t = alpha * u_{t-1} + I_t - theta * s_{t-1}      (reset un-decayed, applied one step later)
    s_t = H(u_t - theta)         hard:      spike iff u_t > theta (strict)
        = sigma(u_t - theta)     surrogate: smooth, exact gradient
        = H(u_t - theta)         ste:       hard forward, sigma' backward

`lif_step` is the single definition of one step. `integrate` loops it over time with autograd
recording every operation: the reference. `LIFRecurrence` runs the same recurrence without a graph
and backpropagates through time by hand: the fast path of training, checked against the reference
in tests/test_lif_fused.py (values, gradients, spikes). On CPU it runs compiled loops
(lif_kernel.py, _lif_kernel.c) that evaluate `lif_step`'s operations in the same order and dtype;
elsewhere, or where no C compiler works, it loops `lif_step` in torch.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from . import lif_kernel
from .surrogates import Surrogate

MODES = ("surrogate", "hard", "ste")


def heaviside(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """H(x) = 1 if x > 0 else 0 (strict: a potential exactly at threshold does not spike); written
    into `out` when given."""
    # straight into a tensor of x's dtype: on CPU, (x > 0).to(dtype) costs ~5x more (a bool tensor, then a cast)
    return torch.gt(x, 0, out=torch.empty_like(x) if out is None else out)


class _STEHeaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, surrogate):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.grad(x), None


def spike_function(mode: str, surrogate: Surrogate) -> Callable[[torch.Tensor], torch.Tensor]:
    """The spike nonlinearity s = f(u - theta) for a forward mode."""
    if mode == "surrogate":
        return surrogate
    if mode == "hard":
        return heaviside
    if mode == "ste":
        return lambda x: _STEHeaviside.apply(x, surrogate)
    raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")


def lif_step(u, s_prev, current, alpha, theta, spike):
    """One LIF step: returns (u_t, s_t) from (u_{t-1}, s_{t-1}, I_t)."""
    u = alpha * u + current - theta * s_prev
    return u, spike(u - theta)


def integrate(current: torch.Tensor, step, return_potentials: bool = False):
    """Run `step(u, s, I_t) -> (u_t, s_t)` over time from the zero state (one sequence per call):
    spikes [T, B, *shape], and potentials when asked. Quantization-aware training reuses this loop
    with its own step (model/qat.py)."""
    u = torch.zeros_like(current[0])
    s = torch.zeros_like(current[0])
    spikes, potentials = [], []
    for t in range(current.shape[0]):
        u, s = step(u, s, current[t])
        spikes.append(s)
        if return_potentials:
            potentials.append(u)
    out = torch.stack(spikes)
    return (out, torch.stack(potentials)) if return_potentials else out


# Per-step tensors up to this size gain nothing from intra-op threads, only synchronisation: VML
# functions (atan) split from 2048 elements, and with other jobs on the cores every parallel
# region waits for a descheduled thread (atan on [64, 256]: 6 us at 1 thread; 1.5 ms at 2 threads
# on 2 busy cores). Above it, per-step work is large enough to share. The compiled kernel's per-step
# calls (the arctan forward) follow the same rule; its whole-sequence calls use every thread.
SERIAL_STEP_ELEMENTS = 1 << 16


@contextlib.contextmanager
def _serial_if_small(step: torch.Tensor):
    """One intra-op thread while the recurrence runs over CPU steps of at most SERIAL_STEP_ELEMENTS."""
    threads = torch.get_num_threads()
    if step.device.type != "cpu" or step.numel() > SERIAL_STEP_ELEMENTS or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class LIFRecurrence(torch.autograd.Function):
    """spikes = LIFRecurrence.apply(current, theta, alpha, surrogate, ste): the whole recurrence as
    one autograd node, for training. Forward: the operations of `lif_step` over time without a graph
    (those `integrate` runs, each rounded in the tensor's dtype, so the same values bit for bit),
    each spike written straight into the output. Backward: BPTT by hand, with
    sigma'_t = surrogate.grad(x_t) at the margins x_t = u_t - theta in both modes (ste: the forward
    spikes are H):

        a_t    = (g_t - theta du_{t+1}) sigma'_t         g_t - theta du_{t+1} = dL/ds_t (s_t resets u_{t+1})
        du_t   = a_t + alpha du_{t+1}                    du_{T+1} = 0;  dI_t = du_t
        dtheta = -sum_{t, batch} (a_t + du_{t+1} s_t)    threshold term, reset term

    It keeps the margins and its output, where autograd through `integrate` keeps several tensors
    per step. Two implementations of the same formulas:
    - CPU, float32/float64 (the default): compiled C loops (lif_kernel.py), one parallel region over
      the batch x neuron elements for the whole forward and one for the whole backward (each thread
      runs all T steps of its elements), so they use every intra-op thread. The arctan surrogate's
      forward keeps torch's own atan, one call per step between C calls, so its values stay torch's.
      Values are bit-identical to the torch loop in both modes, and so are gradients wherever the
      kernel can round its multiply-adds as torch does (probed on load: `lif_kernel.gradients_exact()`,
      true on this project's x86 machines); elsewhere they agree to rounding (~1 ulp per step).
    - CUDA, other dtypes, SAST_DEPLOY_LIF_KERNEL=0, or no working C compiler (warned once): `lif_step`
      looped in torch, ~9 operations per step on [B, *shape] tensors forward and ~9 backward, in
      place where it can.
    Results never depend on the thread count. First-order only: gradients of gradients need
    `LIF(fused=False)`.
    """

    @staticmethod
    def forward(ctx, current, theta, alpha, surrogate, ste):
        ctx.alpha, ctx.surrogate = alpha, surrogate
        kernel = lif_kernel.load() if lif_kernel.usable(current, theta, surrogate.name) else None
        if kernel is not None:  # compiled loops (lif_kernel.py): the same forward values, bit for bit
            threads = torch.get_num_threads()
            step_threads = 1 if current[0].numel() <= SERIAL_STEP_ELEMENTS else threads
            with _serial_if_small(current[0]):
                spikes, margins = lif_kernel.forward(kernel, current.contiguous(), theta, alpha, surrogate, ste,
                                                     threads, step_threads)
            ctx.save_for_backward(spikes, theta, margins)
            ctx.kernel = kernel
            return spikes
        spikes, margins = torch.empty_like(current), []
        u = s = torch.zeros_like(current[0])
        with _serial_if_small(u):
            for i, row in zip(current.unbind(0), spikes.unbind(0)):
                def spike(x):  # called by lif_step within this iteration: `row` is this step's
                    margins.append(x)
                    return heaviside(x, row) if ste else surrogate(x, row)
                u, s = lif_step(u, s, i, alpha, theta, spike)
        ctx.save_for_backward(spikes, theta)
        ctx.margins = margins  # intermediate tensors: kept on ctx, freed with the graph
        ctx.kernel = None
        return spikes

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        want_theta = ctx.needs_input_grad[1]
        if ctx.kernel is not None:
            spikes, theta, margins = ctx.saved_tensors
            d_current, d_theta = lif_kernel.backward(ctx.kernel, grad, margins, spikes, theta, ctx.alpha,
                                                     ctx.surrogate, want_theta, torch.get_num_threads())
            return (d_current if ctx.needs_input_grad[0] else None), d_theta, None, None, None
        spikes, theta = ctx.saved_tensors
        d_current, d_theta = torch_backward(grad, ctx.margins, spikes, theta, ctx.alpha, ctx.surrogate.grad,
                                            want_theta)
        return (d_current if ctx.needs_input_grad[0] else None), d_theta, None, None, None


def torch_backward(grad, margins, spikes, theta, alpha, sigma_grad, want_theta):
    """LIFRecurrence's backward as torch operations (the fallback, and the kernel's reference):
    (d_current, d_theta or None) from the incoming gradient, the margins (a list per step) and the spikes."""
    d_current = torch.empty_like(spikes)
    d_theta = torch.zeros_like(spikes[0]) if want_theta else None  # -dtheta, per batch row until the end
    du = torch.zeros_like(spikes[0])
    steps = zip(grad.unbind(0), margins, spikes.unbind(0), d_current.unbind(0))
    with _serial_if_small(du):
        for g, x, s, d in reversed(list(steps)):
            a = torch.addcmul(g, theta, du, value=-1).mul_(sigma_grad(x))
            if want_theta:
                d_theta.add_(a).addcmul_(du, s)
            du = torch.add(a, du, alpha=alpha, out=d)
    d_theta = d_theta.sum_to_size(theta.shape).neg_() if want_theta else None
    return d_current, d_theta


class LIF(nn.Module):
    """A layer of LIF neurons over a time-major input current [T, B, *shape] -> spikes [T, B, *shape].

    theta (per neuron) is learned and kept >= theta_min by `project_()`; alpha is fixed. State
    starts at zero for every sequence, so each call is one independent sequence. Surrogate and STE
    modes run `LIFRecurrence` unless `fused` is False or potentials are asked for (then autograd
    records `integrate`, which also supports higher-order gradients); hard mode always runs
    `integrate` (it has no gradient to speed up). On CPU `LIFRecurrence` runs compiled loops
    (model/lif_kernel.py, compiled with the system C compiler on first use and cached; switched off
    by SAST_DEPLOY_LIF_KERNEL=0).
    """

    def __init__(self, shape, alpha: float, theta_init: float, surrogate: Surrogate, theta_min: float = 0.05,
                 fused: bool = True):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        if theta_init <= 0:
            raise ValueError(f"theta_init must be positive, got {theta_init}")
        self.shape = tuple(shape)
        self.alpha = float(alpha)
        self.theta_min = float(theta_min)
        self.surrogate = surrogate
        self.mode = "surrogate"
        self.fused = fused
        self.theta = nn.Parameter(torch.full(self.shape, float(theta_init)))

    def extra_repr(self) -> str:
        return (f"shape={self.shape}, alpha={self.alpha}, mode={self.mode}, surrogate={self.surrogate}, "
                f"fused={self.fused}")

    def forward(self, current: torch.Tensor, return_potentials: bool = False):
        if self.fused and self.mode in ("surrogate", "ste") and not return_potentials:
            return LIFRecurrence.apply(current, self.theta, self.alpha, self.surrogate, self.mode == "ste")
        spike = spike_function(self.mode, self.surrogate)
        return integrate(current, lambda u, s, i: lif_step(u, s, i, self.alpha, self.theta, spike), return_potentials)

    @torch.no_grad()
    def project_(self) -> None:
        """Keep thresholds positive: theta <- max(theta, theta_min)."""
        self.theta.clamp_(min=self.theta_min)
