"""Inference-time rewrites that keep outputs and save CPU time: BatchNorm folding and channels-last."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_FOLDABLE = (nn.BatchNorm2d, nn.SyncBatchNorm)


def fuse_bn_(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a conv in an ``nn.Sequential`` into that conv, in place.

    The model must be in eval mode (folding uses the running statistics). Works on any model built from
    sequential conv + BN pairs: ours, torchvision's ``Conv2dNormActivation`` blocks, and the like. Only plain
    ``BatchNorm2d`` and ``SyncBatchNorm`` fold: subclasses that do more (timm's ``BatchNormAct2d`` applies its
    activation too) stay as they are.
    """
    if model.training:
        raise ValueError("fuse_bn_ needs a model in eval mode: call model.eval() first")
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, _FOLDABLE) and type(bn) in _FOLDABLE:
                if not bn.track_running_stats:
                    continue
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    return model


def uses_channels_last(model: nn.Module) -> bool:
    """Whether ``model`` keeps its convolution weights channels-last (``create_model``'s default), judged by its first
    convolution whose two layouts differ (more than one input channel, a kernel over one pixel)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.shape[1] > 1 and m.weight.shape[2] * m.weight.shape[3] > 1:
            return not m.weight.is_contiguous() and m.weight.is_contiguous(memory_format=torch.channels_last)
    return False


def optimize_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` with BatchNorm folded and, by default, channels-last weights.

    Outputs equal the original's up to float rounding. Feed it inputs in either memory format; convert
    them with ``x.contiguous(memory_format=torch.channels_last)`` to skip a conversion per call.

    Example:
        >>> from mobiletasks import create_model
        >>> fast = optimize_for_inference(create_model("mobilenet_v2"))
        >>> fast(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """
    fast = fuse_bn_(copy.deepcopy(model).eval())
    return fast.to(memory_format=torch.channels_last) if channels_last else fast
