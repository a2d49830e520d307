"""An exported SAST network inside a small Lava application.

    make demo                                                   # exports runs/demo/sast/net.lava.h5
    python examples/lava_app.py --samples 20                    # runs that artifact
    python examples/lava_app.py runs/nmnist-sast/net.lava.h5 --precision float

event source (Lava's RingBuffer, playing test recordings of the dataset the artifact records, binned
as in training) -> SASTNetwork with its native readout -> Classifier, a process of this app that
keeps each sample's predicted class. Only the handful of predictions leaves Lava (Var.get moves one
element per message: never use it for bulk data).
"""
from __future__ import annotations

import argparse
import os

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

from sast_deploy.lava import SASTNetwork

DEMO_ARTIFACT = "runs/demo/sast/net.lava.h5"


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("artifact", nargs="?", default=DEMO_ARTIFACT, help="exported *.lava.h5 (make demo writes the default)")
    p.add_argument("--precision", choices=("float", "fixed"), help="default: fixed if the network is quantized")
    p.add_argument("--samples", type=int, default=20, help="test recordings to classify, evenly spaced over the split")
    p.add_argument("--data-dir", help="dataset folder, for datasets other than the embedded nmnist-small")
    args = p.parse_args(argv)

    if not os.path.isfile(args.artifact):
        p.error(f"no artifact at {args.artifact}: run `make demo` or `sast-deploy export --target lava`, or pass one")
    from sast_deploy.data import load_frames  # reads the recordings (tonic); not needed by SASTNetwork
    from sast_deploy.hardware_sim.simulation import subset

    net = SASTNetwork(args.artifact, precision=args.precision, readout=True)
    dn = net.network
    binning = dn.meta["data"]  # dataset, T, input_norm, downsample: as in training
    data = load_frames(binning["dataset"], "test", dn.T, args.data_dir, dn.input_norm, binning.get("downsample"))
    idx = subset(len(data), args.samples)
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
    print(f"{args.artifact}, Lava {net.precision}: {correct}/{len(idx)} correct ({correct / len(idx):.1%}); "
          f"predicted {predicted.tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
