"""LIFRecurrence (the fused recurrence training runs) against the reference: `lif_step` looped by
`integrate` with autograd recording every operation (LIF(fused=False)), in float64. On CPU it runs
the compiled kernel (model/lif_kernel.py) when one is available; the tests at the end run both of its
paths, kernel and torch loop, against each other and the reference."""
import platform
import warnings

import pytest
import torch

from sast_deploy.model import SNN, LayerSpec, NetworkSpec, Surrogate, lif_kernel
from sast_deploy.model.lif import LIF, LIFRecurrence, heaviside, integrate, lif_step, spike_function

SURROGATES = ["arctan", "fast-sigmoid"]


def lif_pair(shape, name, mode, k=1.7, alpha=0.8, dtype=torch.float64):
    """The same layer twice, fused and reference, with per-neuron thresholds (all different)."""
    lif = LIF(shape, alpha, 0.5, Surrogate(name, k)).to(dtype)
    with torch.no_grad():
        lif.theta.uniform_(0.2, 1.0)
    lif.mode = mode
    ref = LIF(shape, alpha, 0.5, Surrogate(name, k), fused=False).to(dtype)
    ref.load_state_dict(lif.state_dict())
    ref.mode = mode
    return lif, ref


def drive(shape, T=9, B=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    current = (0.8 * torch.randn(T, B, *shape, generator=g, dtype=dtype) + 0.3).requires_grad_()
    weights = torch.randn(T, B, *shape, generator=g, dtype=dtype)  # a loss that weighs every spike differently
    return current, weights


def spikes_and_grads(lif, current, weights):
    s = lif(current)
    return (s, *torch.autograd.grad((s * weights).sum(), (current, lif.theta)))


@pytest.mark.parametrize("shape", [(7,), (2, 3, 3)])
@pytest.mark.parametrize("mode", ["surrogate", "ste"])
@pytest.mark.parametrize("name", SURROGATES)
def test_fused_matches_reference_values_and_gradients(name, mode, shape):
    fused, ref = lif_pair(shape, name, mode)
    current, weights = drive(shape)
    s, d_current, d_theta = spikes_and_grads(fused, current, weights)
    s_ref, d_current_ref, d_theta_ref = spikes_and_grads(ref, current, weights)
    assert torch.equal(s, s_ref)  # the forward runs the same operations: bit for bit
    assert 0 < float(s.detach().mean()) < 1
    torch.testing.assert_close(d_current, d_current_ref, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(d_theta, d_theta_ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", SURROGATES)
def test_fused_gradcheck_float64(name):
    sur = Surrogate(name, 1.3)
    current, _ = drive((5,), T=6, B=3)
    theta = torch.rand(5, dtype=torch.float64).add_(0.2).requires_grad_()
    assert torch.autograd.gradcheck(lambda c, th: LIFRecurrence.apply(c, th, 0.7, sur, False), (current, theta),
                                    eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ste_forward_spikes_identical_to_hard_reference(dtype):
    fused, ref = lif_pair((64,), "arctan", "ste", dtype=dtype)
    ref.mode = "hard"
    current, _ = drive((64,), T=20, B=8, dtype=dtype)
    s = fused(current)
    assert s.sum() > 0 and torch.equal(s, ref(current))
    with torch.no_grad():  # and without a graph (evaluation)
        assert torch.equal(fused(current), s)


def test_heaviside_is_strict_and_writes_into_out():
    x = torch.tensor([-1.0, -0.0, 0.0, 1e-300, 2.0, float("nan")], dtype=torch.float64)
    want = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    assert torch.equal(heaviside(x), want)
    out = torch.full_like(x, 7.0)
    assert heaviside(x, out) is out and torch.equal(out, want)


@pytest.mark.parametrize("name", SURROGATES)
def test_surrogate_into_out_is_the_same_function(name):
    sur, x = Surrogate(name, 2.5), torch.randn(1000, dtype=torch.float64) * 3
    out = torch.empty_like(x)
    assert sur(x, out) is out and torch.equal(out, sur(x))


def test_gradients_only_for_inputs_that_need_them():
    fused, ref = lif_pair((6,), "arctan", "surrogate")
    current, weights = drive((6,))
    fused.theta.requires_grad_(False)
    ref.theta.requires_grad_(False)
    (d,) = torch.autograd.grad((fused(current) * weights).sum(), current)
    (d_ref,) = torch.autograd.grad((ref(current) * weights).sum(), current)
    torch.testing.assert_close(d, d_ref, rtol=1e-12, atol=1e-13)
    fused.theta.requires_grad_(True)
    (g,) = torch.autograd.grad((fused(current.detach()) * weights).sum(), fused.theta)
    assert g.shape == (6,) and g.abs().sum() > 0


def test_whole_network_fused_equals_reference():
    spec = NetworkSpec((2, 5, 5), 4, [
        LayerSpec([{"kind": "conv", "out": 3, "kernel": 3, "padding": 1}, {"kind": "avgpool", "kernel": 2}],
                  alpha=0.8, theta_init=0.3),
        LayerSpec([{"kind": "flatten"}, {"kind": "linear", "out": 6}], alpha=0.5, theta_init=0.4),
    ], k=1.5)
    torch.manual_seed(0)
    fused = SNN(spec).double()
    ref = SNN(spec).double()
    ref.load_state_dict(fused.state_dict())
    for lif in ref.lifs:
        lif.fused = False
    x = torch.rand(7, 3, 2, 5, 5, dtype=torch.float64)
    y = torch.tensor([0, 3, 1])
    for mode in ("surrogate", "ste"):
        fused.mode = ref.mode = mode
        out, out_ref = fused(x), ref(x)
        assert torch.equal(out, out_ref)
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(out, y), list(fused.parameters()))
        grads_ref = torch.autograd.grad(torch.nn.functional.cross_entropy(out_ref, y), list(ref.parameters()))
        for g, g_ref in zip(grads, grads_ref):
            torch.testing.assert_close(g, g_ref, rtol=1e-11, atol=1e-13)


def test_fused_backward_is_deterministic():
    fused, _ = lif_pair((32,), "fast-sigmoid", "surrogate", dtype=torch.float32)
    current, weights = drive((32,), T=15, B=5, dtype=torch.float32)
    first = spikes_and_grads(fused, current, weights)
    again = spikes_and_grads(fused, current, weights)
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_second_order_gradients_need_the_reference():
    fused, ref = lif_pair((4,), "arctan", "surrogate")
    current, _ = drive((4,), T=3, B=2)
    (g,) = torch.autograd.grad(ref(current).square().sum(), current, create_graph=True)
    torch.autograd.grad(g.square().sum(), current)  # the reference differentiates twice
    (g,) = torch.autograd.grad(fused(current).square().sum(), current, create_graph=True)
    with pytest.raises(RuntimeError):  # an error, never a wrong value
        torch.autograd.grad(g.square().sum(), current)


def test_potentials_come_from_the_reference_loop():
    fused, ref = lif_pair((5,), "arctan", "surrogate")
    current, _ = drive((5,))
    s, u = fused(current, return_potentials=True)
    s_ref, u_ref = ref(current, return_potentials=True)
    assert torch.equal(s, s_ref) and torch.equal(u, u_ref) and u.requires_grad


def test_recurrence_leaves_the_thread_count_as_it_was():
    """Small steps run on one intra-op thread (lif.SERIAL_STEP_ELEMENTS); the setting comes back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fused, _ = lif_pair((16,), "arctan", "surrogate")
        current, weights = drive((16,))
        spikes_and_grads(fused, current, weights)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


# --- the compiled kernel (model/lif_kernel.py) against the torch loop and the reference ---------------

@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the kernel's forward calls; skips where this machine has no working C compiler."""
    monkeypatch.setenv(lif_kernel.ENV_SWITCH, "1")
    if lif_kernel.load() is None:
        pytest.skip("no LIF kernel here (no C compiler?): the torch loop runs, tested above")
    calls = []
    forward = lif_kernel.forward
    monkeypatch.setattr(lif_kernel, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    return calls


def both_paths(monkeypatch, run):
    """run() with the kernel, then with the torch loop (SAST_DEPLOY_LIF_KERNEL=0)."""
    monkeypatch.setenv(lif_kernel.ENV_SWITCH, "1")
    with_kernel = run()
    monkeypatch.setenv(lif_kernel.ENV_SWITCH, "0")
    with_loop = run()
    monkeypatch.setenv(lif_kernel.ENV_SWITCH, "1")
    return with_kernel, with_loop


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 3), (300,)])
@pytest.mark.parametrize("mode", ["surrogate", "ste"])
@pytest.mark.parametrize("name", SURROGATES)
def test_kernel_matches_torch_loop_and_reference(monkeypatch, kernel_calls, name, mode, shape, dtype):
    """Forward values bit for bit (the same operations, each rounded in the dtype); gradients bit for
    bit where the kernel's multiply-adds round as torch's (gradients_exact), else to rounding."""
    fused, ref = lif_pair(shape, name, mode, dtype=dtype)
    current, weights = drive(shape, T=11, B=5, dtype=dtype)  # (300,): 1500 elements, several blocks
    kernel, loop = both_paths(monkeypatch, lambda: spikes_and_grads(fused, current, weights))
    assert len(kernel_calls) == 1
    s_ref, *grads_ref = spikes_and_grads(ref, current, weights)
    assert torch.equal(kernel[0], loop[0]) and torch.equal(kernel[0], s_ref)
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for g, g_loop, g_ref in zip(kernel[1:], loop[1:], grads_ref):
        assert torch.equal(g, g_loop) or not lif_kernel.gradients_exact()
        torch.testing.assert_close(g, g_loop, **tol)
        torch.testing.assert_close(g, g_ref, **tol)


@pytest.mark.parametrize("name", SURROGATES)
def test_kernel_gradcheck_float64(kernel_calls, name):
    sur = Surrogate(name, 1.3)
    current, _ = drive((5,), T=6, B=3)
    theta = torch.rand(5, dtype=torch.float64).add_(0.2).requires_grad_()
    assert torch.autograd.gradcheck(lambda c, th: LIFRecurrence.apply(c, th, 0.7, sur, False), (current, theta),
                                    eps=1e-6, atol=1e-6)
    assert kernel_calls


@pytest.mark.parametrize("name", SURROGATES)
def test_kernel_broadcast_threshold_and_noncontiguous_current(monkeypatch, kernel_calls, name):
    """A threshold shaped [C, 1, 1] (shared over H, W) and a current that is a transposed view."""
    g = torch.Generator().manual_seed(3)
    base = 0.8 * torch.randn(3, 9, 2, 3, 3, generator=g, dtype=torch.float64) + 0.3  # [B, T, C, H, W]
    current = base.transpose(0, 1).requires_grad_()  # [T, B, ...], not contiguous
    theta = (torch.rand(2, 1, 1, generator=g, dtype=torch.float64) + 0.2).requires_grad_()
    weights = torch.randn(current.shape, generator=g, dtype=torch.float64)
    sur = Surrogate(name, 1.7)

    def run():
        s = LIFRecurrence.apply(current, theta, 0.8, sur, False)
        return (s, *torch.autograd.grad((s * weights).sum(), (current, theta)))

    kernel, loop = both_paths(monkeypatch, run)
    assert kernel_calls
    s_ref = integrate(current, lambda u, s, i: lif_step(u, s, i, 0.8, theta, spike_function("surrogate", sur)))
    grads_ref = torch.autograd.grad((s_ref * weights).sum(), (current, theta))
    assert torch.equal(kernel[0], loop[0]) and torch.equal(kernel[0], s_ref)
    for g, g_loop, g_ref in zip(kernel[1:], loop[1:], grads_ref):
        assert torch.equal(g, g_loop) or not lif_kernel.gradients_exact()
        torch.testing.assert_close(g, g_loop, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-13)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64")
                    or torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
                    reason="the probe's expected outcome is known for x86 CPUs with AVX2/AVX-512")
