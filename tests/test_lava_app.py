"""examples/lava_app.py runs as the README shows, and agrees with run_lava; Lava apps need no torch."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from sast_deploy.data import load_frames
from sast_deploy.lava import run_lava

APP = Path(__file__).resolve().parents[1] / "examples" / "lava_app.py"


def test_example_app_classifies_like_run_lava():
    out = subprocess.run([sys.executable, str(APP), "--samples", "3"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("stand-in network (random weights), Lava float: ")
    predicted = json.loads(line.split("predicted ")[1])

    spec = importlib.util.spec_from_file_location("lava_app_under_test", APP)
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    net = app.stand_in()
    frames = load_frames("nmnist-small", "test", net.T, norm=net.input_norm, progress=False).frames(np.arange(3))
    assert predicted == run_lava(net, frames, "float", record_spikes=False).logits.argmax(1).tolist()


def test_running_a_deployed_network_does_not_import_torch():
    code = ("import sys, sast_deploy.lava, sast_deploy.hardware_sim.backends, sast_deploy.hardware_sim.conformance, "
            "sast_deploy.hardware_sim.simulation; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
