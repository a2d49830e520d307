"""`sast-deploy sweep` (real worker processes of the real trainer) and `sast-deploy report` on it."""
import csv
import os
import shutil

import matplotlib.image
import pytest

from conftest import TINY
from sast_deploy.cli import main as cli
from sast_deploy.errors import SastError
from sast_deploy.jsonio import read_json
from sast_deploy.training.sweep import plan_runs, run_sweep

EVAL = "--diag-samples 4 --secant-directions 2 --severities 0,0.2,0.4"
RUNS = ["baseline-rho0-seed0", "baseline-rho0-seed1", "sast-rho0.1-seed0", "sast-rho0.1-seed1"]


def sweep_args(out, *extra):
    return ["sweep", "--rho", "0,0.1", "--seeds", "0,1", "--controls", "calibration", "--epochs", "1",
            "--train-args", " ".join(TINY[2:]), "--eval-args", EVAL, "--jobs", "2", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sw"
    assert cli(sweep_args(out)) == 0
    return out


def mtimes(folder):
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(folder) for f in files}


def test_plan_gives_every_method_every_seed():
    runs = plan_runs([0, 0.1, 0.3], [0, 1, 2], control_rhos=[0.3])
    by_method = {}
    for r in runs:
        by_method.setdefault(r.method, []).append(r)
    assert {m: sorted({r.seed for r in rs}) for m, rs in by_method.items()} == {m: [0, 1, 2] for m in by_method}
    assert sorted(by_method) == ["asam", "baseline", "compute-matched", "reuse-batch", "sast", "ste"]
    assert sorted({r.rho for r in by_method["sast"]}) == [0.1, 0.3]
    assert {tuple(r.train_flags) for r in by_method["asam"]} == {("--rho", "0.3", "--asam")}
    assert {tuple(r.train_flags) for r in by_method["ste"]} == {("--rho", "0", "--forward", "ste")}
    assert all(r.copies == (["calibration"] if r.method in ("baseline", "sast") else []) for r in runs)
    bn = plan_runs([0, 0.1], [0], controls=["calibration", "bn-reestimation"])
    assert [r.copies for r in bn] == [["calibration", "bn-reestimation"]] * 2
    assert len({r.name for r in runs}) == len(runs)
    with pytest.raises(SastError, match="distinct"):
        plan_runs([0], [1, 1])


def test_sweep_finishes_every_run_and_resumes_without_redoing_work(sweep):
    manifest = read_json(sweep / "sweep.json")
    assert sorted(manifest["runs"]) == RUNS
    for name in RUNS:
        run = sweep / "runs" / name
        assert manifest["runs"][name]["status"] == "done"
        for f in ("summary.json", "evaluation.json", "calibrated/summary.json", "calibrated/evaluation.json"):
            assert (run / f).is_file(), f
        assert read_json(run / "summary.json")["seed"] == int(name[-1])
        ev = read_json(run / "evaluation.json")
        assert "robustness" in ev and ev["diagnostics"]["sam_gap"].keys() == {"0.1"}  # SAM gap at the grid's rho
    before = mtimes(sweep / "runs")
    assert cli(sweep_args(sweep)) == 0
    assert mtimes(sweep / "runs") == before  # everything was finished: nothing ran again
    assert {n: r["seconds"] for n, r in read_json(sweep / "sweep.json")["runs"].items()} \
        == {n: r["seconds"] for n, r in manifest["runs"].items()}  # the recorded run times stay


def test_an_unfinished_run_is_redone_and_only_it(sweep):
    victim = sweep / "runs" / "sast-rho0.1-seed1"
    (victim / "summary.json").unlink()  # as if training had been killed before its last write
    (victim / "model.safetensors").unlink()
    resumable = sweep / "runs" / "baseline-rho0-seed1"
    (resumable / "summary.json").unlink()  # killed after its last checkpoint: resumed, not restarted
    others = {k: v for k, v in mtimes(sweep / "runs").items() if "-rho0.1-seed1" not in k and "-rho0-seed1" not in k}
    assert cli(sweep_args(sweep)) == 0
    assert (victim / "summary.json").is_file() and (victim / "calibrated" / "evaluation.json").is_file()
    assert (resumable / "summary.json").is_file()
    log = (sweep / "logs" / "baseline-rho0-seed1.log").read_text()
    assert f"sast_deploy.train --resume {resumable}" in log and "restarting" not in log
    assert "restarting" in (sweep / "logs" / "sast-rho0.1-seed1.log").read_text()  # no model to finish from
    after = mtimes(sweep / "runs")
    assert {k: after[k] for k in others} == others


