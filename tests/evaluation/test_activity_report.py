"""Activity next to accuracy: summary.json (trainer), evaluation.json (evaluate) and the report's
columns, table and plot, on real tiny runs."""
import csv
import shutil

import matplotlib.image
import pytest

from conftest import TINY
from sast_deploy.cli import main as cli
from sast_deploy.evaluation.activity import HEADLINE
from sast_deploy.evaluation.model_activity import model_activity
from sast_deploy.evaluation.protocol import evaluate_run
from sast_deploy.jsonio import read_json
from sast_deploy.training.rundir import load_run


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_summary_and_evaluation_count_the_hard_model_on_the_test_split(tiny_run, tmp_path):
    summary = read_json(tiny_run / "summary.json")
    run = load_run(tiny_run)
    want = model_activity(run.model, run.frames("test", progress=False))
    assert {k: summary[k] for k in HEADLINE} == {k: want[k] for k in HEADLINE}
    assert summary["activity"]["totals"] == want["totals"] and summary["activity"]["samples"] == summary["samples"]
    assert summary["spikes_per_inference"] > 0 and summary["synops_per_inference"] > 0
    ev = evaluate_run(tiny_run, out=tmp_path / "ev.json", progress=False)
    assert ev["activity"] == summary["activity"]


@pytest.fixture(scope="module")
def two_runs(tiny_run, tmp_path_factory):
    """The tiny baseline, a tiny SAST run beside it, and a calibrated copy of the baseline (whose
    summary has no activity: it comes from its evaluation)."""
    folder = tmp_path_factory.mktemp("two")
    shutil.copytree(tiny_run, folder / "base", ignore=shutil.ignore_patterns("evaluation.json", "calibrated"))
    assert cli(["train", *TINY, "--rho", "0.1", "--out", str(folder / "sast")]) == 0
    assert cli(["calibrate", "--run", str(folder / "base")]) == 0
    assert cli(["evaluate", "--run", str(folder / "base" / "calibrated")]) == 0
    return folder


def test_report_shows_activity_per_run_and_method_with_its_plot(two_runs, capsys):
    assert cli(["report", str(two_runs)]) == 0
    rep = two_runs / "report"
    runs = read_csv(rep / "runs.csv")
    assert len(runs) == 3
    for row in runs:
        calibrated = row["label"].endswith("calibration")
        source = read_json(f"{row['dir']}/{'evaluation' if calibrated else 'summary'}.json")
        for key in HEADLINE:
            assert float(row[key]) == pytest.approx(source[key])
    activity = read_csv(rep / "activity.csv")
    assert [r["label"] for r in activity] == ["baseline", "SAST rho=0.1", "baseline + calibration"]
    assert all(float(r["effective_acs"]) + float(r["effective_macs"]) == pytest.approx(float(r["synops_per_inference"]))
               for r in activity)
    md = (rep / "report.md").read_text()
    assert "## Activity (hard mode, per inference)" in md
    table = [[c.strip() for c in line.split("|")[1:-1]] for line in md.split("## Activity")[1].splitlines()
             if line.startswith("| ")]
    header, rows = table[0], {row[0]: row for row in table[1:]}
    assert rows["baseline"][header.index("x baseline")] == "1.000"  # spikes, against itself
    sast = float(activity[1]["spikes_per_inference"]) / float(activity[0]["spikes_per_inference"])
    assert rows["SAST rho=0.1"][header.index("x baseline")] == f"{sast:.3f}"
    image = matplotlib.image.imread(rep / "plots" / "accuracy_vs_synops.png")
    assert image.shape[0] > 200 and image.shape[1] > 400 and image.std() > 0.05
