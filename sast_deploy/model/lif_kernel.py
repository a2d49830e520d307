"""The LIF recurrence as compiled C loops (_lif_kernel.c), for `LIFRecurrence` on CPU.

Why: the recurrence in torch is ~9 small operations per time step forward and ~9 backward, each a
few microseconds of dispatch whatever it computes; it cannot use a second thread, while the GEMMs
around it halve (bench/README.md, train_step). Every element (batch x neuron) is independent over
time, so the kernel runs one parallel region over the element range for the whole forward and one
for the whole backward, each thread looping over time for its block of elements.

How: _lif_kernel.c (shipped as package data) is compiled on first use with the system C compiler
($CC, else `cc`): `-O3 -ffp-contract=off -fopenmp -shared -fPIC`. -ffp-contract=off keeps every
multiply and add a separate IEEE operation as in torch's separate ops (no FMA contraction), and
-ffast-math is never used: the forward values equal the torch loop's bit for bit. The library is
cached in the cache directory ($SAST_DEPLOY_CACHE, else ~/.cache/sast-deploy) under a name keyed by
a hash of the source, the flags, the compiler's identity and the machine type, written to a
temporary file and renamed into place (atomic: processes compiling at once never load half a
file), and loaded with ctypes. The OpenMP runtime is the one torch already loaded (libgomp.so.1);
threads = torch.get_num_threads(). A plain C file compiles in well under a second; a torch C++
extension (torch/extension.h) would take about a minute per fresh machine and is not needed for
raw loops over data pointers.

What runs where:
- STE forward and fast-sigmoid forward: one call for all T steps.
- arctan-surrogate forward: atan has no short exact C equivalent (libm's scalar atan is ~20 ns an
  element and not torch's vectorized atan, whose results it would not match bit for bit), so each
  step stays a hybrid: one C call (finish the previous step's sigma, the LIF update, the margin,
  k x) and torch.atan in place. The values are torch's, bit for bit.
- backward, both surrogates and modes: one call for all T steps; sigma' is rational and computed as
  Surrogate.grad does (reciprocal, then the constant); dtheta's sum over the batch stays in torch.
  Torch's vectorised `addcmul` and `add(a, b, alpha=)` round a multiply-add once (FMA) on CPUs that
  have it and twice elsewhere, so the library holds both roundings (compiled with -mfma where torch
  runs its AVX2/AVX-512 kernels) and `load` keeps the one whose gradients equal the torch loop's bit
  for bit on a probe (`gradients_exact()`; on this project's machines: the fused one, exact). Were
  neither exact, the two-rounding one runs and gradients agree to rounding (~1 ulp per step).

Fallback (None from `load`, the torch loop runs): SAST_DEPLOY_LIF_KERNEL=0, no compiler or a
failed compile (warned once per process), and tensors the kernel does not take (CUDA,
dtypes other than float32/float64, mixed dtypes): see `usable`. A non-contiguous current or
incoming gradient is copied to a contiguous one first; a threshold of another shape than the
neurons' (anything that broadcasts) is expanded to one step's elements.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from importlib import resources
from pathlib import Path

import torch

SOURCE = "_lif_kernel.c"
FLAGS = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC", "-std=c99")
# torch's CPU kernels use fused multiply-adds from AVX2 up: so does lif_backward_fused, inline
_FMA_CAPABILITIES = ("AVX2", "AVX512")
ENV_SWITCH = "SAST_DEPLOY_LIF_KERNEL"
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}
_P, _I64, _D, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
_ARGTYPES = {
    "lif_forward": [_I64, _I64, _I64, _P, _P, _D, _D, _INT, _P, _P, _INT],
    "lif_arctan_step": [_I64, _I64, _P, _P, _D, _D, _P, _P, _P, _P, _INT],
    "lif_backward": [_I64, _I64, _I64, _P, _P, _P, _P, _D, _D, _D, _INT, _P, _P, _INT],
    "lif_backward_fused": [_I64, _I64, _I64, _P, _P, _P, _P, _D, _D, _D, _INT, _P, _P, _INT],
}

_lock = threading.Lock()
_loaded: dict | None = None  # dtype -> {name: function}; "backward" is the variant `load` chose
_exact = False  # whether that variant's gradients equal the torch loop's bit for bit
_tried = False


def enabled() -> bool:
    """False when SAST_DEPLOY_LIF_KERNEL=0 (or false/off/no): the torch loop then runs everywhere."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def cache_dir() -> Path:
    """The package's cache directory: $SAST_DEPLOY_CACHE, else ~/.cache/sast-deploy."""
    from ..data.frames import cache_dir as frames_cache_dir
    return frames_cache_dir()


