"""Fold a layer's linear block into one synaptic operator plus a bias (DESIGN §6), in torch.

A block is [flatten] -> linear | conv -> any of avgpool, norm, inference-mode batchnorm. Everything
after the linear/conv op is linear, so the block is one Dense (I = W z + b) or one strided Conv:

    norm / batchnorm, per output channel c (g = scale, h = shift):  W_c <- g_c W_c,  b_c <- g_c b_c + h_c
    avgpool(k) after a conv of stride s:  W <- W * box_k / k^2 (box taps s apart: kernel K + s (k - 1)),
                                          stride <- s k, padding unchanged

BatchNorm folds with its running statistics (what it computes in eval mode). MaxPool is not linear
and cannot fold. The functions are differentiable: quantization-aware training (model/qat.py)
folds in its forward pass, export (export/fold.py) folds once; both call `fold_block`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ExportError
from .network import Affine


@dataclass
class Folded:
    """One synaptic operator: dense weight [N_out, N_in] or conv weight [C_out, C_in, kh, kw]
    (torch cross-correlation), bias per output feature / channel."""

    kind: str  # "dense" | "conv"
    weight: torch.Tensor
    bias: torch.Tensor
    stride: int = 1
    padding: int = 0

    def apply(self, z: torch.Tensor) -> torch.Tensor:
        """Input current of a batch z [N, *in_shape] -> [N, *out_shape]."""
        if self.kind == "dense":
            return F.linear(z.flatten(1), self.weight, self.bias)
        return F.conv2d(z, self.weight, self.bias, self.stride, self.padding)


def _channel_affine(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of a norm or an inference-mode batchnorm."""
    if isinstance(module, Affine):
        return module.weight, module.bias
    g = 1.0 / torch.sqrt(module.running_var + module.eps)  # correctly rounded everywhere, unlike rsqrt
    if module.weight is not None:
        g = g * module.weight
    h = -module.running_mean * g
    if module.bias is not None:
        h = h + module.bias
    return g, h


def _fold_avgpool(weight: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """Conv kernel followed by avgpool(k) as one kernel: sum of k^2 copies shifted by s, / k^2."""
    grow = s * (k - 1)
    total = None
    for a in range(k):
        for b in range(k):  # added one by one: the same float result on every device
            shifted = F.pad(weight, (s * b, grow - s * b, s * a, grow - s * a))
            total = shifted if total is None else total + shifted
    return total / (k * k)


def fold_block(block: nn.Sequential, where: str = "layer") -> Folded:
    """The block's ops as one Folded operator (ExportError for an op that does not fold)."""
    folded = None
    for module in block:
        name = type(module).__name__
        if isinstance(module, nn.Flatten):
            if folded is not None:
                raise ExportError(f"{where}: flatten after the linear/conv op does not fold")
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            if folded is not None:
                raise ExportError(f"{where}: two linear/conv ops in one block do not fold into one synapse")
            bias = module.bias if module.bias is not None else module.weight.new_zeros(module.weight.shape[0])
            if isinstance(module, nn.Linear):
                folded = Folded("dense", module.weight, bias)
            else:
                if module.groups != 1 or tuple(module.dilation) != (1, 1) or module.padding_mode != "zeros" \
                        or len(set(module.stride)) != 1 or len(set(module.padding)) != 1:
                    raise ExportError(f"{where}: only square, ungrouped, undilated, zero-padded convs fold")
                folded = Folded("conv", module.weight, bias, module.stride[0], module.padding[0])
        elif folded is None:
            raise ExportError(f"{where}: {name} before the linear/conv op does not fold")
        elif isinstance(module, nn.AvgPool2d):
            k = module.kernel_size
            if folded.kind != "conv" or module.stride != k or module.padding != 0 or module.ceil_mode \
                    or not isinstance(k, int):
                raise ExportError(f"{where}: only AvgPool2d(k) (stride k, no padding) after a conv folds")
            folded = Folded("conv", _fold_avgpool(folded.weight, k, folded.stride), folded.bias,
                            folded.stride * k, folded.padding)
        elif isinstance(module, (Affine, nn.BatchNorm1d, nn.BatchNorm2d)):
            g, h = _channel_affine(module)
            shape = (-1,) + (1,) * (folded.weight.ndim - 1)
            folded = Folded(folded.kind, folded.weight * g.reshape(shape), folded.bias * g + h,
                            folded.stride, folded.padding)
        elif isinstance(module, nn.MaxPool2d):
            raise ExportError(f"{where}: MaxPool is not linear and cannot fold into the synapse; "
                              "deploy a network trained with avgpool (--pool avg)")
        else:
            raise ExportError(f"{where}: op {name} has no folding rule")
    if folded is None:
        raise ExportError(f"{where}: the block has no linear or conv op")
    return folded
