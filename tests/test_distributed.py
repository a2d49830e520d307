"""Data-parallel SAST under torchrun with real torch.distributed (gloo, 2 CPU processes): equality
with one process at the same global batch, --sam-sync local, resume after a process is killed,
sharding and refusals. Every launch has a timeout, so a hang fails instead of stalling CI."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError, safe_open

from sast_deploy.evaluation.accuracy import predict
from sast_deploy.model import load_model
from sast_deploy.model.checkpoint import read_tensors
from sast_deploy.train import main as train_main
from sast_deploy.training import TrainConfig, load_data, train
from sast_deploy.training.batches import epoch_batches, shard
from sast_deploy.training.state import STATE_FORMAT

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "sast_deploy.train"]
LAUNCH_TIMEOUT_S = 240
# 247 = 15 * 16 + 7: every epoch ends with a minibatch of 7 samples, split 4 + 3 over the processes
SETTINGS = dict(T=5, max_samples=247, hidden=16, batch_size=16, epochs=2, device="cpu", rho=0.3, checkpoint_every=1)
# Summation order alone (per-process partial sums + all-reduce vs one GEMM) moved weights by 6e-8 after
# 32 SAST iterations; one Adam step moves a weight by up to lr = 1e-3, and averaging the uneven last
# minibatch wrongly (per-process means) moved them by 2e-3. 1e-5 sits between, far from both.
WEIGHT_ATOL = 1e-5


def flags(settings: dict, timeout_s: int = 60) -> list[str]:
    return [a for k, v in settings.items() for a in (f"--{k.replace('_', '-')}", str(v))] + [
        "--quiet", "--dist-timeout", str(timeout_s)]


ARGS = flags(SETTINGS)


def torchrun(*args, check=True):
    proc = subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def tensors(run_dir, name):
    path = Path(run_dir, name)
    if name.startswith("checkpoint"):
        return {k: v for k, v in read_tensors(path, STATE_FORMAT)[0].items() if not k.startswith("rng/")}
    return load_model(path)[0].state_dict()


def metrics(run_dir):
    drop = ("epoch_time_s", "peak_mem_mb")
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in Path(run_dir, "metrics.jsonl").read_text().splitlines()]


def read_json(run_dir, name):
    return json.loads(Path(run_dir, name).read_text())


@pytest.fixture(scope="module")
def ddp_global(tmp_path_factory):
    """One uninterrupted 2-process SAST run (--sam-sync global, the default)."""
    out = tmp_path_factory.mktemp("ddp") / "global"
    torchrun(*ARGS, "--out", str(out))
    return out


def test_shards_split_each_minibatch_in_order_sizes_differing_by_at_most_one():
    for b, b2 in epoch_batches(247, 16, seed=0, epoch=0):
        for idx in (b, b2):
            parts = [shard(idx, r, 3) for r in range(3)]
            assert np.array_equal(np.concatenate(parts), idx)
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert [len(shard(np.arange(1), r, 2)) for r in range(2)] == [1, 0]


def assert_same_training(ddp_dir, single_dir, settings):
    """Weights within WEIGHT_ATOL, identical predictions, accuracies and validation metrics."""
    for name in ("checkpoint.safetensors", "model.safetensors"):
        a, b = tensors(ddp_dir, name), tensors(single_dir, name)
        assert set(a) == set(b)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=WEIGHT_ATOL, msg=f"{name}: {k}")
    data = load_data(TrainConfig(**settings), progress=False)
    model_d, model_s = load_model(ddp_dir / "model.safetensors")[0], load_model(single_dir / "model.safetensors")[0]
    for split in ("val", "test"):
        for mode in ("surrogate", "hard"):
            assert np.array_equal(predict(model_d, data[split], mode), predict(model_s, data[split], mode))
    for d, s in zip(metrics(ddp_dir), metrics(single_dir), strict=True):
        for k in ("val_surrogate_acc", "val_hard_acc", "val_transfer_gap", "train_acc", "iterations", "lr"):
            assert d[k] == s[k], k
        assert d["train_loss"] == pytest.approx(s["train_loss"], rel=1e-6)
    sd, ss = read_json(ddp_dir, "summary.json"), read_json(single_dir, "summary.json")
    for k in ("surrogate_acc", "hard_acc", "transfer_gap", "method", "batch_size", "eps_batch_size", "sam_sync"):
        assert sd[k] == ss[k], k
    assert (sd["world_size"], ss["world_size"]) == (2, 1)


def test_ddp_global_equals_one_process_with_the_same_global_batch(ddp_global, tmp_path):
    single = tmp_path / "single"
    train(TrainConfig(**SETTINGS, out=str(single)), progress=False)
    assert_same_training(ddp_global, single, SETTINGS)
    assert read_json(ddp_global, "summary.json")["method"] == "SAST"
    env = read_json(ddp_global, "config.json")["environment"]
    assert (env["world_size"], env["distributed_backend"]) == (2, "gloo")


def test_a_minibatch_smaller_than_the_process_count_leaves_a_part_empty_and_still_matches(tmp_path):
    settings = dict(T=5, max_samples=3, hidden=8, batch_size=2, epochs=1, device="cpu", rho=0.3)  # B: 2 then 1
    torchrun(*flags(settings), "--out", str(tmp_path / "ddp"))
    train(TrainConfig(**settings, out=str(tmp_path / "single")), progress=False)
    assert_same_training(tmp_path / "ddp", tmp_path / "single", settings)


def test_sam_sync_local_runs_differs_from_global_and_is_labelled(ddp_global, tmp_path, capsys):
    out = tmp_path / "local"
    torchrun(*ARGS, "--sam-sync", "local", "--out", str(out))
    cfg, summary = read_json(out, "config.json"), read_json(out, "summary.json")
    assert cfg["method"] == summary["method"] == "SAST (m-sharpness)"
    assert cfg["train"]["sam_sync"] == summary["sam_sync"] == "local"
    assert summary["eps_batch_size"] == 8 and summary["batch_size"] == 16 and summary["world_size"] == 2
    a, b = tensors(out, "model.safetensors"), tensors(ddp_global, "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) > 100 * WEIGHT_ATOL
    # its m depends on the number of processes: resuming it on another number is refused
    (out / "summary.json").unlink()
    assert train_main(["--resume", str(out), "--quiet"]) == 2
    assert "(--sam-sync local) on 2 processes; resume it on 2, not 1" in capsys.readouterr().err


def _worker_pid(launcher: int, rank: int) -> int | None:
    """The pid of the torchrun worker with RANK=rank among the launcher's children (Linux /proc)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher and f"RANK={rank}".encode() in env:
            return int(pid)
    return None


