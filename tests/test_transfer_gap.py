"""The transfer-gap tools: the conv-bn preset, hard-mode BatchNorm re-estimation (a post-hoc copy that
evaluate and export read), and the deployment of BatchNorm networks (docs/transfer-gap.md)."""
import json

import numpy as np
import pytest
import torch

from sast_deploy.cli import main as cli
from sast_deploy.errors import ConfigError, SpecError
from sast_deploy.evaluation.accuracy import predict
from sast_deploy.jsonio import read_json
from sast_deploy.model import load_model, preset
from sast_deploy.training import TrainConfig
from sast_deploy.training.bn_recalibration import batchnorms, reestimate, with_statistics
from sast_deploy.training.calibration import source_model
from sast_deploy.training.rundir import load_run

# a small conv-bn network trained for one epoch on a fixed subset of the embedded data (a few seconds)
TINY_BN = ["--preset", "conv-bn", "--T", "4", "--max-samples", "48", "--epochs", "1", "--batch-size", "16"]


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("convbn") / "run"
    assert cli(["train", *TINY_BN, "--out", str(out), "--quiet"]) == 0
    return out


def test_conv_bn_preset_is_the_pilot_network_and_one_name_per_network():
    spec = preset("conv-bn", (2, 34, 34), 10, pool="max", dense=128)
    kinds = [[op["kind"] for op in layer.ops] for layer in spec.layers]
    assert kinds == [["conv", "batchnorm", "maxpool"], ["conv", "batchnorm", "maxpool"],
                     ["flatten", "linear", "batchnorm"]]
    assert spec.layer_shapes() == [(16, 17, 17), (32, 8, 8), (128,)]
    assert spec.extensions() == ["batchnorm", "maxpool"]
    assert all(op["kind"] != "batchnorm" for layer in preset("conv", (2, 34, 34), 10).layers for op in layer.ops)
    with pytest.raises(SpecError, match="conv-bn preset"):
        preset("conv", (2, 34, 34), 10, norm="batchnorm")
    with pytest.raises(SpecError, match="built in"):
        preset("conv-bn", (2, 34, 34), 10, norm="affine")
    assert TrainConfig(preset="conv-bn").bn == "train"  # recorded as what the network has
    for bad, match in ((dict(preset="conv", bn="train"), "conv-bn"), (dict(preset="conv-bn", bn="affine"), "built in"),
                       (dict(preset="conv", bn_recalibrate="hard"), "has none")):
        with pytest.raises(ConfigError, match=match):
            TrainConfig(**bad).validate()
    with pytest.raises(SpecError, match="--dense"):
        preset("mlp", (2, 34, 34), 10, dense=8)


def hard_bn_inputs(model, frames):
    """Every BatchNorm's input over `frames` with the model in hard, eval mode: [channels, values]."""
    bns = list(batchnorms(model).values())
    seen = [[] for _ in bns]
    handles = [bn.register_forward_pre_hook(lambda m, a, k=k: seen[k].append(a[0].detach().double()))
               for k, bn in enumerate(bns)]
    predict(model, frames, "hard")
    for h in handles:
        h.remove()
    return [torch.cat(s).transpose(0, 1).flatten(1) for s in seen]


def test_reestimation_sets_the_exact_hard_mode_statistics_and_nothing_else(bn_run):
    run = load_run(bn_run)
    train = run.frames("train", progress=False).subset(np.arange(24))
    model, layers = reestimate(run.model, train)
    # the running statistics are the mean and unbiased variance of each BatchNorm's input in hard mode,
    # measured with the re-estimated network (so the second layer sees the first one's new statistics)
    for bn, x in zip(batchnorms(model).values(), hard_bn_inputs(model, train)):
        torch.testing.assert_close(bn.running_mean.double(), x.mean(1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var.double(), x.var(1), rtol=1e-5, atol=1e-6)
    assert [r["count"] for r in layers] == [24 * 4 * 34 * 34, 24 * 4 * 17 * 17]
    before, after = run.model.state_dict(), model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("running_mean", "running_var")) for k in changed)
    # the first layer sees the input, the same in both modes; the second sees spikes, which differ
    assert layers[0]["hard_vs_running"] == layers[0]["surrogate_vs_running"]
    assert layers[1]["hard_vs_running"] != layers[1]["surrogate_vs_running"]
    with pytest.raises(Exception, match="do not match"):
        with_statistics(model, {"layers.0.block.1.running_mean": [0.0]})


