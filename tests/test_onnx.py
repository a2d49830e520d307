"""ONNX export checked with the real onnx checker and onnxruntime."""
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import sast_deploy
from export_nets import conv_spec, frames, hard_forward, randomized
from sast_deploy.errors import ArtifactError
from sast_deploy.export.fold import fold_network
from sast_deploy.export.onnx import export_onnx
from sast_deploy.export.onnx_model import OnnxNetwork
from sast_deploy.export.quantize import quantize_network
from sast_deploy.hardware_sim.conformance import explain_flips
from sast_deploy.hardware_sim.emulator import emulate


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The conv net (binary input) in all four forms, exported once."""
    d = tmp_path_factory.mktemp("onnx")
    model = randomized(conv_spec())
    net, _ = quantize_network(fold_network(model, 6, "binary", meta={"source": {"run": "runs/x"}}))
    paths = {}
    for precision in ("float", "fixed"):
        for graph in ("sequence", "step"):
            paths[precision, graph] = d / f"{precision}-{graph}.onnx"
            export_onnx(net, paths[precision, graph], graph, precision)
    return model, net, paths


def test_files_are_self_contained_checked_and_carry_no_local_paths(exported):
    _, net, paths = exported
    repo = str(Path(sast_deploy.__file__).resolve().parent.parent)
    torch_dir = str(Path(torch.__file__).resolve().parent.parent)
    for path in paths.values():
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["spike_rule"].startswith("s = 1 iff u > theta") and meta["T"] == "6"
        blob = path.read_bytes()
        assert repo.encode() not in blob and torch_dir.encode() not in blob
        assert list(path.parent.glob(path.name + ".data")) == []  # no external data
        assert not any(n.metadata_props for n in model.graph.node)


def test_float_sequence_reproduces_the_torch_hard_model(exported):
    model, _, paths = exported
    x = frames(conv_spec(), T=6, B=20)
    res = OnnxNetwork(paths["float", "sequence"]).run(x, batch_size=7)
    with torch.no_grad(), model.in_mode("hard"):
        logits, spikes = model(torch.from_numpy(x), return_spikes=True)
    assert np.abs(res.logits - logits.numpy()).max() <= 1e-5
    _, _, pots = hard_forward(model, x)
    report = explain_flips(res.spikes, [s.numpy() for s in spikes], pots,
                           [l.lif.theta.detach().double().numpy() for l in model.layers])
    assert report["all_ties"]  # a flip, if any, sits at a float tie
    assert report["spike_mismatches"] == 0 and all(s.sum() > 0 for s in res.spikes)


def test_sequence_has_dynamic_T_and_batch_and_the_step_graph_streams_the_same(exported):
    _, _, paths = exported
    x = frames(conv_spec(), T=9, B=5, seed=3)
    for precision in ("float", "fixed"):
        seq = OnnxNetwork(paths[precision, "sequence"])
        assert seq.dynamic_T and seq.run(x).counts.shape == (5, 20)  # T = 9, not the exported 6
        ref = seq.run(x[:6])
        step = OnnxNetwork(paths[precision, "step"])
        state = step.initial_state(5)
        for t in range(6):
            logits, state = step.step(x[t], state)
        assert np.array_equal(state["counts"], ref.counts) and np.array_equal(state["s3"], ref.spikes[2][-1])
        np.testing.assert_allclose(logits, ref.logits, rtol=0, atol=1e-6)


def test_fixed_graph_equals_the_fixed_point_emulator_exactly(exported):
    _, net, paths = exported
    x = frames(conv_spec(), T=6, B=20, seed=1)
    res, em = OnnxNetwork(paths["fixed", "sequence"]).run(x), emulate(net, x, "fixed")
    assert np.array_equal(res.counts, em.counts)
    assert all(np.array_equal(a, b) for a, b in zip(res.spikes, em.spikes))
    assert np.abs(res.logits - em.logits).max() <= 1e-5


def test_flip_report_names_the_first_flip_and_its_margin():
    ref = [np.zeros((3, 2, 4), np.uint8), np.zeros((3, 2, 2), np.uint8)]
    got = [r.copy() for r in ref]
    got[0][1, 1, 2] = 1  # a tie ...
    got[1][2, 1, 0] = 1  # ... and what follows from it
    pots = [np.zeros((3, 2, 4)), np.zeros((3, 2, 2))]
    pots[0][1, 1, 2] = 0.5 + 1e-9
    rep = explain_flips(got, ref, pots, [np.full(4, 0.5), np.full(2, 0.5)])
    assert rep["spike_mismatches"] == 2 and rep["samples_affected"] == 1 and rep["all_ties"]
    assert rep["first_flips"][0] | {"margin": 0} == {"sample": 1, "layer": 1, "t": 2, "neuron": 2, "margin": 0, "tie": True}
    pots[0][1, 1, 2] = 0.9
    assert not explain_flips(got, ref, pots, [np.full(4, 0.5), np.full(2, 0.5)])["all_ties"]


def _stranger(path, inputs, outputs, meta=None):
    node = helper.make_node("Identity", [inputs[0]], [outputs[0]])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in outputs])
    model = helper.make_model(graph)
    for k, v in (meta or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, path)


def test_stranger_models_are_refused_with_one_line(exported, tmp_path):
    _, _, paths = exported
    _stranger(tmp_path / "plain.onnx", ["input"], ["output"])
    with pytest.raises(ArtifactError, match="not a sast-deploy ONNX network"):
        OnnxNetwork(tmp_path / "plain.onnx")
    meta = {p.key: p.value for p in onnx.load(paths["float", "sequence"]).metadata_props}
    _stranger(tmp_path / "mimic.onnx", ["input"], ["logits"], meta)
    with pytest.raises(ArtifactError, match="unexpected signature: inputs \\['input'\\]") as e:
        OnnxNetwork(tmp_path / "mimic.onnx")
    assert "\n" not in str(e.value)
    _stranger(tmp_path / "old.onnx", ["x"], ["logits"], {**meta, "version": "0"})
    with pytest.raises(ArtifactError, match="version 0 is not supported"):
        OnnxNetwork(tmp_path / "old.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ArtifactError, match="not a readable ONNX model"):
        OnnxNetwork(tmp_path / "junk.onnx")
