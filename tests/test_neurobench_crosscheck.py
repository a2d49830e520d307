"""Our activity metrics against NeuroBench's own implementation (the optional extra `neurobench`),
on one network whose folded layers are its torch modules (no pooling or norm to fold): a padded,
strided conv and a dense layer, binary input, some zero weights. Skipped when NeuroBench is absent."""
import numpy as np
import pytest
import torch
from torch import nn

from export_nets import randomized
from sast_deploy.evaluation.model_activity import model_network
from sast_deploy.evaluation.activity import ActivityMeter
from sast_deploy.evaluation.reference import ModelRunner
from sast_deploy.model import LayerSpec, NetworkSpec
from sast_deploy.model.lif import LIF

neurobench = pytest.importorskip("neurobench", reason="optional extra: pip install -e '.[neurobench]'")


class BatchFirst(nn.Module):
    """NeuroBench feeds (batch, time, ...); our SNN is time-major."""

    def __init__(self, snn):
        super().__init__()
        self.snn = snn

    def forward(self, x):
        return self.snn(x.transpose(0, 1))


def test_our_numbers_equal_neurobench_on_one_model():
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import TorchModel

    spec = NetworkSpec((2, 11, 11), 5, [
        LayerSpec([{"kind": "conv", "out": 4, "kernel": 3, "stride": 2, "padding": 1}], alpha=0.9, theta_init=0.3),
        LayerSpec([{"kind": "flatten"}, {"kind": "linear", "out": 12}], alpha=0.8, theta_init=0.3),
    ])
    model = randomized(spec, seed=4, gain=2.0)
    with torch.no_grad():
        model.layers[0].block[0].weight[:, :, 0, 0] = 0.0  # zero weights: no effective synapse
        model.readout.weight[:, :3] = 0.0
    T, B = 6, 8
    x = (np.random.default_rng(4).random((T, B, *spec.input_shape)) < 0.3).astype(np.float32)

    meter = ActivityMeter(model_network(model, T, "binary"))
    meter.add(x, ModelRunner(model, torch.float32)(x)[1])
    ours = meter.result()

    model.mode = "hard"
    wrapped = TorchModel(BatchFirst(model))
    wrapped.add_activation_module(LIF)
    data = torch.utils.data.TensorDataset(torch.from_numpy(x.swapaxes(0, 1)), torch.zeros(B, dtype=torch.long))
    bench = Benchmark(wrapped, torch.utils.data.DataLoader(data, batch_size=B), [], [],
                      [[Footprint, ConnectionSparsity], [ActivationSparsity, SynapticOperations]])
    nb = bench.run(quiet=True)

    ops = nb["SynapticOperations"]
    assert ops["Effective_ACs"] == ours["synops"]["effective_acs"] > 0  # conv and dense layers on spikes
    assert ops["Effective_MACs"] == ours["synops"]["effective_macs"] > 0  # the readout on the spike rate
    assert ops["Dense"] == ours["synops"]["dense"]
    assert nb["ActivationSparsity"] == pytest.approx(ours["activation_sparsity"], abs=1e-12)
    assert nb["ConnectionSparsity"] == round(ours["connection_sparsity"], 4) > 0
    # NeuroBench counts the module's tensors; our leak alpha is a float attribute there, one value per layer here
    assert nb["Footprint"] + 4 * len(spec.layers) == ours["footprint_bytes"]["float32"]
