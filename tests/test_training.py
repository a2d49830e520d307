"""Training runs on the embedded data: determinism, exact resume after SIGKILL, the NaN guard,
corrupt checkpoints, controls, selection, and the CLI's errors."""
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sast_deploy.errors import CheckpointError, ConfigError, TrainingDiverged
from sast_deploy.model import load_model
from sast_deploy.model.checkpoint import read_tensors
from sast_deploy.train import main as train_main
from sast_deploy.training import TrainConfig, load_data, resume, train
from sast_deploy.training.state import STATE_FORMAT, load_state

TINY = TrainConfig(T=5, max_samples=64, hidden=16, batch_size=16, epochs=2, device="cpu")
TIMING_KEYS = ("epoch_time_s", "peak_mem_mb")


@pytest.fixture(scope="module")
def data():
    return load_data(TINY, progress=False)


def run(tmp_path, data, name="run", **changes):
    cfg = replace(TINY, out=str(tmp_path / name), **changes)
    return cfg, train(cfg, progress=False, data=data)


def metrics(run_dir):
    lines = Path(run_dir, "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def weights(path):
    return read_tensors(path, STATE_FORMAT)[0] if path.name.startswith("checkpoint") else load_model(path)[0].state_dict()


def same_tensors(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def progress_of(path):
    """The progress a checkpoint records. One read of the whole file: the trainer replaces it by a
    rename while this polls, and a reader that opens the path twice can see two different files."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(json.loads(raw[8:8 + n])["__metadata__"]["progress"])


def test_same_seed_same_metrics_and_weights_another_seed_differs(tmp_path, data):
    cfg_a, a = run(tmp_path, data, "a", rho=0.3)
    _, b = run(tmp_path, data, "b", rho=0.3)
    _, c = run(tmp_path, data, "c", rho=0.3, seed=1)
    assert metrics(cfg_a.out) == metrics(tmp_path / "b") != metrics(tmp_path / "c")
    assert same_tensors(weights(tmp_path / "a" / "model.safetensors"), weights(tmp_path / "b" / "model.safetensors"))
    drop = {"time_per_epoch_s", "peak_mem_mb"}
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    for key in ("surrogate_acc", "hard_acc", "transfer_gap", "rho", "seed", "epochs", "time_per_epoch_s",
                "peak_mem_mb", "B1", "M_theta_hat", "gamma_hat", "dataset", "split"):  # DESIGN §1
        assert key in a
    assert a["transfer_gap"] == pytest.approx(a["surrogate_acc"] - a["hard_acc"])
    assert a["method"] == "SAST" and a["passes_per_iteration"] == 2 and a["iterations"] == 8
    cfg_json = json.loads(Path(cfg_a.out, "config.json").read_text())
    assert cfg_json["train"]["rho"] == 0.3 and cfg_json["environment"]["torch_build"] == torch.__version__
    rec = metrics(cfg_a.out)[0]
    for key in ("train_loss", "val_surrogate_acc", "val_hard_acc", "val_transfer_gap", "M_theta_hat", "gamma_hat",
                "grad_norm"):
        assert key in rec


def test_resume_after_sigkill_mid_epoch_ends_bitwise_equal(tmp_path, data):
    args = ["--T", "5", "--max-samples", "256", "--hidden", "64", "--batch-size", "16", "--epochs", "3",
            "--device", "cpu", "--rho", "0.2", "--checkpoint-every", "1", "--quiet"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "sast_deploy.train", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed / "checkpoint.safetensors"
    try:
        while proc.poll() is None:  # wait for a checkpoint well inside epoch 2 or 3
            if ckpt.exists():
                p = progress_of(ckpt)
                if p["epochs_done"] >= 1 and 2 <= p["step_in_epoch"] <= 10:
                    break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()
    finally:
        proc.kill()
    p = progress_of(ckpt)
    assert p["epochs_done"] in (1, 2) and 0 < p["step_in_epoch"] < 16  # it died mid-epoch
    assert not (killed / "summary.json").exists()

    assert train_main(["--resume", str(killed), "--quiet"]) == 0
    full = tmp_path / "full"
    subprocess.run([sys.executable, "-m", "sast_deploy.train", *args, "--out", str(full)], check=True,
                   stdout=subprocess.DEVNULL)
    for name in ("checkpoint.safetensors", "model.safetensors"):
        assert same_tensors(weights(killed / name), weights(full / name))
    assert metrics(killed) == metrics(full) and len(metrics(full)) == 3


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, data):
    # Adam moves every weight by ~lr on its first step: at lr 1e37 the next currents overflow
    with pytest.raises(TrainingDiverged) as err:
        run(tmp_path, data, lr=1e37, checkpoint_every=1)
    msg = str(err.value)
    ckpt = tmp_path / "run" / "checkpoint.safetensors"
    assert "\n" not in msg and str(ckpt) in msg and "epoch 1, iteration 2" in msg
    state = load_state(ckpt)  # still loads: finite, intact
    assert state.progress.global_step == 1
    assert not (tmp_path / "run" / "summary.json").exists()


def test_corrupt_foreign_and_mismatched_checkpoints_are_refused_with_the_file_named(tmp_path, data, capsys):
    cfg, _ = run(tmp_path, data, epochs=1)
    run_dir = Path(cfg.out)
    ckpt = run_dir / "checkpoint.safetensors"
    good = ckpt.read_bytes()

    def refused(content, expect):
        ckpt.write_bytes(content)
        with pytest.raises(CheckpointError, match=expect) as err:
            load_state(ckpt)
        assert str(ckpt) in str(err.value) and "\n" not in str(err.value)

    refused(good[: len(good) // 2], "truncated or corrupt")
    flipped = bytearray(good)
    flipped[-100] ^= 0xFF
    refused(bytes(flipped), "checksum; the file was altered")
    assert b'\\"epochs_done\\": 1' in good
    refused(good.replace(b'\\"epochs_done\\": 1', b'\\"epochs_done\\": 0'), "metadata does not match")
    refused((run_dir / "model.safetensors").read_bytes(), "not a sast-deploy/train-state file")

    other, _ = run(tmp_path, data, "other", epochs=1, lr=2e-3)
    ckpt.write_bytes(Path(other.out, "checkpoint.safetensors").read_bytes())
    assert train_main(["--resume", str(run_dir), "--quiet"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"error: {ckpt}: belongs to another run") and "lr" in line and "\n" not in line


def test_resume_refuses_new_settings_and_finished_runs(tmp_path, data, capsys):
    cfg, _ = run(tmp_path, data, epochs=1)
    assert train_main(["--resume", cfg.out, "--lr", "0.5"]) == 2
    assert "drop --lr" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="already finished"):
        resume(cfg.out, progress=False, data=data)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg, progress=False, data=data)
    shutil.copytree(cfg.out, tmp_path / "copy")
    (tmp_path / "copy" / "checkpoint.safetensors").unlink()
    with pytest.raises(ConfigError, match="no checkpoint.safetensors"):
        resume(tmp_path / "copy", progress=False, data=data)


@pytest.mark.parametrize("flags, expect", [
    (["--asam"], "--asam needs --rho > 0"),
    (["--rho", "0.1", "--compute-matched"], "--compute-matched is the baseline"),
    (["--reuse-batch"], "--reuse-batch sets B' = B"),
    (["--theory-aligned", "--bn", "train"], "--theory-aligned refuses"),
    (["--theory-aligned", "--forward", "ste"], "--theory-aligned needs --forward surrogate"),
    (["--theory-aligned", "--alpha", "0.99"], "layer 0 has alpha 0.99"),
    (["--pool", "max"], "the mlp preset has no pooling"),
    (["--lr", "0"], "--lr must be positive"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "nonsense"], "--device"),
])
def test_bad_settings_give_one_line_naming_the_flag(tmp_path, capsys, flags, expect):
    rc = train_main(["--T", "5", "--max-samples", "32", "--hidden", "8", "--epochs", "1", "--quiet",
                     "--out", str(tmp_path / "r"), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and expect in err and err.count("\n") == 1


def test_spec_file_defines_the_network_and_is_checked_against_the_data(tmp_path, data, capsys):
    cfg, _ = run(tmp_path, data, epochs=1)
    spec = json.loads(Path(cfg.out, "config.json").read_text())["spec"]
    spec["layers"][0]["ops"][1]["out"] = 9
    path = tmp_path / "net.json"
    path.write_text(json.dumps(spec))
    _, s = run(tmp_path, data, "from-spec", epochs=1, spec=str(path), hidden=TrainConfig.hidden)
    assert load_model(tmp_path / "from-spec" / "model.safetensors")[0].spec.layers[0].ops[1]["out"] == 9
    with pytest.raises(ConfigError, match="defines the network; drop --k"):
        run(tmp_path, data, "x", spec=str(path), hidden=TrainConfig.hidden, k=3.0)
    spec["num_classes"] = 4
    spec["class_names"] = []
    path.write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match="does not fit nmnist-small"):
        run(tmp_path, data, "y", spec=str(path), hidden=TrainConfig.hidden)


def test_selection_keeps_the_best_validation_epoch_or_the_last(tmp_path, data):
    cfg, s = run(tmp_path, data, epochs=4, lr=3e-3)
    val = [m["val_surrogate_acc"] for m in metrics(cfg.out)]
    best = val.index(max(val)) + 1  # earliest on ties
    assert s["selected_epoch"] == best and s["val_surrogate_acc"] == max(val)
    meta = load_model(Path(cfg.out, "model.safetensors"))[1]
    assert meta["epoch"] == best and meta["summary"]["surrogate_acc"] == s["surrogate_acc"]
    _, last = run(tmp_path, data, "last", epochs=4, lr=3e-3, select="last")
    assert last["selected_epoch"] == 4


def test_theory_aligned_keeps_gamma_below_the_bound(tmp_path, data):
    _, s = run(tmp_path, data, theory_aligned=True, gamma_max=0.98, lr=1e-2)
    assert s["gamma_hat"] <= 0.98 + 1e-6 and s["theory_aligned"]
    _, free = run(tmp_path, data, "free")
    assert free["gamma_hat"] > 1  # theta_init 1, alpha 0.9, B1 = 2/pi: outside the theory unless projected


def test_controls_and_extensions_train_and_are_recorded(tmp_path, data):
    _, ste = run(tmp_path, data, "ste", forward="ste", rho=0.1, asam=True, reuse_batch=True, schedule="cosine",
                 optimizer="sgd", lr=0.05)
    assert (ste["forward"], ste["asam"], ste["reuse_batch"], ste["method"]) == ("ste", True, True, "ASAM-SAST (B'=B)")
    assert [m["lr"] for m in metrics(tmp_path / "ste")] == pytest.approx([0.05, 0.025])
    _, cm = run(tmp_path, data, "cm", compute_matched=True, optimizer="adamw", weight_decay=0.01)
    assert cm["passes_per_iteration"] == 2 and cm["optimizer_steps"] == 2 * cm["iterations"]
    _, ext = run(tmp_path, data, "ext", preset="conv-bn", pool="max", epochs=1)
    assert ext["extensions"] == ["batchnorm", "maxpool"] and ext["bn"] == "train"
    model = load_model(tmp_path / "ext" / "model.safetensors")[0]
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
