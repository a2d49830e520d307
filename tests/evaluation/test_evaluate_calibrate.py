"""`sast-deploy evaluate` and `calibrate` on a tiny trained run, through their command lines."""
import numpy as np
import pytest
import torch

from sast_deploy.cli import main as cli
from sast_deploy.evaluation.accuracy import predict
from sast_deploy.jsonio import read_json
from sast_deploy.model import load_model
from sast_deploy.training.calibration import GRID, calibrate, scale_thresholds
from sast_deploy.training.rundir import load_run

FAST = ["--diag-samples", "4", "--secant-directions", "2", "--severities", "0,0.2"]


def test_evaluate_reports_definition_II6_per_class_and_the_grid(tiny_run, tmp_path, capsys):
    out = tmp_path / "ev.json"
    assert cli(["evaluate", "--run", str(tiny_run), "--robustness", "--diagnostics", *FAST, "--out", str(out)]) == 0
    r = read_json(out)
    run = load_run(tiny_run)
    test = run.frames("test", progress=False)
    for mode in ("surrogate", "hard"):
        want = float((predict(run.model, test, mode) == test.labels).mean())
        assert r[f"{mode}_acc"] == want
        pc, support = np.array(r["per_class"][mode]), np.array(r["per_class"]["support"])
        assert np.isclose((pc * support).sum() / support.sum(), want)  # per-class accuracies weight back to overall
        for kind, curve in r["robustness"]["curves"].items():
            assert curve[mode]["acc"][0] == want  # p = 0 is the clean input
    assert r["transfer_gap"] == r["surrogate_acc"] - r["hard_acc"]
    assert r["hard_acc"] == run.summary["hard_acc"]
    assert set(r["robustness"]["curves"]) == {"voxel-drop", "time-jitter", "bin-drop"}
    assert r["diagnostics"]["samples"] == 4
    printed = capsys.readouterr().out
    assert "gap" in printed and "voxel-drop" in printed and "secant" in printed


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    assert cli(["evaluate", "--run", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    assert cli(["evaluate", "--run", str(tmp_path / "half")]) == 2
    err = capsys.readouterr().err
    assert "did not finish" in err and err.count("\n") == 1
    assert cli(["evaluate", "--run", str(tmp_path / "half"), "--severities", "0,1.5"]) == 2
    assert "--severities" in capsys.readouterr().err


def test_calibration_chooses_on_val_only(tiny_run, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(["calibrate", "--run", str(tiny_run), "--out", str(a)]) == 0
    assert cli(["calibrate", "--run", str(tiny_run), "--out", str(b), "--test-split", "train"]) == 0
    ca, cb = read_json(a / "calibration.json"), read_json(b / "calibration.json")
    # the reported split changed, the choice did not: it never saw that split
    for method in ("global", "per-layer"):
        assert ca[method] == cb[method]
    assert ca["test"] != cb["test"]
    # the choice is the best of the grid on val, recomputed here by brute force
    run = load_run(tiny_run)
    val = run.frames("val", progress=False)
    accs = {lam: float((predict(scale_thresholds(run.model, [lam]), val, "hard") == val.labels).mean()) for lam in GRID}
    best = max(accs.values())
    assert ca["global"]["val_hard_acc"] == best
    assert accs[ca["global"]["lambdas"][0]] == best
    assert calibrate(run.model, val)["global"] == ca["global"]


def test_calibrated_copy_is_a_normal_run(tiny_run, tmp_path):
    out = tmp_path / "cal"
    assert cli(["calibrate", "--run", str(tiny_run), "--out", str(out), "--method", "global"]) == 0
    s, rec = read_json(out / "summary.json"), read_json(out / "calibration.json")
    model, meta = load_model(out / "model.safetensors")
    source = load_run(tiny_run).model
    lam = rec["global"]["lambdas"][0]
    assert meta["calibration"]["lambdas"] == [lam] and meta["data"] == load_run(tiny_run).meta["data"]
    assert torch.allclose(model.lifs[0].theta, source.lifs[0].theta * lam)
    assert s["hard_acc"] == rec["test"]["global_hard_acc"] and s["calibrated"] is True
    for key in ("surrogate_acc", "hard_acc", "transfer_gap", "rho", "seed", "B1", "gamma_hat", "dataset", "split"):
        assert key in s
    ev = tmp_path / "ev.json"
    assert cli(["evaluate", "--run", str(out), "--out", str(ev)]) == 0
    e = read_json(ev)
    # the surrogate row is the trained network, the hard row the calibrated thresholds
    assert e["surrogate_acc"] == rec["test"]["surrogate_acc"] and e["hard_acc"] == s["hard_acc"]


def test_calibrate_refuses_bad_requests(tiny_run, tmp_path, capsys):
    assert cli(["calibrate", "--run", str(tiny_run), "--val-split", "test", "--out", str(tmp_path / "x")]) == 2
    assert "must not choose" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert cli(["calibrate", "--run", str(tiny_run), "--out", str(other)]) == 2
    assert "not a calibrated copy" in capsys.readouterr().err and (other / "keep.txt").exists()
    with pytest.raises(ValueError):
        scale_thresholds(load_run(tiny_run).model, [1.0, 1.0])
