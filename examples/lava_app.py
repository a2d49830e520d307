"""An exported SAST network inside a small Lava application.

    python examples/lava_app.py runs/nmnist-sast/net.lava.h5 --samples 20
    python examples/lava_app.py --samples 5       # no artifact yet: a stand-in with random weights

event source (Lava's RingBuffer, playing N-MNIST test frames) -> SASTNetwork with its native readout
-> Classifier, a process of this app that keeps each sample's predicted class. Only the handful of
predictions leaves Lava (Var.get moves one element per message: never use it for bulk data).
"""
from __future__ import annotations

import argparse

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.io.source import RingBuffer

from sast_deploy.export.deployed import DeployedLayer, DeployedNetwork
from sast_deploy.lava import SASTNetwork


class Classifier(AbstractProcess):
    """Keeps argmax(logits) at the last step of each sample's window (every T steps from `first`)."""

    def __init__(self, *, num_classes: int, samples: int, T: int, first: int):
        super().__init__(T=T, first=first)
        self.logits = InPort(shape=(num_classes,))
        self.predictions = Var(shape=(samples,), init=-1)


@implements(proc=Classifier, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyClassifier(PyLoihiProcessModel):
    logits: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    predictions: np.ndarray = LavaPyType(np.ndarray, np.int32)

    def run_spk(self):
        logits = self.logits.recv()
        sample, phase = divmod(self.time_step - self.proc_params["first"], self.proc_params["T"])
        if phase == 0 and 0 <= sample < len(self.predictions):
            self.predictions[sample] = int(np.argmax(logits))


def stand_in(T: int = 10, hidden: int = 64) -> DeployedNetwork:
    """A float 2312 -> hidden LIF -> 10 network with random weights: shows the wiring, classifies at
    chance. Export a trained run (sast-deploy export --target lava) for real predictions."""
    rng = np.random.default_rng(0)
    layer = DeployedLayer("dense", (2 * 34 * 34,), (hidden,), rng.normal(0, 0.1, (hidden, 2312)),
                          np.zeros(hidden), np.full(hidden, 1.0), alpha=0.9)
    return DeployedNetwork([layer], rng.normal(0, 1, (10, hidden)), np.zeros(10), T, (2, 34, 34), "binary",
                           class_names=[str(d) for d in range(10)], meta={"dataset": "nmnist-small"})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("artifact", nargs="?", help="exported *.lava.h5 (default: a random stand-in network)")
    p.add_argument("--precision", choices=("float", "fixed"), help="default: fixed if the network is quantized")
    p.add_argument("--samples", type=int, default=20, help="test recordings to classify")
    p.add_argument("--data-dir", help="dataset folder, for datasets other than the embedded nmnist-small")
    args = p.parse_args(argv)

    from sast_deploy.data import load_frames  # reads the recordings (tonic); not needed by SASTNetwork

    deployed = args.artifact or stand_in()
    net = SASTNetwork(deployed, precision=args.precision, readout=True)
    dn = net.network
    data = load_frames(dn.meta.get("dataset", "nmnist-small"), "test", dn.T, args.data_dir, norm=dn.input_norm)
    idx = np.arange(min(args.samples, len(data)))
    steps = net.encode(data.frames(idx))  # [samples * T, *net.inp.shape], sample after sample
    steps = np.concatenate([steps, np.zeros((net.num_layers, *net.inp.shape), steps.dtype)])  # flush

    source = RingBuffer(data=np.moveaxis(steps, 0, -1))  # Lava wants time last
    classifier = Classifier(num_classes=len(dn.readout_bias), samples=len(idx), T=dn.T, first=net.window(0)[-1])
    source.s_out.connect(net.inp)
    net.out.connect(classifier.logits)
    try:
        net.run(condition=RunSteps(num_steps=len(steps)), run_cfg=net.run_config())
        predicted = classifier.predictions.get().astype(int)
    finally:
        net.stop()
    correct = int((predicted == data.labels[idx]).sum())
    print(f"{'artifact ' + args.artifact if args.artifact else 'stand-in network (random weights)'}, "
          f"Lava {net.precision}: {correct}/{len(idx)} correct ({correct / len(idx):.1%}); "
          f"predicted {predicted.tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