def test_failures_are_recorded_and_bad_flags_stop_before_any_work(tmp_path, capsys):
    out = tmp_path / "bad"
    args = ["sweep", "--rho", "0", "--seeds", "0", "--controls", "none", "--epochs", "1", "--out", str(out)]
    assert cli([*args, "--train-args=--no-such-flag"]) == 2
    assert "rejects its arguments" in capsys.readouterr().err and not out.exists()
    assert cli([*args, "--train-args=--T 4 --hidden 16 --lr -1"]) == 1  # the trainer itself fails
    entry = read_json(out / "sweep.json")["runs"]["baseline-rho0-seed0"]
    assert entry["status"] == "failed" and entry["failed_step"] == "train"
    assert not (out / "runs" / "baseline-rho0-seed0" / "summary.json").exists()
    assert (out / entry["log"]).stat().st_size > 0
    with pytest.raises(SastError, match="same settings"):
        run_sweep(out, [], ["--dataset", "nmnist-small", "--T", "8"], [])


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_report_renders_every_table_and_plot(sweep, capsys):
    assert cli(["report", str(sweep)]) == 0
    assert "Table II" in capsys.readouterr().out
    rep = sweep / "report"
    md = (rep / "report.md").read_text()
    for section in ("Table II analogue", "paired by seed", "Per-seed values", "Table IV analogue",
                    "Threshold calibration", "mean accuracy over severities", "area under the accuracy-severity curve",
                    "Theory diagnostics"):
        assert section in md, section
    for label in ("baseline", "SAST rho=0.1", "baseline + calibration", "SAST rho=0.1 + calibration"):
        assert f"| {label} |" in md
    # per-seed values in the CSVs are the runs' own summaries
    runs = read_csv(rep / "runs.csv")
    assert len(runs) == 8
    for row in runs:
        s = read_json(os.path.join(row["dir"], "summary.json"))
        assert float(row["transfer_gap"]) == pytest.approx(s["transfer_gap"])
    t2 = [r for r in read_csv(rep / "table2.csv") if r["label"] == "baseline" and r["metric"] == "hard"][0]
    hard = sorted(float(r["hard_acc"]) for r in runs if r["label"] == "baseline")
    assert float(t2["mean"]) == pytest.approx(sum(hard) / 2) and float(t2["min"]) == hard[0]
    assert len(read_csv(rep / "robustness.csv")) == 8 * 3 * 2
    assert len(read_csv(rep / "diagnostics.csv")) == 4 and len(read_csv(rep / "calibration.csv")) == 4
    assert float(read_csv(rep / "table4.csv")[0]["time_per_epoch_s_factor"]) == 1.0
    for name in ("accuracy_vs_rho", "robustness", "gap_strip"):
        image = matplotlib.image.imread(rep / "plots" / f"{name}.png")
        assert image.shape[0] > 200 and image.shape[1] > 400 and image.std() > 0.05, name


def test_report_of_an_empty_folder_says_so(tmp_path, capsys):
    assert cli(["report", str(tmp_path)]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_stale_evaluations_are_left_out_and_the_demo_step_renews_them(sweep, tmp_path):
    from sast_deploy.evaluation.report import evaluate_and_report, write_report

    folder = tmp_path / "demo"
    shutil.copytree(sweep / "runs" / "baseline-rho0-seed0", folder / "run", ignore=shutil.ignore_patterns("calibrated"))
    summary = folder / "run" / "summary.json"
    later = os.stat(folder / "run" / "evaluation.json").st_mtime_ns + 10**9
    os.utime(summary, ns=(later, later))  # as if the run had been retrained after its evaluation
    md = write_report(folder)["markdown"].read_text()
    assert "without a current evaluation.json" in md and "## Robustness" not in md
    paths = evaluate_and_report(folder, progress=False, diag_samples=4, directions=2, severities=(0, 0.4))
    md = paths["markdown"].read_text()
    assert "without a current evaluation.json" not in md and "## Robustness" in md and "## Theory diagnostics" in md
    assert {"plot_accuracy_vs_rho", "plot_robustness", "plot_gap_strip"} <= set(paths)


def test_study_report_gives_one_row_per_setting_from_the_runs_own_summaries(sweep, capsys):
    other = sweep.parent / "narrow"
    assert cli(["sweep", "--rho", "0", "--seeds", "0,1", "--controls", "calibration", "--eval-extras", "none",
                "--epochs", "1", "--train-args", "--T 4 --hidden 8", "--jobs", "2", "--out", str(other)]) == 0
    assert not (other / "runs" / "baseline-rho0-seed0" / "evaluation.json").exists()  # --eval-extras none
    assert cli(["report", str(sweep.parent)]) == 0
    assert "differ in hidden" in (sweep.parent / "report" / "report.md").read_text()  # pooled rows are flagged
    assert cli(["report", str(sweep.parent), "--by", "hidden"]) == 0
    assert "| hidden=8 |" in capsys.readouterr().out
    rep = sweep.parent / "report"
    rows = {(r["setting"], r["label"]): r for r in read_csv(rep / "study.csv")}
    assert set(rows) == {(f"hidden={h}", label) for h in (8, 16) for label in ("baseline", "baseline + calibration")} \
        | {("hidden=16", "SAST rho=0.1"), ("hidden=16", "SAST rho=0.1 + calibration")}
    for h, folder in ((8, other), (16, sweep)):
        gaps = [read_json(folder / "runs" / f"baseline-rho0-seed{s}" / "summary.json")["transfer_gap"] for s in (0, 1)]
        row = rows[(f"hidden={h}", "baseline")]
        assert row["gap_per_seed"] == " / ".join(f"{g:.3f}" for g in gaps) and row["seeds"] == "0 / 1"
        assert float(row["gap_median"]) == pytest.approx(sum(gaps) / 2)
    sast = [read_json(sweep / "runs" / f"sast-rho0.1-seed{s}" / "summary.json")["hard_acc"]
            - read_json(sweep / "runs" / f"baseline-rho0-seed{s}" / "summary.json")["hard_acc"] for s in (0, 1)]
    assert float(rows[("hidden=16", "SAST rho=0.1")]["hard_delta_median"]) == pytest.approx(sum(sast) / 2)
    md = (rep / "study.md").read_text()
    assert "## Transfer gap after the post-hoc controls" in md and "paired by seed" in md
    for name in ("study_gap", "study_accuracy"):
        image = matplotlib.image.imread(rep / "plots" / f"{name}.png")
        assert image.shape[0] > 300 and image.std() > 0.05, name
    assert cli(["report", str(sweep.parent), "--by", "nosuch"]) == 2
    assert "these differ between them: hidden" in capsys.readouterr().err
