"""Running and validating exported ONNX networks with onnxruntime. No torch.

The signature (names, ranks, metadata) is docs/deployment.md, "ONNX". `load_onnx` refuses any
model that does not carry it, with one line naming the file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from ..errors import ArtifactError, ShapeError

ONNX_FORMAT = "sast-deploy/onnx"
ONNX_VERSION = "1"
GRAPHS = ("sequence", "step")
SPIKE_RULE = "s = 1 iff u > theta (strict); reset by subtracting theta one step later, un-decayed"
REQUIRED_META = ("format", "version", "graph", "precision", "spike_rule", "T", "input_shape", "input_norm",
                 "layer_shapes", "class_names", "dynamic_T")


def sequence_io(num_layers: int) -> tuple[list[str], list[str]]:
    """Input and output names of the full-sequence graph."""
    return ["x"], ["logits", "counts"] + [f"spikes{l}" for l in range(1, num_layers + 1)]


def step_io(num_layers: int) -> tuple[list[str], list[str]]:
    """Input and output names of the single-step graph (state in, state out)."""
    ls = range(1, num_layers + 1)
    state = [f"u{l}" for l in ls] + [f"s{l}" for l in ls] + ["counts"]
    return ["x"] + state, ["logits"] + [f"{name}_next" for name in state]


@dataclass
class OnnxResult:
    logits: np.ndarray  # [B, classes] float32
    counts: np.ndarray  # [B, features] int64
    spikes: list[np.ndarray]  # per layer [T, B, *shape] uint8


class OnnxNetwork:
    """An exported ONNX network in onnxruntime, its signature checked."""

    def __init__(self, path: str | os.PathLike):
        import onnx
        import onnxruntime as ort

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ArtifactError(f"{self.path}: no such file")
        try:
            model = onnx.load(self.path, load_external_data=False)
        except Exception as e:  # protobuf raises its own DecodeError, onnx a few others
            raise ArtifactError(f"{self.path}: not a readable ONNX model ({type(e).__name__}); re-export it") from None
        self.meta = {p.key: p.value for p in model.metadata_props}
        if self.meta.get("format") != ONNX_FORMAT:
            raise ArtifactError(f"{self.path}: not a sast-deploy ONNX network (metadata format "
                                f"{self.meta.get('format')!r}); export one with `sast-deploy export --target onnx`")
        missing = [k for k in REQUIRED_META if k not in self.meta]
        if missing:
            raise ArtifactError(f"{self.path}: metadata lacks {missing}; re-export it")
        if self.meta["version"] != ONNX_VERSION:
            raise ArtifactError(f"{self.path}: ONNX network version {self.meta['version']} is not supported "
                                f"(this sast-deploy reads {ONNX_VERSION}); re-export it")
        try:
            self.graph = self.meta["graph"]
            self.T = int(self.meta["T"])
            self.input_shape = tuple(json.loads(self.meta["input_shape"]))
            self.layer_shapes = [tuple(s) for s in json.loads(self.meta["layer_shapes"])]
            self.class_names = json.loads(self.meta["class_names"])
            self.input_norm = self.meta["input_norm"]
            self.precision = self.meta["precision"]
            self.dynamic_T = self.meta["dynamic_T"] == "true"
        except (ValueError, TypeError) as e:
            raise ArtifactError(f"{self.path}: malformed metadata ({e}); re-export it") from None
        if self.graph not in GRAPHS:
            raise ArtifactError(f"{self.path}: unknown graph kind {self.graph!r} (expected one of {GRAPHS})")
        io = sequence_io if self.graph == "sequence" else step_io
        want_in, want_out = io(len(self.layer_shapes))
        got_in = [i.name for i in model.graph.input]
        got_out = [o.name for o in model.graph.output]
        if got_in != want_in or got_out != want_out:
            raise ArtifactError(f"{self.path}: unexpected signature: inputs {got_in}, outputs {got_out}; "
                                f"a sast-deploy {self.graph} graph has inputs {want_in}, outputs {want_out}")
        x_rank = len(model.graph.input[0].type.tensor_type.shape.dim)
        want_rank = len(self.input_shape) + (2 if self.graph == "sequence" else 1)
        if x_rank != want_rank:
            raise ArtifactError(f"{self.path}: input x has rank {x_rank}, expected {want_rank}")
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types
            raise ArtifactError(f"{self.path}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from None

    def run(self, x: np.ndarray, batch_size: int = 256) -> OnnxResult:
        """Full-sequence graph on frames x [T, B, *input_shape] in [0, 1]."""
        if self.graph != "sequence":
            raise ArtifactError(f"{self.path}: a {self.graph} graph; run() needs the sequence graph")
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != len(self.input_shape) + 2 or tuple(x.shape[2:]) != self.input_shape \
                or (not self.dynamic_T and x.shape[0] != self.T):
            raise ShapeError(f"expected input [T={self.T}, B, {', '.join(map(str, self.input_shape))}], got {list(x.shape)}")
        parts = []
        for start in range(0, max(x.shape[1], 1), batch_size):
            parts.append(self.session.run(None, {"x": x[:, start:start + batch_size]}))
        logits = np.concatenate([p[0] for p in parts])
        counts = np.concatenate([p[1] for p in parts]).astype(np.int64)
        spikes = [np.concatenate([p[2 + l] for p in parts], axis=1).astype(np.uint8)
                  for l in range(len(self.layer_shapes))]
        return OnnxResult(logits, counts, spikes)

    def initial_state(self, batch: int) -> dict[str, np.ndarray]:
        """Zero state for the step graph."""
        state = {f"u{l}": np.zeros((batch, *s), np.float32) for l, s in enumerate(self.layer_shapes, 1)}
        state.update({f"s{l}": np.zeros((batch, *s), np.float32) for l, s in enumerate(self.layer_shapes, 1)})
        state["counts"] = np.zeros((batch, int(np.prod(self.layer_shapes[-1]))), np.float32)
        return state

    def step(self, x_t: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Step graph: one time step x_t [B, *input_shape] -> (logits so far, next state)."""
        if self.graph != "step":
            raise ArtifactError(f"{self.path}: a {self.graph} graph; step() needs the step graph")
        names = step_io(len(self.layer_shapes))[1]
        out = self.session.run(None, {"x": np.asarray(x_t, dtype=np.float32), **state})
        return out[0], {name[:-len("_next")]: value for name, value in zip(names[1:], out[1:])}
