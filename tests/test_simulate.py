"""`sast-deploy simulate`: every backend on a real exported run, the REPORT keys and what each number
is measured against, with and without the source run, and one-line errors."""
import json
import re
import shutil

import numpy as np
import pytest

from export_nets import hard_forward, mlp_spec, randomized
from sast_deploy.cli import main
from sast_deploy.data import load_frames
from sast_deploy.export.artifact import load_artifact
from sast_deploy.export.command import export_run
from sast_deploy.hardware_sim.emulator import emulate
from sast_deploy.hardware_sim.simulation import DERIVED_HARD, FIXED_REFERENCE, FLOAT_REFERENCE, simulate, subset
from sast_deploy.jsonio import write_json
from sast_deploy.model import save_model

T = 4
KEYS = {"backend", "precision", "samples", "accuracy", "torch_hard_accuracy", "agreement", "spike_mismatches",
        "transfer_gap", "quantization_gap", "samples_per_s"}  # DESIGN §1: never renamed


def _run(path, seed):
    model = randomized(mlp_spec(input_shape=(2, 34, 34), hidden=(32,), classes=10, alphas=(0.9,)), seed=seed, gain=3.0)
    save_model(path / "model.safetensors", model,
               {"data": {"dataset": "nmnist-small", "T": T, "input_norm": "binary", "downsample": 1}})
    write_json(path / "summary.json", {"surrogate_acc": 0.5, "hard_acc": 0.4, "transfer_gap": 0.1,
                                       "dataset": "nmnist-small", "split": "test"})
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    model = _run(run, seed=0)
    export_run(run, "lava", run / "net.lava.h5", verify_samples=0)
    export_run(run, "onnx", run / "net.onnx", verify_samples=0)
    frames = load_frames("nmnist-small", "test", T, progress=False)
    return run, model, frames


def test_emulator_fixed_on_the_whole_split_reports_every_key(exported):
    run, model, frames = exported
    r = simulate(run / "net.lava.h5", "emulator", progress=False)
    assert KEYS <= set(r) and (r["backend"], r["precision"], r["samples"]) == ("emulator", "fixed", len(frames))
    idx = np.arange(len(frames))
    x, y = frames.frames(idx), frames.labels[idx]
    fixed = emulate(load_artifact(run / "net.lava.h5"), x, "fixed")
    assert r["accuracy"] == np.mean(fixed.logits.argmax(1) == y)
    hard_logits, _, _ = hard_forward(model, x)
    assert r["torch_hard_accuracy"] == np.mean(hard_logits.argmax(1) == y)
    assert r["quantization_gap"] == r["torch_hard_accuracy"] - r["accuracy"]
    assert r["transfer_gap"] == r["surrogate_accuracy"] - r["accuracy"] and r["samples_per_s"] > 0
    # the emulator is the fixed-point reference: nothing to compare it with, and the report says so
    assert r["reference"] == FIXED_REFERENCE and r["agreement"] is None and r["spike_mismatches"] is None
    assert any("this backend itself" in n for n in r["notes"])


@pytest.mark.parametrize("precision", ["fixed", "float"])
def test_lava_matches_its_reference_spike_for_spike(exported, precision):
    run, _, _ = exported
    r = simulate(run / "net.lava.h5", "lava", precision, limit=6, batch_size=4, check=True, progress=False)
    assert r["samples"] == 6 and r["reference"] == (FIXED_REFERENCE if precision == "fixed" else FLOAT_REFERENCE)
    assert (r["agreement"], r["spike_mismatches"], r["spike_mismatches_per_layer"]) == (1.0, 0, [0])
    assert r["check"]["first_mismatch"] is None
    emu = simulate(run / "net.lava.h5", "emulator", precision, limit=6, progress=False)
    assert r["accuracy"] == emu["accuracy"]


def test_onnx_and_torch_against_the_float64_model(exported):
    run, _, _ = exported
    for backend, artifact in (("onnx", "net.onnx"), ("torch", "net.lava.h5")):
        r = simulate(run / artifact, backend, limit=50, check=True, progress=False)
        assert (r["precision"], r["reference"], r["quantization_gap"]) == ("float", FLOAT_REFERENCE, None)
        assert r["agreement"] == 1.0 and r["spike_mismatches"] == 0
        assert r["accuracy"] == r["torch_hard_accuracy"]


def test_a_different_model_shows_as_mismatches_and_flips_that_are_not_ties(exported, tmp_path):
    """--run pointing at another run of the same shape: the comparison must notice."""
    run, _, _ = exported
    _run(tmp_path, seed=1)
    r = simulate(run / "net.lava.h5", "emulator", "float", limit=20, check=True, run_dir=tmp_path, progress=False)
    assert r["spike_mismatches"] > 0 and r["check"]["first_mismatch"] is not None
    assert r["check"]["samples_affected"] > 0 and r["check"]["all_ties"] is False


def test_without_the_source_run_the_hard_accuracy_is_derived_and_the_gap_needs_the_whole_split(exported, tmp_path,
                                                                                              capsys):
    run, _, frames = exported
    shutil.copy(run / "net.lava.h5", tmp_path / "net.lava.h5")
    moved = tmp_path / "net.lava.h5"
    with_run = simulate(run / "net.lava.h5", "emulator", "float", progress=False)
    gone = str(run) + "-gone"
    shutil.move(run, gone)
    try:
        whole = simulate(moved, "emulator", "float", progress=False)
        part = simulate(moved, "lava", "fixed", limit=4, progress=False)
        assert main(["simulate", "--artifact", str(moved), "--backend", "torch"]) == 2
    finally:
        shutil.move(gone, run)
    assert whole["torch_hard_reference"] == DERIVED_HARD and whole["source_run"] is None
    assert whole["torch_hard_accuracy"] == with_run["torch_hard_accuracy"]  # the same model, here no tie
    assert whole["transfer_gap"] == 0.5 - whole["accuracy"]  # the summary's surrogate_acc: same whole split
    assert part["transfer_gap"] is None and part["spike_mismatches"] == 0 and part["quantization_gap"] is not None
    assert any("not here" in n for n in part["notes"])
    assert "source run" in capsys.readouterr().err


def test_cli_writes_the_report_and_prints_one_screen(exported, tmp_path, capsys):
    run, _, _ = exported
    out = tmp_path / "REPORT.json"
    assert main(["simulate", "--artifact", str(run / "net.onnx"), "--backend", "onnx", "--limit", "10",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert KEYS <= set(report) and report["samples"] == 10
    text = capsys.readouterr().out
    assert "simulate onnx float" in text and "agreement 1.000" in text and len(text.splitlines()) < 25


@pytest.mark.parametrize("args, message", [
    (["--backend", "loihi2"], "lava-loihi"),
    (["--backend", "onnx"], "pass the \\*.onnx"),
    (["--backend", "torch", "--precision", "fixed"], "--backend torch runs the PyTorch model"),
    (["--backend", "emulator", "--limit", "0"], ">= 1"),
])
def test_errors_are_one_line(exported, capsys, args, message):
    run, _, _ = exported
    assert main(["simulate", "--artifact", str(run / "net.lava.h5"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert re.search(message, err[0])


def test_limit_spreads_over_every_class(exported):
    _, _, frames = exported
    idx = subset(len(frames), 20)
    assert len(set(idx)) == 20 and set(frames.labels[idx]) == set(range(10))
