"""The Lava artifact: round trip, and clear one-line errors on every kind of bad file."""
import subprocess
import sys

import h5py
import numpy as np
import pytest

from export_nets import conv_spec, frames, randomized
from sast_deploy.errors import ArtifactError
from sast_deploy.export.artifact import load_artifact, save_artifact
from sast_deploy.export.fold import fold_network
from sast_deploy.export.quantize import quantize_network
from sast_deploy.hardware_sim.emulator import emulate


@pytest.fixture(scope="module")
def net():
    model = randomized(conv_spec())
    meta = {"source": {"run": "runs/x", "metrics": {"hard_acc": 0.5}}, "data": {"dataset": "nmnist-small"}}
    q, _ = quantize_network(fold_network(model, 6, "max", meta=meta))
    q.class_names = ["a", "b", "c", "d", "e"]
    return q


@pytest.fixture
def saved(net, tmp_path):
    path = tmp_path / "net.lava.h5"
    save_artifact(path, net)
    return path


def test_round_trip_keeps_everything(net, saved):
    back = load_artifact(saved)
    assert (back.T, back.input_shape, back.input_norm, back.class_names, back.meta) == \
           (net.T, net.input_shape, net.input_norm, net.class_names, net.meta)
    for a, b in zip(net.layers, back.layers):
        assert (a.kind, a.in_shape, a.out_shape, a.stride, a.padding, a.alpha) == \
               (b.kind, b.in_shape, b.out_shape, b.stride, b.padding, b.alpha)
        for name in ("weight", "bias", "theta"):
            assert np.array_equal(getattr(a, name), getattr(b, name))
        for name in ("w_int", "bias_mant", "vth", "weight_exp", "bias_exp", "dv", "scale", "input_scale"):
            assert np.array_equal(getattr(a.fixed, name), getattr(b.fixed, name))
    x = frames(conv_spec(), 6, 4, binary=False)
    assert np.array_equal(emulate(net, x, "fixed").logits, emulate(back, x, "fixed").logits)


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def _replace(name, data):
    def fn(f):
        del f[name]
        f.create_dataset(name, data=data)
    return fn


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated or corrupt"),
    (lambda p: p.write_text("hello"), "not a readable HDF5 file"),
    (lambda p: _edit(p, lambda f: f.attrs.__setitem__("version", 99)), "version 99 is not supported"),
    (lambda p: _edit(p, lambda f: f.attrs.__delitem__("T")), "missing attribute 'T'"),
    (lambda p: _edit(p, lambda f: f.__delitem__("layers/1/theta")), "missing dataset 'layers/1/theta'"),
    (lambda p: _edit(p, _replace("layers/1/theta", np.full((8, 1, 1), np.nan))), "NaN or Inf"),
    (lambda p: _edit(p, _replace("layers/2/weight", np.zeros((20, 7)))), "has shape \\(20, 7\\), expected \\(20, 8\\)"),
    (lambda p: _edit(p, lambda f: f["layers/1"].attrs.__setitem__("out_shape", np.array([8, 2, 2]))), "give 1x1, but out_shape"),
    (lambda p: _edit(p, _replace("layers/0/fixed/vth", np.full((6, 6, 6), 1.5))), "expected integer"),
    (lambda p: _edit(p, _replace("layers/0/fixed/vth", np.full((6, 6, 6), 200000))), "vth lies outside"),
    (lambda p: _edit(p, lambda f: f["layers/1/fixed"].attrs.__setitem__("weight_exp", 2)), "ignores weight_exp"),
    (lambda p: _edit(p, lambda f: f["layers/0/fixed"].attrs.__setitem__("input_scale", 1)), "does not match input_norm"),
    (lambda p: _edit(p, lambda f: f["layers/2"].attrs.__setitem__("kind", "lstm")), "unknown kind 'lstm'"),
    (lambda p: _edit(p, lambda f: f.attrs.__setitem__("class_names", "[not json")), "not valid JSON"),
])
def test_bad_artifacts_fail_with_one_clear_line(saved, damage, message):
    damage(saved)
    with pytest.raises(ArtifactError, match=message) as e:
        load_artifact(saved)
    assert str(saved) in str(e.value) and "\n" not in str(e.value)


def test_foreign_hdf5_and_missing_files(tmp_path):
    foreign = tmp_path / "netx.h5"
    with h5py.File(foreign, "w") as f:  # e.g. a lava-dl netx network
        f.create_dataset("layer/0/weight", data=np.zeros((3, 3)))
    with pytest.raises(ArtifactError, match="not a sast-deploy Lava artifact"):
        load_artifact(foreign)
    with pytest.raises(ArtifactError, match="no such file"):
        load_artifact(tmp_path / "missing.lava.h5")


def test_mixed_sign_odd_dense_weights_are_refused(net, tmp_path):
    path = tmp_path / "odd.lava.h5"
    save_artifact(path, net)
    w = net.layers[2].fixed.w_int.copy()
    w[0, 0] = 3
    _edit(path, _replace("layers/2/fixed/w_int", w.astype(np.int16)))
    with pytest.raises(ArtifactError, match="must be even"):
        load_artifact(path)


def test_reading_and_emulating_an_artifact_needs_no_torch(saved):
    """What a Lava app imports to run an exported network must not pull in the training stack."""
    code = ("import sys, numpy as np\n"
            "from sast_deploy.export.artifact import load_artifact\n"
            "from sast_deploy.hardware_sim.emulator import emulate\n"
            f"net = load_artifact({str(saved)!r})\n"
            "em = emulate(net, np.zeros((net.T, 2, *net.input_shape)), 'fixed')\n"
            "assert em.logits.shape == (2, 5)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
