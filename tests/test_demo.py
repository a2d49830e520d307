"""`make demo` end to end at smoke size: every stage runs and prints its table; the files the README
names exist."""
import json
import re
import subprocess
import sys


def test_demo_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "sast_deploy.cli", "demo", "--epochs", "1", "--gap-epochs", "1",
           "--lava-samples", "2", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()

    training = [line.split() for line in lines if re.match(r"(baseline|SAST) +\d+\.\d\d ", line)]
    assert [row[0] for row in training] == ["baseline", "SAST", "baseline", "SAST"]  # MLP table, then conv-bn
    deployment = {tuple(line.split()[:2]) for line in lines if line.startswith(("emulator", "onnx", "lava"))}
    assert deployment == {("emulator", "float"), ("emulator", "fixed"), ("onnx", "float"), ("lava", "float"),
                          ("lava", "fixed")}

    assert (out / "report" / "report.md").is_file()
    for name in ("net.lava.h5", "net.onnx", "net.lava.h5.simulate-lava-fixed.json"):
        assert (out / "sast" / name).is_file()
    lava_fixed = json.loads((out / "sast" / "net.lava.h5.simulate-lava-fixed.json").read_text())
    assert lava_fixed["samples"] == 2 and lava_fixed["spike_mismatches"] == 0
    for name in ("baseline", "sast"):
        bn = json.loads((tmp_path / "demo-gap" / name / "bn-hard" / "summary.json").read_text())
        assert bn["bn_recalibrated"] == "hard"
        # the conv-bn table's last two columns are the re-estimated copy's hard accuracy and gap
        row = training[2 if name == "baseline" else 3]
        assert float(row[-2]) == round(bn["hard_acc"], 3)
