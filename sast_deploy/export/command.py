"""`sast-deploy export` (= `python -m sast_deploy.export`): a run directory -> a Lava artifact or ONNX.

Folds the trained model, quantizes it to Loihi fixed point (post-training, or with the grids of a
QAT run), writes the file, then checks it on test samples against its references: the emulator
against the PyTorch hard model (float) or the float network / the QAT model (fixed), onnxruntime
against the PyTorch hard model (float, any flip explained as a tie or not) or the emulator (fixed).
Prints a one-screen summary and writes it as JSON next to the output (`OUT.json`).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, ExportError
from ..jsonio import read_json, write_json
from ..model.checkpoint import load_model
from ..model.qat import qat_integers
from .artifact import save_artifact
from .deployed import DeployedNetwork
from .fold import fold_network
from .quantize import quantize_network

TARGETS = ("lava", "onnx")
DEFAULT_PRECISION = {"lava": "fixed", "onnx": "float"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run directory written by `sast-deploy train` (model.safetensors)")
    p.add_argument("--target", required=True, choices=TARGETS, help="lava: *.lava.h5 artifact; onnx: ONNX graphs")
    p.add_argument("--precision", choices=("fixed", "float"), default=None,
                   help="fixed: Loihi fixed point (a lava artifact then holds float and fixed parameters); "
                        "float: float parameters only. Default: fixed for lava, float for onnx")
    p.add_argument("--qat-run", action="store_true",
                   help="the run was trained with --qat: require its grids and check 0 spike mismatches "
                        "(a run with QAT grids is always exported on them)")
    p.add_argument("--out", required=True, help="output file (e.g. RUN/net.lava.h5 or RUN/net.onnx)")
    p.add_argument("--graph", choices=("sequence", "step", "both"), default="both",
                   help="onnx: full-sequence graph at OUT, single-step streaming graph at OUT with .step.onnx")
    p.add_argument("--verify-samples", type=int, default=200,
                   help="test samples to check the export on (0: skip)")
    p.add_argument("--data-dir", default=None, help="dataset folder for the check (not needed for nmnist-small)")


def load_run(run_dir: str | os.PathLike):
    """(model, model meta, summary) of a run directory."""
    run_dir = Path(run_dir)
    path = run_dir / "model.safetensors"
    if not path.is_file():
        raise ExportError(f"{run_dir}: no model.safetensors; pass a run directory written by `sast-deploy train`")
    model, meta = load_model(path)
    data = meta.get("data")
    if not isinstance(data, dict) or not {"dataset", "T", "input_norm"} <= set(data):
        raise CheckpointError(f"{path}: model metadata lacks the data config (dataset, T, input_norm)")
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else meta.get("summary", {})
    return model, meta, summary


def deploy(model, meta: dict, summary: dict, run_dir: str, precision: str, require_qat: bool):
    """(DeployedNetwork, quantization report or [], whether QAT grids were used)."""
    data = meta["data"]
    qat = meta.get("qat")
    if require_qat and not qat:
        raise ExportError(f"{run_dir}: the model carries no QAT grids (meta 'qat'); was it trained with --qat?")
    keep = ("surrogate_acc", "hard_acc", "transfer_gap", "rho", "seed", "epochs", "dataset", "split")
    source = {"run": str(run_dir), "metrics": {k: summary[k] for k in keep if k in summary}, "qat": bool(qat)}
    net = fold_network(model, int(data["T"]), data["input_norm"],
                       meta={"source": source, "data": dict(data), "spec": model.spec.to_dict()})
    if precision == "float":
        return net, [], bool(qat)
    net, report = quantize_network(net, integers=qat_integers(model) if qat else None, dequantized_floats=bool(qat))
    return net, report, bool(qat)


def verify(net: DeployedNetwork, model, qat: bool, target: str, precision: str, paths: list[str],
           x: np.ndarray, labels: np.ndarray) -> dict:
    """Check the written export on frames x against its references (see the module docstring)."""
    from ..evaluation.reference import ModelRunner
    from ..hardware_sim.conformance import explain_flips, spike_mismatches
    from ..hardware_sim.emulator import emulate

    out = {"samples": int(x.shape[1])}
    acc = lambda logits: float((np.asarray(logits).argmax(1) == labels).mean())  # noqa: E731
    ref_logits, ref_spikes, ref_pots = ModelRunner(model)(x, potentials=True)
    out["torch_hard_accuracy"] = acc(ref_logits)
    emu_float = emulate(net, x, "float")
    out["emulator_float_accuracy"] = acc(emu_float.logits)
    if not qat:
        out["emulator_float_vs_torch"] = explain_flips(emu_float.spikes, ref_spikes, ref_pots,
                                                       [layer.theta for layer in net.layers])
    if precision == "fixed":
        emu_fixed = emulate(net, x, "fixed")
        out["emulator_fixed_accuracy"] = acc(emu_fixed.logits)
        out["quantization_gap"] = out["emulator_float_accuracy"] - out["emulator_fixed_accuracy"]
        out["saturated_neuron_steps"] = emu_fixed.saturated
        if qat:  # the QAT model in hard mode is the fixed-point network: every spike must agree
            out["fixed_vs_qat_model_mismatches"] = spike_mismatches(emu_fixed.spikes, ref_spikes)
        else:
            out["fixed_vs_float_mismatches"] = spike_mismatches(emu_fixed.spikes, emu_float.spikes)
    if target == "onnx":
        from .onnx_model import OnnxNetwork

        res = OnnxNetwork(paths[0]).run(x)
        out["onnx_accuracy"] = acc(res.logits)
        if precision == "float":  # reference: the PyTorch hard model in float32, flips judged in float64
            logits32, spikes32, _ = ModelRunner(model, torch.float32)(x)
            out["onnx_max_logit_diff"] = float(np.abs(res.logits - logits32).max(initial=0))
            out["onnx_vs_torch"] = explain_flips(res.spikes, spikes32, ref_pots,
                                                 [layer.lif.theta.detach().double().numpy() for layer in model.layers])
        else:
            out["onnx_max_logit_diff"] = float(np.abs(res.logits - emu_fixed.logits).max(initial=0))
            out["onnx_vs_emulator_fixed_mismatches"] = spike_mismatches(res.spikes, emu_fixed.spikes)
    return out


def _layer_rows(net: DeployedNetwork) -> list[dict]:
    return [{"layer": i + 1, "kind": layer.kind, "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape),
             "kernel": list(layer.weight.shape[2:]) if layer.kind == "conv" else None, "stride": layer.stride,
             "padding": layer.padding, "alpha": layer.alpha,
             "parameters": int(layer.weight.size + np.asarray(layer.bias).size + np.asarray(layer.theta).size)}
            for i, layer in enumerate(net.layers)]


def _print_summary(result: dict) -> None:
    print(f"export {result['target']} ({result['precision']}{', QAT grids' if result['qat'] else ''}) "
          f"from {result['run']}")
    for row in result["layers"]:
        geo = f"  k{row['kernel'][0]}x{row['kernel'][1]} s{row['stride']} p{row['padding']}" if row["kernel"] else ""
        print(f"  layer {row['layer']}: {row['kind']:5s} {tuple(row['in_shape'])} -> {tuple(row['out_shape'])}"
              f"{geo}  alpha {row['alpha']:.4g}  {row['parameters']} parameters")
    print(f"  readout: {result['readout_parameters']} parameters; total {result['parameters']}")
    for q in result["quantization"]:
        sat = sum(q["saturated"].values())
        print(f"  fixed layer {q['layer']}: S 2^{int(np.log2(q['scale']))}  weight_exp {q['weight_exp']}  "
              f"bias_exp {q['bias_exp']}  dv {q['dv']} (alpha {q['alpha_eff']:.6g})  weight err "
              f"{q['weight_rel_err']:.2%}  theta err {q['theta_rel_err']:.2%}  bias err {q['bias_rel_err']:.2%}"
              f"  max |m| {q['weight_mantissa_max']}  clipped {sat}")
    for path, size in result["files"].items():
        print(f"  wrote {path} ({size / 1024:.1f} KiB)")
    v = result.get("verify")
    if v:
        keys = [k for k in v if not isinstance(v[k], dict)]
        print("  check on " + ", ".join(f"{k} {v[k]:.4g}" if isinstance(v[k], float) else f"{k} {v[k]}" for k in keys))
        for k in (k for k in v if isinstance(v[k], dict)):
            f = v[k]
            print(f"  {k}: {f['spike_mismatches']} spike mismatches in {f['samples_affected']} samples"
                  + (f"; first flips are float ties: {f['all_ties']} (largest margin "
                     f"{max(x['margin'] for x in f['first_flips']):.2e})" if f["first_flips"] else ""))


def export_run(run_dir, target: str, out, precision: str | None = None, qat_run: bool = False,
               graph: str = "both", verify_samples: int = 200, data_dir=None) -> dict:
    """Export the run at `run_dir` (see `add_arguments` for the options), check it on
    `verify_samples` test samples, write the summary to OUT.json and return it."""
    precision = precision or DEFAULT_PRECISION[target]
    model, meta, summary = load_run(run_dir)
    net, report, qat = deploy(model, meta, summary, str(run_dir), precision, qat_run)
    out = Path(out)
    if target == "lava":
        save_artifact(out, net)
        paths = [str(out)]
    else:
        from .onnx import export_onnx

        graphs = ["sequence", "step"] if graph == "both" else [graph]
        paths = [str(out) if g == "sequence" or graph == "step" else str(out.with_suffix(".step.onnx"))
                 for g in graphs]
        for g, path in zip(graphs, paths):
            export_onnx(net, path, g, precision)
    readout = int(net.readout_weight.size + net.readout_bias.size)
    layers = _layer_rows(net)
    result = {"run": str(run_dir), "target": target, "precision": precision, "qat": qat, "layers": layers,
              "readout_parameters": readout, "parameters": readout + sum(r["parameters"] for r in layers),
              "quantization": report, "files": {p: os.path.getsize(p) for p in paths}}
    if verify_samples > 0 and (target == "lava" or graph in ("sequence", "both")):
        from ..data.frames import load_frames

        data = meta["data"]
        frames = load_frames(data["dataset"], "test", int(data["T"]), data_dir, data["input_norm"],
                             data.get("downsample"), progress=False)
        idx = np.arange(min(verify_samples, len(frames)))
        result["verify"] = verify(net, model, qat, target, precision, paths, frames.frames(idx), frames.labels[idx])
    write_json(f"{out}.json", result)
    return result


def run(args) -> int:
    result = export_run(args.run, args.target, args.out, args.precision, args.qat_run, args.graph,
                        args.verify_samples, args.data_dir)
    _print_summary(result)
    print(f"  summary -> {args.out}.json")
    if result["qat"] and result.get("verify", {}).get("fixed_vs_qat_model_mismatches"):
        print(f"error: the fixed-point network does not reproduce the QAT model ({args.out} kept for inspection)",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    from ..cli import module_main

    return module_main("python -m sast_deploy.export", __doc__, add_arguments, run, argv)
