"""The Lava runner never leaves worker processes behind (errors, a failed start, Ctrl-C), and bad
input is refused with one clear line before Lava starts."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from lava.proc.io.source import RingBuffer

from lava_helpers import lava_workers
from sast_deploy.errors import BackendError, ShapeError
from sast_deploy.export.deployed import DeployedLayer, DeployedNetwork, FixedPoint
from sast_deploy.hardware_sim.backends import require_backend
from sast_deploy.hardware_sim.lava.network import SASTNetwork
from sast_deploy.hardware_sim.lava_runtime import shutdown, start
from sast_deploy.lava import run_lava

NET = """
import numpy as np
from sast_deploy.export.deployed import DeployedLayer, DeployedNetwork
rng = np.random.default_rng(0)
net = DeployedNetwork([DeployedLayer("dense", (6,), (4,), rng.normal(size=(4, 6)), np.zeros(4), np.ones(4), 0.8)],
                      rng.normal(size=(2, 4)), np.zeros(2), 5, (6,), "max")
"""
exec(NET)  # the same tiny network here and in the Ctrl-C subprocess


def test_error_in_the_input_stream_stops_lava_and_propagates():
    def batches():
        yield np.random.rand(5, 3, 6)
        raise ValueError("broken batch")

    with pytest.raises(ValueError, match="broken batch"):
        run_lava(net, batches(), "float")  # noqa: F821 (defined by exec above)
    assert lava_workers() == []


def test_failed_start_terminates_the_workers_already_forked():
    from lava.magma.core.run_configs import Loihi2SimCfg

    lnet = SASTNetwork(net, "float")  # noqa: F821
    RingBuffer(data=np.zeros((6, 10))).s_out.connect(lnet.inp)
    try:
        with pytest.raises(RuntimeError, match="run config that matches"):
            start(lnet, Loihi2SimCfg(select_tag="fixed_pt"), 3)  # float network, fixed models
    finally:
        shutdown(lnet)
    assert lava_workers() == []


def test_ctrl_c_mid_run_stops_every_lava_process():
    script = NET + """
import sys
from sast_deploy.lava import run_lava
def batches():
    for i in range(10**6):
        if i == 3:
            print("running", flush=True)
        yield rng.random((5, 50, 6))
try:
    run_lava(net, batches(), "float")
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # its own process group, like a terminal job
    try:
        assert proc.stdout.readline().strip() == "running"
        assert len(_group(proc.pid)) > 3  # the Lava workers are up
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: every process of the group gets SIGINT
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (proc.returncode, out.strip()) == (130, "interrupted"), err[-2000:]
    deadline = time.monotonic() + 30  # Python's resource tracker exits once it notices its parent is gone
    while _group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group(proc.pid) == []


def _group(pgid: int) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[2]) == pgid:
                    found.append(int(pid))
        except OSError:
            continue
    return found


def _fixed_layer(**changes) -> DeployedNetwork:
    fx = dict(w_int=np.full((4, 6), 2), weight_exp=0, bias_mant=np.zeros(4, int), bias_exp=0,
              vth=np.full(4, 10), dv=100, scale=1.0)
    fx.update(changes)
    layer = DeployedLayer("dense", (6,), (4,), np.zeros((4, 6)), np.zeros(4), np.ones(4), 0.9,
                          fixed=FixedPoint(**fx))
    return DeployedNetwork([layer], np.ones((2, 4)), np.zeros(2), 5, (6,), "binary")


@pytest.mark.parametrize("changes, message", [
    (dict(w_int=np.array([[3, -2, 0, 0, 0, 0]] * 4)), "mixed signs .* even"),
    (dict(w_int=np.full((4, 6), 300)), r"w_int must be integers in \[-256, 255\]"),
    (dict(vth=np.full(4, -1)), r"vth must be integers in \[0, 131071\]"),
    (dict(dv=4096), r"dv must be integers in \[0, 4095\]"),
])
def test_parameters_lava_would_alter_are_refused(changes, message):
    with pytest.raises(BackendError, match=message):
        SASTNetwork(_fixed_layer(**changes))


def test_bad_networks_and_inputs_are_refused_with_one_line():
    with pytest.raises(BackendError, match="no fixed-point parameters"):
        run_lava(net, np.zeros((5, 1, 6)), "fixed")  # noqa: F821
    with pytest.raises(ShapeError, match=r"expected input \[T=5, B, 6\]"):
        run_lava(net, np.zeros((4, 1, 6)), "float")  # noqa: F821
    with pytest.raises(ShapeError, match="binary input"):
        run_lava(_fixed_layer(), np.full((5, 1, 6), 0.5), "fixed")
    assert lava_workers() == []


def test_loihi2_backend_says_what_it_needs():
    with pytest.raises(BackendError, match="lava-loihi.*microcoded"):
        require_backend("loihi2")
    require_backend("lava")


def test_lava_runs_after_something_fixed_the_multiprocessing_start_method():
    """A tqdm bar (e.g. training's) fixes the start method; Lava's import would then raise."""
    script = ("import multiprocessing, numpy as np\nfrom tqdm import tqdm\ntqdm(total=1, disable=True).close()\n"
              "assert multiprocessing.get_start_method(allow_none=True) is not None\n" + NET +
              "from sast_deploy.lava import run_lava\nprint(run_lava(net, np.ones((5, 2, 6)), 'float').steps)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "11", out.stderr[-2000:]