def _compiler() -> list[str]:
    return (os.environ.get("CC") or "cc").split()


def flags() -> tuple[str, ...]:
    """Compiler flags: FLAGS, plus -mfma on x86 CPUs where torch runs its AVX2/AVX-512 kernels."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return FLAGS + (("-mfma",) if x86 and torch.backends.cpu.get_cpu_capability() in _FMA_CAPABILITIES else ())


def _library_path(source: bytes, cc: list[str]) -> Path:
    """Where the library for this source, compiler and flags lives in the cache."""
    exe = shutil.which(cc[0]) or cc[0]
    try:
        ident = subprocess.run([*cc, "--version"], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        ident = b""
    h = hashlib.sha256()
    for part in (source, " ".join(flags()).encode(), " ".join([exe, *cc[1:]]).encode(), ident,
                 platform.machine().encode(), platform.system().encode()):
        h.update(part)
        h.update(b"\0")
    return cache_dir() / f"lif_kernel-{h.hexdigest()[:16]}.so"


def _compile(source: bytes, cc: list[str], path: Path) -> None:
    """Compile into a temporary file beside `path`, then rename it into place (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lif_kernel-", dir=path.parent) as tmp:
        src = Path(tmp) / SOURCE  # compiled from a path of its own: the file includes itself
        src.write_bytes(source)
        out = Path(tmp) / path.name
        proc = subprocess.run([*cc, *flags(), str(src), "-o", str(out), "-lm"], capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"{' '.join(cc)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        os.replace(out, path)


def _bind(lib: ctypes.CDLL) -> dict:
    if lib.lif_kernel_abi() != 1:
        raise RuntimeError("unexpected kernel ABI")
    table = {}
    for dtype, sfx in _DTYPES.items():
        table[dtype] = {}
        for name, argtypes in _ARGTYPES.items():
            fn = getattr(lib, f"{name}_{sfx}")
            fn.argtypes, fn.restype = argtypes, None
            table[dtype][name] = fn
    return table


def _probe_backward(table: dict) -> bool:
    """Point every dtype's "backward" at the variant whose gradients equal the torch loop's bit for bit
    on a small random probe (both surrogates, a block tail); the two-rounding one when neither does.
    Returns whether the choice is exact."""
    from .lif import torch_backward  # the torch loop: lif imports this module at its top
    from .surrogates import SURROGATES, Surrogate

    exact = True
    gen = torch.Generator().manual_seed(0)
    for dtype, fns in table.items():
        T, B, N = 6, 3, 37
        margins = torch.randn(T, B, N, generator=gen, dtype=dtype)
        spikes = (margins > 0).to(dtype)
        grad = torch.randn(T, B, N, generator=gen, dtype=dtype)
        theta = torch.rand(N, generator=gen, dtype=dtype) + 0.5
        chosen = None
        for name in ("lif_backward_fused", "lif_backward"):
            kernel = {dtype: {**fns, "backward": fns[name]}}
            if all(torch.equal(a, b) for surrogate in (Surrogate(n, 2.0) for n in SURROGATES)
                   for a, b in zip(backward(kernel, grad, margins, spikes, theta, 0.9, surrogate, True, 1),
                                   torch_backward(grad, list(margins.unbind(0)), spikes, theta, 0.9,
                                                  surrogate.grad, True))):
                chosen = name
                break
        fns["backward"] = fns[chosen or "lif_backward"]
        exact = exact and chosen is not None
    return exact


def gradients_exact() -> bool:
    """Whether the loaded kernel's gradients equal the torch loop's bit for bit (`load` probes it)."""
    return load() is not None and _exact


def load() -> dict | None:
    """The kernel's functions by dtype, compiling on first use; None when disabled or unavailable
    (a failed compile is warned about once per process and not retried)."""
    global _loaded, _tried, _exact
    if not enabled():
        return None
    if _tried:
        return _loaded
    with _lock:
        if _tried:
            return _loaded
        try:
            source = resources.files(__package__).joinpath(SOURCE).read_bytes()
            cc = _compiler()
            path = _library_path(source, cc)
            if not path.is_file():
                _compile(source, cc, path)
            table = _bind(ctypes.CDLL(str(path)))
            _exact = _probe_backward(table)
            _loaded = table
        except Exception as exc:  # no compiler, a failed compile, an unloadable library
            _loaded = None
            warnings.warn(f"LIF kernel unavailable, using the torch loop instead: {exc}", RuntimeWarning,
                          stacklevel=3)
        _tried = True
        return _loaded


def reset() -> None:
    """Forget the loaded (or failed) kernel: the next `load` tries again (for tests)."""
    global _loaded, _tried, _exact
    with _lock:
        _loaded, _tried, _exact = None, False, False


def usable(current: torch.Tensor, theta: torch.Tensor, surrogate_name: str) -> bool:
    """Whether the kernel takes these tensors (before loading it): CPU, float32/float64 alike, a
    surrogate it knows, a theta that broadcasts against one step."""
    return (enabled() and current.device.type == "cpu" and theta.device.type == "cpu"
            and current.dtype in _DTYPES and theta.dtype == current.dtype and current.dim() >= 2
            and surrogate_name in ("arctan", "fast-sigmoid")
            and theta.dim() <= current.dim() - 1 and current.numel() > 0)


def _theta_layout(theta: torch.Tensor, step_shape: torch.Size) -> tuple[torch.Tensor, int]:
    """theta as a contiguous array of period P along a step's E elements (theta[e % P])."""
    neuron_shape = step_shape[1:]
    if tuple(theta.shape) == tuple(neuron_shape):
        return theta.detach().contiguous(), max(theta.numel(), 1)
    full = theta.detach().expand(step_shape).contiguous()  # any other broadcastable shape
    return full, full.numel()


def forward(kernel: dict, current: torch.Tensor, theta: torch.Tensor, alpha: float, surrogate, ste: bool,
            threads: int, step_threads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes, margins), both [T, B, *shape], from a contiguous current. `threads` for the whole-
    sequence call (STE, fast-sigmoid), `step_threads` for the per-step calls of the arctan forward."""
    fns = kernel[current.dtype]
    T, E = current.shape[0], current[0].numel()
    th, P = _theta_layout(theta, current.shape[1:])
    spikes, margins = torch.empty_like(current), torch.empty_like(current)
    if ste or surrogate.name == "fast-sigmoid":
        fns["lif_forward"](T, E, P, current.data_ptr(), th.data_ptr(), alpha, surrogate.k, int(not ste),
                           spikes.data_ptr(), margins.data_ptr(), threads)
        return spikes, margins
    step, size = fns["lif_arctan_step"], E * current.element_size()
    cur, sp, mg, thp = current.data_ptr(), spikes.data_ptr(), margins.data_ptr(), th.data_ptr()
    u = torch.zeros(E, dtype=current.dtype)
    up, prev = u.data_ptr(), None
    for t, row in enumerate(spikes.unbind(0)):
        off = t * size
        step(E, P, cur + off, thp, alpha, surrogate.k, up, prev, mg + off, sp + off, step_threads)
        torch.atan(row, out=row)  # torch's own atan: sigma's values stay the torch loop's
        prev = sp + off
    step(E, P, None, thp, alpha, surrogate.k, up, prev, None, None, step_threads)
    return spikes, margins


def backward(kernel: dict, grad: torch.Tensor, margins: torch.Tensor, spikes: torch.Tensor, theta: torch.Tensor,
             alpha: float, surrogate, want_theta: bool, threads: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(d_current, d_theta or None) by BPTT over the saved margins and spikes."""
    fns = kernel[spikes.dtype]
    grad = grad.contiguous()
    T, E = spikes.shape[0], spikes[0].numel()
    th, P = _theta_layout(theta, spikes.shape[1:])
    fast = surrogate.name == "fast-sigmoid"
    c = surrogate.k / 2.0 if fast else surrogate.k / math.pi  # Surrogate.grad's constants
    d_current = torch.empty_like(spikes)
    neg = torch.empty_like(spikes[0]) if want_theta else None  # -dtheta per element, summed below
    fns["backward"](T, E, P, grad.data_ptr(), margins.data_ptr(), spikes.data_ptr(), th.data_ptr(), alpha,
                        surrogate.k, c, int(fast), d_current.data_ptr(), None if neg is None else neg.data_ptr(),
                        threads)
    d_theta = neg.sum_to_size(theta.shape).neg_() if want_theta else None
    return d_current, d_theta