def test_kernel_gradients_are_the_torch_loops_bit_for_bit_here(kernel_calls):
    """On x86 with AVX2/AVX-512 torch fuses addcmul's and add(alpha=)'s multiply-adds; the kernel's
    fused backward does the same, so switching the kernel on changes no training run's numbers."""
    assert "-mfma" in lif_kernel.flags() and lif_kernel.gradients_exact()


@pytest.mark.parametrize("mode", ["surrogate", "ste"])
def test_kernel_results_do_not_depend_on_the_thread_count(kernel_calls, mode):
    fused, _ = lif_pair((200,), "arctan", mode, dtype=torch.float32)
    current, weights = drive((200,), T=12, B=7, dtype=torch.float32)  # 1400 elements: several blocks
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = spikes_and_grads(fused, current, weights)
        torch.set_num_threads(2)
        two = spikes_and_grads(fused, current, weights)
    finally:
        torch.set_num_threads(threads)
    assert len(kernel_calls) == 2 and all(torch.equal(a, b) for a, b in zip(one, two))


def test_kernel_switched_off_runs_the_torch_loop(monkeypatch):
    monkeypatch.setenv(lif_kernel.ENV_SWITCH, "0")
    calls = []
    monkeypatch.setattr(lif_kernel, "forward", lambda *a, **k: calls.append(1))
    fused, ref = lif_pair((6,), "arctan", "surrogate")
    current, weights = drive((6,))
    s, *grads = spikes_and_grads(fused, current, weights)
    s_ref, *grads_ref = spikes_and_grads(ref, current, weights)
    assert not calls and lif_kernel.load() is None and torch.equal(s, s_ref)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-13)


