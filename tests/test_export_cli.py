"""`sast-deploy export` end to end on run directories of the embedded dataset."""
import json

import pytest

from export_nets import mlp_spec, randomized
from sast_deploy.cli import main
from sast_deploy.export.artifact import load_artifact
from sast_deploy.jsonio import write_json
from sast_deploy.model import save_model
from sast_deploy.model.qat import enable_qat, qat_grids

T = 4


def _run_dir(path, qat: bool):
    model = randomized(mlp_spec(input_shape=(2, 34, 34), hidden=(32,), classes=10, alphas=(0.9,)), gain=3.0)
    meta = {"data": {"dataset": "nmnist-small", "T": T, "input_norm": "binary", "downsample": 1}}
    if qat:
        enable_qat(model, "binary")
        meta["qat"] = qat_grids(model)
    save_model(path / "model.safetensors", model, meta)
    write_json(path / "summary.json", {"surrogate_acc": 0.5, "hard_acc": 0.4, "transfer_gap": 0.1})
    return path


@pytest.mark.parametrize("qat", [False, True])
def test_export_lava_prints_layers_quantization_and_size_and_checks_the_result(tmp_path, capsys, qat):
    run = _run_dir(tmp_path, qat)
    out = tmp_path / "net.lava.h5"
    args = ["export", "--run", str(run), "--target", "lava", "--out", str(out), "--verify-samples", "24"]
    assert main(args + (["--qat-run"] if qat else [])) == 0
    text = capsys.readouterr().out
    assert "layer 1: dense (2312,) -> (32,)" in text and "weight err" in text and "KiB" in text
    report = json.loads((tmp_path / "net.lava.h5.json").read_text())
    assert report["qat"] == qat and report["files"][str(out)] == out.stat().st_size
    assert report["parameters"] == 2312 * 32 + 2 * 32 + 32 * 10 + 10
    v = report["verify"]
    if qat:
        assert v["fixed_vs_qat_model_mismatches"] == 0
    else:
        assert v["emulator_float_vs_torch"]["spike_mismatches"] == 0
    net = load_artifact(out)
    assert net.is_quantized and net.meta["source"]["metrics"]["hard_acc"] == 0.4 and net.meta["source"]["qat"] == qat


def test_export_onnx_checks_onnxruntime_against_torch(tmp_path):
    run = _run_dir(tmp_path, qat=False)
    out = tmp_path / "net.onnx"
    assert main(["export", "--run", str(run), "--target", "onnx", "--out", str(out), "--verify-samples", "16"]) == 0
    report = json.loads((tmp_path / "net.onnx.json").read_text())
    assert set(report["files"]) == {str(out), str(tmp_path / "net.step.onnx")}
    assert report["verify"]["onnx_max_logit_diff"] <= 1e-5
    assert report["verify"]["onnx_vs_torch"]["spike_mismatches"] == 0


def test_export_errors_are_one_line(tmp_path, capsys):
    run = _run_dir(tmp_path, qat=False)
    assert main(["export", "--run", str(run), "--target", "lava", "--qat-run", "--out", str(tmp_path / "n.h5")]) == 2
    assert main(["export", "--run", str(tmp_path / "nope"), "--target", "lava", "--out", str(tmp_path / "n.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no QAT grids" in err[0] and "no model.safetensors" in err[1]
