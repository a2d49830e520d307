"""The network spec: a small, JSON-serialisable description of an SNN (DESIGN §3).

A spec lists LIF layers; each layer applies a linear block A (ops) to the previous layer's spikes
(or the input), then LIF neurons. The readout is o = W_out (1/T sum_t z_t) + b_out on the last
layer's flattened spikes. The spec is stored with every checkpoint and read by export, which is why
this module is plain Python (no torch): shape inference works without a training stack.

Ops (in a layer's `ops` list, applied in order):
    {"kind": "flatten"}
    {"kind": "linear", "out": N, "bias": true}
    {"kind": "conv", "out": C, "kernel": k, "stride": 1, "padding": 0, "bias": true}
    {"kind": "avgpool", "kernel": k}                    (stride k, no padding)
    {"kind": "norm"}                                    (learned per-channel affine: x * scale + shift)
    {"kind": "batchnorm", "eps": 1e-5, "momentum": 0.1} (practical extension: batch statistics in training)
    {"kind": "maxpool", "kernel": k}                    (practical extension: stride k, no padding)
Each layer holds exactly one linear or conv op, optionally preceded by flatten and followed by
pooling / norm ops. With avgpool and norm only, the block is linear and folds into one Dense or Conv
at export; batchnorm folds too once training is over (running statistics). Training-mode BatchNorm
and MaxPool lie outside the paper's theory (DESIGN §3): `extensions()` names them where present.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field

from ..errors import SpecError

SPEC_FORMAT = "sast-deploy/network-spec"
SPEC_VERSION = 1
OP_KINDS = ("flatten", "linear", "conv", "avgpool", "norm", "batchnorm", "maxpool")
EXTENSION_KINDS = ("batchnorm", "maxpool")
_OP_KEYS = {
    "flatten": {},
    "linear": {"out": None, "bias": True},
    "conv": {"out": None, "kernel": None, "stride": 1, "padding": 0, "bias": True},
    "avgpool": {"kernel": None},
    "norm": {},
    "batchnorm": {"eps": 1e-5, "momentum": 0.1},
    "maxpool": {"kernel": None},
}


@dataclass
class LayerSpec:
    """One LIF layer: the linear block `ops`, then neurons with leak `alpha` and initial threshold."""

    ops: list[dict]
    alpha: float = 0.9
    theta_init: float = 1.0


@dataclass
class NetworkSpec:
    """A whole network: input shape (C, H, W) or (D,), LIF layers, readout to `num_classes`."""

    input_shape: tuple[int, ...]
    num_classes: int
    layers: list[LayerSpec]
    surrogate: str = "arctan"
    k: float = 2.0
    theta_min: float = 0.05
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.input_shape = tuple(int(v) for v in self.input_shape)
        self.layers = [l if isinstance(l, LayerSpec) else LayerSpec(**l) for l in self.layers]
        for layer in self.layers:
            layer.ops = [_normalise_op(op) for op in layer.ops]
        self.validate()

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return {"format": SPEC_FORMAT, "version": SPEC_VERSION, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkSpec":
        if not isinstance(d, dict):
            raise SpecError("a network spec must be a JSON object")
        d = copy.deepcopy(d)
        fmt, version = d.pop("format", SPEC_FORMAT), d.pop("version", SPEC_VERSION)
        if fmt != SPEC_FORMAT:
            raise SpecError(f"not a sast-deploy network spec (format {fmt!r})")
        if version != SPEC_VERSION:
            raise SpecError(f"network spec version {version} is not supported (this toolkit reads {SPEC_VERSION})")
        known = {"input_shape", "num_classes", "layers", "surrogate", "k", "theta_min", "class_names"}
        unknown = set(d) - known
        if unknown:
            raise SpecError(f"network spec has unknown keys {sorted(unknown)}")
        missing = {"input_shape", "num_classes", "layers"} - set(d)
        if missing:
            raise SpecError(f"network spec lacks {sorted(missing)}")
        try:
            return cls(**d)
        except TypeError as e:
            raise SpecError(f"malformed network spec: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "NetworkSpec":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise SpecError(f"network spec is not valid JSON: {e}") from None

    # -- shapes --------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise SpecError on any inconsistency (op order, shapes, parameters)."""
        if not self.layers:
            raise SpecError("a network needs at least one LIF layer")
        if self.num_classes < 2:
            raise SpecError(f"num_classes must be >= 2, got {self.num_classes}")
        if len(self.input_shape) not in (1, 3) or min(self.input_shape) < 1:
            raise SpecError(f"input_shape must be (C, H, W) or (D,), got {self.input_shape}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise SpecError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if self.theta_min <= 0:
            raise SpecError("theta_min must be positive")
        for i, layer in enumerate(self.layers):
            if not 0.0 <= layer.alpha <= 1.0:
                raise SpecError(f"layer {i}: alpha must lie in [0, 1], got {layer.alpha}")
            if layer.theta_init < self.theta_min:
                raise SpecError(f"layer {i}: theta_init {layer.theta_init} is below theta_min {self.theta_min}")
            kinds = [op["kind"] for op in layer.ops]
            mains = [j for j, k in enumerate(kinds) if k in ("linear", "conv")]
            if len(mains) != 1:
                raise SpecError(f"layer {i}: needs exactly one linear or conv op, has {kinds}")
            if any(k == "flatten" for k in kinds[mains[0]:]) or any(k not in ("flatten",) for k in kinds[:mains[0]]):
                raise SpecError(f"layer {i}: only flatten may precede the linear/conv op ({kinds})")
        self.layer_shapes()

    def layer_shapes(self) -> list[tuple[int, ...]]:
        """Neuron shape of every LIF layer (after its block), checking each op's input shape."""
        shape, shapes = self.input_shape, []
        for i, layer in enumerate(self.layers):
            for op in layer.ops:
                shape = op_output_shape(op, shape, f"layer {i} {op['kind']}")
            shapes.append(shape)
        return shapes

    def extensions(self) -> list[str]:
        """The practical-extension op kinds this network uses (outside the paper's theory)."""
        return sorted({op["kind"] for layer in self.layers for op in layer.ops} & set(EXTENSION_KINDS))

    @property
    def readout_features(self) -> int:
        n = 1
        for v in self.layer_shapes()[-1]:
            n *= v
        return n


def _normalise_op(op: dict) -> dict:
    if not isinstance(op, dict) or op.get("kind") not in OP_KINDS:
        raise SpecError(f"unknown op {op!r}; kinds are {OP_KINDS}")
    defaults = _OP_KEYS[op["kind"]]
    extra = set(op) - set(defaults) - {"kind"}
    if extra:
        raise SpecError(f"op {op['kind']!r} has unknown keys {sorted(extra)}")
    out = {"kind": op["kind"]}
    for key, default in defaults.items():
        if op.get(key, default) is None:
            raise SpecError(f"op {op['kind']!r} needs {key!r}")
        out[key] = op.get(key, default)
    return out


def op_output_shape(op: dict, shape: tuple[int, ...], where: str = "") -> tuple[int, ...]:
    """Output shape of one op on an input of `shape` (SpecError when it does not fit)."""
    where = where or op["kind"]
    kind = op["kind"]
    if kind == "flatten":
        n = 1
        for v in shape:
            n *= v
        return (n,)
    if kind == "linear":
        if len(shape) != 1:
            raise SpecError(f"{where}: linear needs a flat input, got shape {shape} (add a flatten op)")
        return (int(op["out"]),)
    if kind in ("norm", "batchnorm"):
        return shape
    if len(shape) != 3:
        raise SpecError(f"{where}: needs a (C, H, W) input, got {shape}")
    c, h, w = shape
    if kind == "conv":
        k, s, p = int(op["kernel"]), int(op["stride"]), int(op["padding"])
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if min(k, s) < 1 or p < 0 or oh < 1 or ow < 1:
            raise SpecError(f"{where}: kernel {k}, stride {s}, padding {p} do not fit input {shape}")
        return (int(op["out"]), oh, ow)
    k = int(op["kernel"])  # avgpool, maxpool
    if k < 1 or h // k < 1 or w // k < 1:
        raise SpecError(f"{where}: pool kernel {k} does not fit input {shape}")
    return (c, h // k, w // k)


def preset(name: str, input_shape, num_classes: int, class_names=(), **overrides) -> NetworkSpec:
    """Named architectures.

    mlp      flatten -> linear(hidden) -> [norm] -> LIF -> readout
    conv     conv(16,k5,p2) -> [norm] -> pool2 -> LIF -> conv(32,k3,p1) -> [norm] -> pool2 -> LIF
             [-> flatten -> linear(dense) -> [norm] -> LIF] -> readout
    conv-bn  conv with training-mode BatchNorm as its norm (a practical extension outside the paper's
             theory; the network of DESIGN §10's pilot and docs/transfer-gap.md)

    Overrides: hidden (mlp), dense (conv presets; 0 = no dense layer), alpha, theta_init, surrogate, k,
    theta_min, norm (`NORMS`, after every linear/conv op: none or affine; batchnorm is conv-bn's own and
    is refused by conv, so each network has one name) and pool (`POOLS`: avg, max; conv presets only)."""
    alpha = overrides.pop("alpha", 0.9)
    theta = overrides.pop("theta_init", 1.0)
    hidden = overrides.pop("hidden", 256)
    dense = overrides.pop("dense", 0)
    norm = overrides.pop("norm", "none")
    pool = overrides.pop("pool", "avg")
    if norm not in NORMS:
        raise SpecError(f"unknown norm {norm!r}; choose one of {NORMS}")
    if pool not in POOLS:
        raise SpecError(f"unknown pool {pool!r}; choose one of {POOLS}")
    if name == "conv-bn":
        if norm not in ("none", "batchnorm"):
            raise SpecError(f"conv-bn has training-mode BatchNorm built in; for the {norm} norm use the conv preset")
        norm = "batchnorm"
    elif name == "conv" and norm == "batchnorm":
        raise SpecError("the conv network with training-mode BatchNorm is the conv-bn preset")
    norm_ops = {"none": [], "affine": [{"kind": "norm"}], "batchnorm": [{"kind": "batchnorm"}]}[norm]
    pool_op = {"kind": f"{pool}pool", "kernel": 2}
    if name == "mlp":
        if pool != "avg" or dense:
            raise SpecError("the mlp preset has no pooling and no extra dense layer; --pool and --dense apply to "
                            "the conv presets (the mlp width is --hidden)")
        layers = [LayerSpec([{"kind": "flatten"}, {"kind": "linear", "out": hidden}, *norm_ops], alpha, theta)]
    elif name in ("conv", "conv-bn"):
        if len(tuple(input_shape)) != 3:
            raise SpecError(f"the {name} preset needs (C, H, W) input")
        if dense < 0:
            raise SpecError(f"dense must be >= 0 (0 = no dense layer), got {dense}")
        layers = [
            LayerSpec([{"kind": "conv", "out": 16, "kernel": 5, "padding": 2}, *norm_ops, pool_op], alpha, theta),
            LayerSpec([{"kind": "conv", "out": 32, "kernel": 3, "padding": 1}, *norm_ops, pool_op], alpha, theta),
        ]
        if dense:
            layers.append(LayerSpec([{"kind": "flatten"}, {"kind": "linear", "out": dense}, *norm_ops], alpha, theta))
    else:
        raise SpecError(f"unknown preset {name!r}; choose one of {PRESETS}")
    return NetworkSpec(tuple(input_shape), num_classes, layers, class_names=list(class_names), **overrides)


PRESETS = ("mlp", "conv", "conv-bn")
NORMS = ("none", "affine", "batchnorm")
POOLS = ("avg", "max")
