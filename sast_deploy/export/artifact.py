"""The Lava artifact `*.lava.h5`: a self-describing HDF5 file holding one DeployedNetwork.

h5py and numpy only (no torch, no pickle: numbers in datasets, text and JSON in attributes). The
layout is docs/deployment.md, "The Lava artifact". `load_artifact` validates everything (format,
version, required keys, dtypes, shapes, ranges, finite values) and fails with one line naming the
file, never with a traceback out of h5py.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from ..errors import ArtifactError
from ..model.fixed_point import input_scale
from .deployed import DeployedLayer, DeployedNetwork, FixedPoint

ARTIFACT_FORMAT = "sast-deploy/lava-artifact"
ARTIFACT_VERSION = 1
KINDS = ("dense", "conv")
INPUT_NORMS = ("binary", "max")
LAYER_FLOATS = ("weight", "bias", "theta")
FIXED_INTS = ("w_int", "bias_mant", "vth")
# integer ranges Lava's fixed-point models accept (docs/deployment.md)
RANGES = {"w_int": (-256, 255), "bias_mant": (-4096, 4095), "vth": (0, 131071), "bias_exp": (0, 7),
          "dv": (0, 4095), "weight_exp": (-8, 7)}


def save_artifact(path: str | os.PathLike, net: DeployedNetwork) -> None:
    """Write `net` to `path` (via a temporary file and a rename: readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            _write(f, net)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write(f: h5py.File, net: DeployedNetwork) -> None:
    f.attrs.update({
        "format": ARTIFACT_FORMAT, "version": ARTIFACT_VERSION, "T": int(net.T),
        "input_shape": np.asarray(net.input_shape, dtype=np.int64), "input_norm": net.input_norm,
        "precision": "fixed" if net.is_quantized else "float", "num_layers": len(net.layers),
        "class_names": json.dumps(list(net.class_names)), "meta": json.dumps(net.meta, sort_keys=True),
        "spike_rule": "s = 1 iff v > theta (strict); reset by subtracting theta one step later, un-decayed",
    })
    for i, layer in enumerate(net.layers):
        g = f.create_group(f"layers/{i}")
        g.attrs.update({"kind": layer.kind, "in_shape": np.asarray(layer.in_shape, dtype=np.int64),
                        "out_shape": np.asarray(layer.out_shape, dtype=np.int64), "stride": int(layer.stride),
                        "padding": int(layer.padding), "alpha": float(layer.alpha)})
        for name in LAYER_FLOATS:
            g.create_dataset(name, data=np.asarray(getattr(layer, name), dtype=np.float64))
        if layer.fixed is not None:
            fx = layer.fixed
            q = g.create_group("fixed")
            q.attrs.update({"weight_exp": int(fx.weight_exp), "bias_exp": int(fx.bias_exp), "dv": int(fx.dv),
                            "scale": float(fx.scale), "input_scale": int(fx.input_scale)})
            q.create_dataset("w_int", data=np.asarray(fx.w_int, dtype=np.int16))
            q.create_dataset("bias_mant", data=np.asarray(fx.bias_mant, dtype=np.int16))
            q.create_dataset("vth", data=np.asarray(fx.vth, dtype=np.int32))
    f.create_dataset("readout/weight", data=np.asarray(net.readout_weight, dtype=np.float64))
    f.create_dataset("readout/bias", data=np.asarray(net.readout_bias, dtype=np.float64))


class _Reader:
    """Typed access to one open artifact; every problem becomes an ArtifactError naming the file."""

    def __init__(self, f: h5py.File, path: str):
        self.f, self.path = f, path

    def fail(self, msg: str):
        raise ArtifactError(f"{self.path}: {msg}")

    def attr(self, node: str, key: str, kind: type):
        attrs = self.f[node].attrs if node else self.f.attrs
        where = f"{node}/{key}" if node else key
        if key not in attrs:
            self.fail(f"missing attribute {where!r}; the file is not a complete artifact, re-export it")
        value = attrs[key]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if kind is str:
            if not isinstance(value, str):
                self.fail(f"attribute {where!r} must be text")
            return value
        if kind is tuple:
            arr = np.asarray(value)
            if arr.ndim != 1 or arr.dtype.kind not in "iu" or arr.size == 0 or arr.min() < 1:
                self.fail(f"attribute {where!r} must be a shape (positive integers), got {value!r}")
            return tuple(int(v) for v in arr)
        arr = np.asarray(value)
        ok = arr.ndim == 0 and (arr.dtype.kind in "iu" if kind is int else arr.dtype.kind in "iuf")
        if not ok:
            self.fail(f"attribute {where!r} must be a single {'integer' if kind is int else 'number'}, got {value!r}")
        if kind is float and not np.isfinite(arr):
            self.fail(f"attribute {where!r} is not finite")
        return kind(arr)

    def array(self, name: str, kinds: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.f or not isinstance(self.f[name], h5py.Dataset):
            self.fail(f"missing dataset {name!r}; the file is not a complete artifact, re-export it")
        ds = self.f[name]
        if ds.dtype.kind not in kinds:
            want = "floating point" if kinds == "f" else "integer"
            self.fail(f"dataset {name!r} has dtype {ds.dtype}, expected {want}")
        if tuple(ds.shape) != tuple(shape):
            self.fail(f"dataset {name!r} has shape {tuple(ds.shape)}, expected {tuple(shape)} "
                      "(inconsistent with the layer shapes)")
        data = ds[()]
        if kinds == "f":
            if not np.isfinite(data).all():
                self.fail(f"dataset {name!r} holds NaN or Inf values")
            return np.asarray(data, dtype=np.float64)
        return np.asarray(data, dtype=np.int64)

    def in_range(self, where: str, name: str, value) -> None:
        lo, hi = RANGES[name]
        arr = np.asarray(value)
        if arr.size and (arr.min() < lo or arr.max() > hi):
            self.fail(f"{where}: {name} lies outside [{lo}, {hi}] (found {arr.min()}..{arr.max()})")


def _weight_shape(r: _Reader, i: int, kind: str, in_shape, out_shape, stride: int, padding: int, ds) -> tuple:
    """Check the layer geometry; return the weight shape it implies."""
    where = f"layer {i + 1}"
    if kind == "dense":
        if len(in_shape) != 1 or len(out_shape) != 1:
            r.fail(f"{where}: a dense layer has flat in and out shapes, got {in_shape} -> {out_shape}")
        return (out_shape[0], in_shape[0])
    if len(in_shape) != 3 or len(out_shape) != 3:
        r.fail(f"{where}: a conv layer has (C, H, W) in and out shapes, got {in_shape} -> {out_shape}")
    if ds is None or len(ds.shape) != 4:
        r.fail(f"{where}: conv weight must be [C_out, C_in, kh, kw]")
    kh, kw = ds.shape[2:]
    oh = (in_shape[1] + 2 * padding - kh) // stride + 1
    ow = (in_shape[2] + 2 * padding - kw) // stride + 1
    if (out_shape[1], out_shape[2]) != (oh, ow):
        r.fail(f"{where}: kernel {kh}x{kw}, stride {stride}, padding {padding} on {in_shape} give "
               f"{oh}x{ow}, but out_shape is {out_shape}")
    return (out_shape[0], in_shape[0], kh, kw)


def _read_layer(r: _Reader, i: int, in_shape: tuple, input_norm: str) -> DeployedLayer:
    node = f"layers/{i}"
    if node not in r.f:
        r.fail(f"missing group {node!r}; the file is not a complete artifact, re-export it")
    kind = r.attr(node, "kind", str)
    if kind not in KINDS:
        r.fail(f"layer {i + 1}: unknown kind {kind!r} (expected one of {KINDS})")
    lin, lout = r.attr(node, "in_shape", tuple), r.attr(node, "out_shape", tuple)
    stride, padding = r.attr(node, "stride", int), r.attr(node, "padding", int)
    alpha = r.attr(node, "alpha", float)
    if stride < 1 or padding < 0 or not 0.0 <= alpha <= 1.0:
        r.fail(f"layer {i + 1}: stride must be >= 1, padding >= 0 and alpha in [0, 1]")
    if int(np.prod(lin)) != int(np.prod(in_shape)) or (kind == "conv" and lin != in_shape):
        r.fail(f"layer {i + 1}: reads shape {lin} but the previous layer gives {in_shape}")
    wshape = _weight_shape(r, i, kind, lin, lout, stride, padding, r.f.get(f"{node}/weight"))
    weight = r.array(f"{node}/weight", "f", wshape)
    bias = r.array(f"{node}/bias", "f", lout)
    theta = r.array(f"{node}/theta", "f", lout)
    if theta.size and theta.min() < 0:
        r.fail(f"layer {i + 1}: thresholds must be >= 0")
    fixed = None
    if f"{node}/fixed" in r.f:
        fixed = _read_fixed(r, i, f"{node}/fixed", kind, wshape, lout, input_norm)
    return DeployedLayer(kind=kind, in_shape=lin, out_shape=lout, weight=weight, bias=bias, theta=theta,
                         alpha=alpha, stride=stride, padding=padding, fixed=fixed)


def _read_fixed(r: _Reader, i: int, node: str, kind: str, wshape, out_shape, input_norm: str) -> FixedPoint:
    where = f"layer {i + 1} fixed point"
    ints = {name: r.array(f"{node}/{name}", "iu", wshape if name == "w_int" else out_shape) for name in FIXED_INTS}
    scal = {name: r.attr(node, name, int) for name in ("weight_exp", "bias_exp", "dv", "input_scale")}
    scale = r.attr(node, "scale", float)
    for name, value in {**ints, **scal}.items():
        if name in RANGES:
            r.in_range(where, name, value)
    if scale <= 0:
        r.fail(f"{where}: scale must be positive")
    want_c = input_scale(i, input_norm)
    if scal["input_scale"] != want_c:
        r.fail(f"{where}: input_scale {scal['input_scale']} does not match input_norm {input_norm!r} (expected {want_c})")
    w = ints["w_int"]
    if kind == "conv" and scal["weight_exp"] != 0:
        r.fail(f"{where}: Lava's fixed-point Conv ignores weight_exp, which must be 0 (got {scal['weight_exp']})")
    if kind == "dense" and w.size and w.min() < 0 < w.max() and np.any(w % 2):
        r.fail(f"{where}: mixed-sign dense weights must be even (Lava's Dense drops their lowest bit)")
    return FixedPoint(w_int=w, weight_exp=scal["weight_exp"], bias_mant=ints["bias_mant"], bias_exp=scal["bias_exp"],
                      vth=ints["vth"], dv=scal["dv"], scale=scale, input_scale=scal["input_scale"])


def _read(r: _Reader) -> DeployedNetwork:
    fmt = r.f.attrs.get("format")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    if fmt != ARTIFACT_FORMAT:
        r.fail(f"not a sast-deploy Lava artifact (format {fmt!r}); export one with `sast-deploy export --target lava`")
    version = r.attr("", "version", int)
    if version != ARTIFACT_VERSION:
        r.fail(f"artifact version {version} is not supported (this sast-deploy reads version {ARTIFACT_VERSION}); "
               "re-export it with this version")
    T = r.attr("", "T", int)
    input_shape = r.attr("", "input_shape", tuple)
    input_norm = r.attr("", "input_norm", str)
    num_layers = r.attr("", "num_layers", int)
    if T < 1 or num_layers < 1 or len(input_shape) not in (1, 3) or input_norm not in INPUT_NORMS:
        r.fail(f"invalid header: T {T}, {num_layers} layers, input_shape {input_shape}, input_norm {input_norm!r}")
    try:
        class_names = json.loads(r.attr("", "class_names", str))
        meta = json.loads(r.attr("", "meta", str))
    except json.JSONDecodeError as e:
        r.fail(f"class_names or meta is not valid JSON ({e})")
    if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names) \
            or not isinstance(meta, dict):
        r.fail("class_names must be a list of strings and meta an object")
    layers, shape = [], input_shape
    for i in range(num_layers):
        layers.append(_read_layer(r, i, shape, input_norm))
        shape = layers[-1].out_shape
    if len({layer.fixed is None for layer in layers}) > 1:
        r.fail("some layers have fixed-point parameters and some do not; re-export it")
    features = int(np.prod(shape))
    if "readout/weight" not in r.f or len(r.f["readout/weight"].shape) != 2:
        r.fail("missing or malformed dataset 'readout/weight' ([classes, features])")
    classes = r.f["readout/weight"].shape[0]
    readout_weight = r.array("readout/weight", "f", (classes, features))
    readout_bias = r.array("readout/bias", "f", (classes,))
    if classes < 2 or (class_names and len(class_names) != classes):
        r.fail(f"{len(class_names)} class names for a readout of {classes} classes")
    return DeployedNetwork(layers=layers, readout_weight=readout_weight, readout_bias=readout_bias, T=T,
                           input_shape=input_shape, input_norm=input_norm, class_names=class_names, meta=meta)


def load_artifact(path: str | os.PathLike) -> DeployedNetwork:
    """Read and validate a `*.lava.h5` artifact (ArtifactError with one line on any problem)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ArtifactError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise ArtifactError(f"{path}: not a readable HDF5 file (truncated or corrupt); re-export it") from None
    try:
        with f:
            return _read(_Reader(f, path))
    except ArtifactError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:  # h5py's errors on damaged files
        raise ArtifactError(f"{path}: damaged artifact ({type(e).__name__}: {e}); re-export it") from None
