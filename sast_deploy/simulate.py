"""`sast-deploy simulate` (= `python -m sast_deploy.simulate`): run an exported network with hard
spikes on one backend over a dataset split, next to its references, and write REPORT.json.

Backends: lava (Lava CPU, *.lava.h5), emulator (the batched numpy emulator, *.lava.h5), onnx
(onnxruntime, the *.onnx sequence graph), torch (the source run's model in hard mode, float32),
loihi2 (refused: needs Intel's lava-loihi). Dataset, T, input norm and binning default to what the
artifact records. What each number compares with: docs/deployment.md, "Simulating".
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .data.datasets import DATASETS
from .evaluation.activity import format_activity
from .hardware_sim.backends import BACKENDS
from .hardware_sim.simulation import simulate
from .jsonio import write_json

SHOWN_FLIPS = 5
# what deploy_and_simulate runs: (backend, precision, whole split or only the Lava subset)
DEPLOYMENT = (("emulator", "float", True), ("emulator", "fixed", True), ("onnx", "float", True),
              ("lava", "float", False), ("lava", "fixed", False))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifact", required=True,
                   help="exported network: *.lava.h5 (backends lava, emulator, torch) or the *.onnx sequence "
                        "graph (onnx, torch); the torch backend runs the run the artifact was exported from")
    p.add_argument("--backend", required=True, choices=(*BACKENDS, "loihi2"),
                   help="lava: Lava's CPU simulation; emulator: the batched numpy emulator; onnx: onnxruntime; "
                        "torch: the source run's model in hard mode; loihi2: Loihi 2 silicon (not available)")
    p.add_argument("--precision", choices=("float", "fixed"), default=None,
                   help="float: float64 hard spikes; fixed: Loihi fixed point. Default: fixed when the artifact "
                        "holds it (onnx: the graph's own precision; torch: float)")
    p.add_argument("--dataset", choices=DATASETS, default=None, help="default: the dataset the artifact records")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder (default: the source run's; not needed for nmnist-small)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to run")
    p.add_argument("--limit", type=int, default=None,
                   help="run only N samples, evenly spaced over the split (every class in proportion)")
    p.add_argument("--batch-size", type=int, default=128,
                   help="samples per batch (lava: per compiled run, each with ~1 s of start-up)")
    p.add_argument("--check", action="store_true",
                   help="also locate the first spike that differs from the reference and, in float, judge "
                        "whether the first flip of each sample is a tie of float sums")
    p.add_argument("--run", default=None,
                   help="the artifact's source run directory (default: the path export recorded)")
    p.add_argument("--out", default=None,
                   help="REPORT.json to write (default: ARTIFACT.simulate-BACKEND-PRECISION.json)")


def _num(v, fmt: str = ".3f") -> str:
    return "n/a" if v is None else format(v, fmt)


def format_report(r: dict) -> str:
    """The one-screen summary of a REPORT."""
    lines = [f"simulate {r['backend']} {r['precision']}: {r['artifact']} on {r['dataset']}/{r['split']} "
             f"({r['samples']} samples, T {r['T']})",
             f"  accuracy {_num(r['accuracy'])}   PyTorch hard {_num(r['torch_hard_accuracy'])}   "
             f"surrogate {_num(r['surrogate_accuracy'])}",
             f"  transfer gap {_num(r['transfer_gap'], '+.3f')}"
             + (f"   quantization gap {_num(r['quantization_gap'], '+.3f')}" if r["precision"] == "fixed" else "")
             + f"   {_num(r['samples_per_s'], '.1f')} samples/s ({r['backend']} alone)",
             f"  activity per inference: {format_activity(r)}"]
    if r["agreement"] is not None:
        lines.append(f"  against the {r['reference']}: agreement {r['agreement']:.3f}, spike mismatches "
                     f"{r['spike_mismatches']} (per layer {r['spike_mismatches_per_layer']})")
    check = r.get("check")
    if check and check["first_mismatch"]:
        f = check["first_mismatch"]
        lines.append(f"  first mismatch: layer {f['layer']}, step {f['t']}, sample {f['sample']}, neuron {f['neuron']}")
    if check and "first_flips" in check and check["first_flips"]:
        lines.append(f"  first flip of each of {check['samples_affected']} samples a float tie: {check['all_ties']}")
        for f in check["first_flips"][:SHOWN_FLIPS]:
            lines.append(f"    sample {f['sample']} layer {f['layer']} step {f['t']} neuron {f['neuron']}: "
                         f"|u - theta| = {f['margin']:.2e} ({'tie' if f['tie'] else 'NOT a tie'})")
    lines += [f"  note: {n}" for n in r["notes"]]
    return "\n".join(lines)


def report_path(artifact, report: dict) -> str:
    """Where a REPORT goes by default: next to the artifact."""
    return f"{artifact}.simulate-{report['backend']}-{report['precision']}.json"


def deploy_and_simulate(run_dir, lava_samples: int = 20, progress: bool | None = None) -> list[dict]:
    """Export a run to a fixed-point Lava artifact (RUN/net.lava.h5) and ONNX (RUN/net.onnx, float),
    then simulate: the emulator (float, fixed) and onnxruntime on the whole test split, Lava (float,
    fixed) on `lava_samples` of it. Writes each REPORT next to its artifact and returns them."""
    from .export.command import export_run

    run_dir = Path(run_dir)
    artifacts = {"lava": run_dir / "net.lava.h5", "onnx": run_dir / "net.onnx"}
    for target, path in artifacts.items():
        export_run(run_dir, target, path, verify_samples=0)  # simulate checks it, on more samples
        print(f"exported {path}")
    reports = []
    for backend, precision, whole in DEPLOYMENT:
        artifact = artifacts["onnx" if backend == "onnx" else "lava"]
        report = simulate(artifact, backend, precision, limit=None if whole else lava_samples, progress=progress)
        write_json(report_path(artifact, report), report)
        reports.append(report)
    return reports


def format_table(reports: list[dict]) -> str:
    """Backends side by side: accuracy, the PyTorch model's on the same samples, the gaps, spikes and
    synaptic operations per inference, and the spikes that differ from each backend's reference."""
    lines = [f"{'backend':<9}{'precision':<10}{'samples':>7}{'accuracy':>9}{'torch hard':>11}{'surrogate':>10}"
             f"{'transfer gap':>13}{'quant. gap':>11}{'spikes/inf':>11}{'synops/inf':>11}{'spike mismatches':>17}"
             "  reference"]
    for r in reports:
        mismatches = "-" if r["spike_mismatches"] is None else str(r["spike_mismatches"])
        reference = "(is the reference)" if r["spike_mismatches"] is None and r["reference"] else r["reference"]
        lines.append(f"{r['backend']:<9}{r['precision']:<10}{r['samples']:>7}{_num(r['accuracy']):>9}"
                     f"{_num(r['torch_hard_accuracy']):>11}{_num(r['surrogate_accuracy']):>10}"
                     f"{_num(r['transfer_gap'], '+.3f'):>13}"
                     f"{_num(r['quantization_gap'], '+.3f') if r['precision'] == 'fixed' else '-':>11}"
                     f"{_num(r['spikes_per_inference'], '.1f'):>11}{_num(r['synops_per_inference'], '.0f'):>11}"
                     f"{mismatches:>17}  {reference or '-'}")
    return "\n".join(lines)


def run(args) -> int:
    report = simulate(args.artifact, args.backend, args.precision, args.dataset, args.data_dir, args.split,
                      args.limit, args.batch_size, args.check, args.run)
    out = args.out or report_path(args.artifact, report)
    write_json(out, report)
    print(format_report(report))
    print(f"  report -> {out}")
    return 0


def main(argv=None) -> int:
    from .cli import module_main

    return module_main("python -m sast_deploy.simulate", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
