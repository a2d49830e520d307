"""`train --qat` and `--init-from`: quantization-aware training and fine-tuning, through to an export
whose fixed-point network reproduces the trained model's hard spikes exactly."""
import json
from dataclasses import replace

import pytest
import torch

from sast_deploy.cli import main
from sast_deploy.errors import ConfigError
from sast_deploy.model import load_model
from sast_deploy.model.qat import is_qat
from sast_deploy.training import TrainConfig, load_data, train

TINY = TrainConfig(T=5, max_samples=64, hidden=16, batch_size=16, epochs=2, device="cpu")


@pytest.fixture(scope="module")
def data():
    return load_data(TINY, progress=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory, data):
    cfg = replace(TINY, out=str(tmp_path_factory.mktemp("runs") / "float"))
    train(cfg, progress=False, data=data)
    return cfg.out


def test_qat_sast_run_exports_to_fixed_point_with_zero_mismatches(tmp_path, data, capsys):
    cfg = replace(TINY, qat=True, rho=0.3, out=str(tmp_path / "qat"))
    summary = train(cfg, progress=False, data=data)
    assert summary["qat"] and summary["method"] == "SAST (QAT)"
    model, meta = load_model(tmp_path / "qat" / "model.safetensors")
    assert is_qat(model) and len(meta["qat"]) == 1  # comes back on its frozen grid
    out = tmp_path / "net.lava.h5"
    assert main(["export", "--run", cfg.out, "--target", "lava", "--qat-run", "--out", str(out),
                 "--verify-samples", "32"]) == 0
    report = json.loads((tmp_path / "net.lava.h5.json").read_text())
    assert report["verify"]["fixed_vs_qat_model_mismatches"] == 0


def test_fine_tune_from_a_run_starts_from_its_weights(tmp_path, data, source):
    start, _ = load_model(f"{source}/model.safetensors")
    cfg = replace(TINY, hidden=256, init_from=source, qat=True, epochs=1, lr=1e-9, out=str(tmp_path / "ft"))
    train(cfg, progress=False, data=data)
    tuned, meta = load_model(tmp_path / "ft" / "model.safetensors")
    assert meta["train"]["init_from"] == source
    for name, w in start.state_dict().items():  # a negligible lr: the weights are the source's
        torch.testing.assert_close(tuned.state_dict()[name], w, atol=1e-6, rtol=0)


def test_qat_training_is_deterministic(tmp_path, data):
    """The grid is a pure function of the parameters, so a QAT run is as reproducible (and its
    resume as exact) as a float one."""
    a = train(replace(TINY, qat=True, epochs=1, out=str(tmp_path / "a")), progress=False, data=data)
    b = train(replace(TINY, qat=True, epochs=1, out=str(tmp_path / "b")), progress=False, data=data)
    wa, wb = (load_model(tmp_path / n / "model.safetensors")[0].state_dict() for n in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and a["hard_acc"] == b["hard_acc"]


def test_init_from_refuses_other_data_and_architecture_flags(tmp_path, data, source):
    with pytest.raises(ConfigError, match="--T 5"):
        train(replace(TINY, hidden=256, T=6, init_from=source, out=str(tmp_path / "a")), progress=False)
    with pytest.raises(ConfigError, match="drop --hidden"):
        replace(TINY, hidden=32, init_from=source).validate()