def test_bn_recalibrated_copy_is_a_run_that_evaluate_reads(bn_run, tmp_path, capsys):
    assert cli(["calibrate", "--run", str(bn_run), "--bn-recalibrate", "hard"]) == 0
    out = bn_run / "bn-hard"
    printed = capsys.readouterr().out
    assert "re-estimated in hard mode on 48 train recordings" in printed and "std ratio" in printed
    s, rec = read_json(out / "summary.json"), read_json(out / "bn_recalibration.json")
    copy, meta = load_model(out / "model.safetensors")
    source = load_run(bn_run)
    assert rec["samples"] == 48 and rec["split"] == "train" and s["bn_recalibrated"] == "hard"
    # the copy's surrogate row is the trained network: source_model restores the training-time statistics
    restored = source_model(copy, meta).state_dict()
    assert all(torch.equal(v, restored[k]) for k, v in source.model.state_dict().items())
    test = source.frames("test", progress=False)
    assert s["hard_acc"] == float((predict(copy, test, "hard") == test.labels).mean())
    assert s["surrogate_acc"] == float((predict(source.model, test, "surrogate") == test.labels).mean())
    assert s["transfer_gap"] == s["surrogate_acc"] - s["hard_acc"]
    ev = tmp_path / "ev.json"
    assert cli(["evaluate", "--run", str(out), "--out", str(ev)]) == 0
    e = read_json(ev)
    assert (e["surrogate_acc"], e["hard_acc"]) == (s["surrogate_acc"], s["hard_acc"])
    assert e["bn_recalibration"]["mode"] == "hard" and "source_statistics" not in e["bn_recalibration"]
    assert "BN re-estimated copy" in capsys.readouterr().out
    # a copy is not re-estimated or calibrated again, and diagnostics belong to the source run
    assert cli(["calibrate", "--run", str(out), "--bn-recalibrate", "hard"]) == 2
    assert cli(["calibrate", "--run", str(out)]) == 2
    assert cli(["evaluate", "--run", str(out), "--diagnostics", "--out", str(ev)]) == 2
    assert "post-hoc copy" in capsys.readouterr().err
    # the report gives the copy its own row and section
    assert cli(["report", str(bn_run), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| baseline + BN re-estimation |" in md and "## BatchNorm re-estimation" in md
    assert f"{rec['test']['source_hard_acc']:.3f} -> {s['hard_acc']:.3f}" in md


def test_bn_recalibration_refuses_networks_without_batchnorm(tmp_path, capsys):
    run = tmp_path / "mlp"
    assert cli(["train", "--T", "3", "--max-samples", "16", "--epochs", "1", "--hidden", "8", "--out", str(run),
                "--quiet"]) == 0
    assert cli(["calibrate", "--run", str(run), "--bn-recalibrate", "hard"]) == 2
    assert "no BatchNorm" in capsys.readouterr().err and not (run / "bn-hard").exists()


def test_training_end_option_writes_the_same_copy(bn_run, tmp_path):
    out = tmp_path / "run"
    assert cli(["train", *TINY_BN, "--bn-recalibrate", "hard", "--out", str(out), "--quiet"]) == 0
    ours, theirs = read_json(out / "bn-hard" / "summary.json"), read_json(bn_run / "bn-hard" / "summary.json")
    assert ours["hard_acc"] == theirs["hard_acc"] and ours["surrogate_acc"] == theirs["surrogate_acc"]
    a = load_model(out / "bn-hard" / "model.safetensors")[0].state_dict()
    b = load_model(bn_run / "bn-hard" / "model.safetensors")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bn_recalibrated_model_deploys_spike_exact_to_lava_artifact_and_onnx(bn_run, tmp_path, capsys):
    """AvgPool conv-bn: the export folds the re-estimated statistics; the emulator (float) reproduces the
    torch hard model spike for spike, and so does onnxruntime."""
    copy = bn_run / "bn-hard"
    if not copy.is_dir():
        assert cli(["calibrate", "--run", str(bn_run), "--bn-recalibrate", "hard"]) == 0
    lava, onnx = tmp_path / "net.lava.h5", tmp_path / "net.onnx"
    assert cli(["export", "--run", str(copy), "--target", "lava", "--out", str(lava), "--verify-samples", "24"]) == 0
    assert cli(["export", "--run", str(copy), "--target", "onnx", "--out", str(onnx), "--verify-samples", "24"]) == 0
    lava_report = json.loads((tmp_path / "net.lava.h5.json").read_text())["verify"]
    onnx_report = json.loads((tmp_path / "net.onnx.json").read_text())["verify"]
    assert lava_report["emulator_float_vs_torch"]["spike_mismatches"] == 0
    assert onnx_report["onnx_vs_torch"]["spike_mismatches"] == 0
    # what was folded is the re-estimated statistics, not the training-time ones
    from sast_deploy.export.artifact import load_artifact
    from sast_deploy.export.fold import fold_network

    net = load_artifact(lava)
    model, meta = load_model(copy / "model.safetensors")
    ours, theirs = fold_network(model, 4, "binary"), fold_network(source_model(model, meta), 4, "binary")
    for mine, deployed, other in zip(ours.layers, net.layers, theirs.layers):
        np.testing.assert_array_equal(deployed.bias, mine.bias)
        assert not np.array_equal(deployed.bias, other.bias)
