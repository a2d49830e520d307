"""The benchmarks start and print what they compare (smoke sizes; nothing here is timed)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args, hide=()):
    """`python -m bench ARGS` in a fresh interpreter, with the packages in `hide` made unimportable."""
    code = ("import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in hide)
            + "from bench.__main__ import main\nraise SystemExit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_train_step_smoke_runs_without_peers():
    r = run_bench("train_step", "--smoke", hide=("snntorch", "spikingjelly"))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for line in ("workload: LIF MLP 2312 -> 8 -> 10", "machine: ", "-- 1 thread", "dense floor (ReLU)",
                 "ours surrogate", "ours STE", "ours SAST rho 0.3", "ours, autograd loop",
                 "SAST / ours surrogate", "no peer installed"):
        assert line in out, line
    assert out.count("is not installed") == 3  # one line per peer row left out


def test_bench_lists_its_benchmarks():
    r = run_bench("--help")
    assert r.returncode == 0 and "train_step" in r.stdout
    assert run_bench("nonsense").returncode == 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SpikingJelly scripts functions with torch.jit
@pytest.mark.parametrize("peer", ["snntorch_leaky", "spikingjelly_lif"])
def test_peer_networks_train_when_installed(peer):
    pytest.importorskip(peer.split("_")[0])
    sys.path.insert(0, str(ROOT))
    try:
        from bench import networks
    finally:
        sys.path.remove(str(ROOT))
    w = networks.Workload(T=3, batch_size=2, hidden=5)
    batches = w.batches(torch.device("cpu"), n=1)
    step = getattr(networks, peer)(w, batches, torch.device("cpu"))
    step()  # forward + backward + Adam step
    step()


def test_simulate_bench_starts_and_confirms_bit_exactness():
    r = run_bench("simulate", "--samples", "2", "--repeat", "1")
    assert r.returncode == 0, r.stderr
    assert "machine: " in r.stdout and "emulator" in r.stdout and "Lava" in r.stdout
