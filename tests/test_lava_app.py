"""examples/lava_app.py runs an exported artifact as the README shows and agrees with run_lava; Lava
apps need no torch."""
import json
import subprocess
import sys
from pathlib import Path

from export_nets import mlp_spec, randomized
from sast_deploy.data import load_frames
from sast_deploy.export.command import export_run
from sast_deploy.hardware_sim.simulation import subset
from sast_deploy.jsonio import write_json
from sast_deploy.lava import run_lava
from sast_deploy.model import save_model

APP = Path(__file__).resolve().parents[1] / "examples" / "lava_app.py"


def test_example_app_runs_an_exported_artifact_and_classifies_like_run_lava(tmp_path):
    # seed and gain chosen so that the 4 samples get different classes: a misaligned window would show
    model = randomized(mlp_spec(input_shape=(2, 34, 34), hidden=(32,), classes=10, alphas=(0.9,)), seed=2, gain=2.0)
    save_model(tmp_path / "model.safetensors", model,
               {"data": {"dataset": "nmnist-small", "T": 5, "input_norm": "binary", "downsample": 1}})
    write_json(tmp_path / "summary.json", {"surrogate_acc": 0.5})
    artifact = tmp_path / "net.lava.h5"
    export_run(tmp_path, "lava", artifact, verify_samples=0)

    out = subprocess.run([sys.executable, str(APP), str(artifact), "--samples", "4"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith(f"{artifact}, Lava fixed: ")
    predicted = json.loads(line.split("predicted ")[1])
    assert len(set(predicted)) > 1

    data = load_frames("nmnist-small", "test", 5, progress=False)
    frames = data.frames(subset(len(data), 4))
    assert predicted == run_lava(artifact, frames, record_spikes=False).logits.argmax(1).tolist()


def test_example_app_without_an_artifact_says_how_to_make_one(tmp_path):
    out = subprocess.run([sys.executable, str(APP), str(tmp_path / "none.lava.h5")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "make demo" in out.stderr


def test_running_a_deployed_network_does_not_import_torch():
    code = ("import sys, sast_deploy.lava, sast_deploy.hardware_sim.backends, sast_deploy.hardware_sim.conformance, "
            "sast_deploy.hardware_sim.simulation; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