def _progress(ckpt):
    with safe_open(str(ckpt), framework="pt") as f:
        return json.loads(f.metadata()["progress"])


def _polled_progress(ckpt):
    """The checkpoint's progress while the job runs, or None for this poll. A read racing rank 0's
    rename failed once (RuntimeError from safetensors, under heavy load); checks after the job are strict."""
    try:
        return _progress(ckpt) if ckpt.exists() else None
    except (SafetensorError, RuntimeError, OSError, ValueError):
        return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker's pid in /proc")
def test_a_killed_process_fails_the_job_and_resume_equals_the_uninterrupted_run(ddp_global, tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*TORCHRUN, *ARGS, "--out", str(killed)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    ckpt = killed / "checkpoint.safetensors"
    try:
        deadline = time.monotonic() + LAUNCH_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:  # a checkpoint inside epoch 2
            p = _polled_progress(ckpt)
            if p and p["epochs_done"] == 1 and p["step_in_epoch"] >= 1:
                os.kill(_worker_pid(proc.pid, 1), signal.SIGKILL)
                break
            time.sleep(0.005)
        _, err = proc.communicate(timeout=LAUNCH_TIMEOUT_S)  # fails, does not hang
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and "SIGKILL" in err, err[-3000:]
    p = _progress(ckpt)
    assert p["epochs_done"] == 1 and 0 < p["step_in_epoch"] < 16  # it died mid-epoch
    assert not (killed / "summary.json").exists()

    torchrun("--resume", str(killed), "--quiet", "--dist-timeout", "60")
    for name in ("checkpoint.safetensors", "model.safetensors"):
        a, b = tensors(killed, name), tensors(ddp_global, name)
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), name
    assert metrics(killed) == metrics(ddp_global)
    assert read_json(killed, "config.json")["resumes"][0]["environment"]["world_size"] == 2


@pytest.mark.parametrize("flags, env, expect", [
    (["--rho", "0.3", "--sam-sync", "local"], {}, "needs torchrun with --nproc_per_node > 1"),
    (["--sam-sync", "local"], {}, "--sam-sync local computes SAST's eps per process; it needs --rho > 0"),
    (["--batch-size", "15"], {"WORLD_SIZE": "2"}, "must split evenly over the 2 processes"),
    (["--dist-timeout", "0"], {}, "--dist-timeout must be positive"),
])
def test_bad_distributed_settings_give_one_line(tmp_path, capsys, monkeypatch, flags, env, expect):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    rc = train_main(["--T", "5", "--max-samples", "32", "--hidden", "8", "--epochs", "1", "--quiet", "--device", "cpu",
                     "--out", str(tmp_path / "r"), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and expect in err and err.count("\n") == 1, err


def test_training_mode_batchnorm_on_cpu_processes_is_refused_in_one_line(tmp_path):
    proc = torchrun("--T", "5", "--max-samples", "32", "--hidden", "8", "--epochs", "1", "--device", "cpu", "--bn", "train",
                    "--quiet", "--dist-timeout", "60", "--out", str(tmp_path / "bn"), check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode != 0 and errors, proc.stderr[-3000:]
    assert all("needs SyncBatchNorm, which PyTorch implements for GPUs only" in line for line in errors)


def _gone(pid: int) -> bool:
    """Exited (a zombie counts) or never existed."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers' pids in /proc")
def test_a_hanging_process_fails_the_job_after_the_timeout_with_one_line(tmp_path):
    out, timeout_s = tmp_path / "hang", 10
    proc = subprocess.Popen([*TORCHRUN, *flags(SETTINGS, timeout_s), "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    ckpt, stopped = out / "checkpoint.safetensors", None
    try:
        deadline = time.monotonic() + LAUNCH_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            p = _polled_progress(ckpt)
            if p and p["step_in_epoch"] >= 1:  # training is under way: freeze rank 1
                stopped, rank0 = _worker_pid(proc.pid, 1), _worker_pid(proc.pid, 0)
                os.kill(stopped, signal.SIGSTOP)
                break
            time.sleep(0.005)
        while stopped and not _gone(rank0) and time.monotonic() < deadline:  # rank 0 gives up after timeout_s
            time.sleep(0.1)
        if stopped:
            os.kill(stopped, signal.SIGCONT)  # so that it can receive torchrun's SIGTERM
        _, err = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert stopped and proc.returncode != 0, err[-3000:]
    # rank 0 times out; rank 1, resumed, may report its own side before torchrun's SIGTERM reaches it
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors and errors[0].startswith("error: process 0 of 2: the job lost another process"), err[-3000:]
    assert all(f"within --dist-timeout {timeout_s} s" in e and f"--resume {out}" in e for e in errors)