@pytest.fixture
def fresh_kernel():
    """Forget the loaded kernel before and after the test (the next user loads it again)."""
    lif_kernel.reset()
    yield
    lif_kernel.reset()


@pytest.mark.parametrize("cc", ["/bin/false", "/nonexistent/cc"])
def test_failed_compile_falls_back_with_one_warning(monkeypatch, tmp_path, fresh_kernel, cc):
    monkeypatch.setenv(lif_kernel.ENV_SWITCH, "1")
    monkeypatch.setenv("CC", cc)
    monkeypatch.setenv("SAST_DEPLOY_CACHE", str(tmp_path))  # nothing compiled there
    fused, ref = lif_pair((6,), "fast-sigmoid", "ste")
    current, weights = drive((6,))
    with pytest.warns(RuntimeWarning, match="LIF kernel unavailable"):
        s, *grads = spikes_and_grads(fused, current, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: the failure is remembered
        again = spikes_and_grads(fused, current, weights)
    s_ref, *grads_ref = spikes_and_grads(ref, current, weights)
    assert torch.equal(s, s_ref) and torch.equal(again[0], s_ref)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-13)
    assert not list(tmp_path.glob("*.so"))


def test_kernel_compiles_into_the_cache_dir(monkeypatch, tmp_path, fresh_kernel):
    monkeypatch.setenv(lif_kernel.ENV_SWITCH, "1")
    monkeypatch.setenv("SAST_DEPLOY_CACHE", str(tmp_path))
    if lif_kernel.load() is None:
        pytest.skip("no working C compiler here")
    (lib,) = tmp_path.glob("lif_kernel-*.so")
    assert not [p for p in tmp_path.iterdir() if p != lib]  # the temporary build directory is gone


def test_processes_compiling_at_once_all_load_the_kernel(tmp_path):
    """Several processes compiling into one empty cache: each renames its own build into place."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if lif_kernel.load() is None:
        pytest.skip("no working C compiler here")
    root = str(Path(lif_kernel.__file__).resolve().parents[2])  # this checkout's package, not another install
    env = {**os.environ, "SAST_DEPLOY_CACHE": str(tmp_path), lif_kernel.ENV_SWITCH: "1",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    code = "from sast_deploy.model import lif_kernel; import sys; sys.exit(lif_kernel.load() is None)"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert len(list(tmp_path.glob("lif_kernel-*.so"))) == 1
