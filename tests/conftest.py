"""Shared fixtures: tiny inputs, models with random BatchNorm statistics, the backbones to check."""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

import mobiletasks

HAS_TIMM = importlib.util.find_spec("timm") is not None
# every registered backbone, plus timm models through the namespace (one MobileNet, one Xception)
BACKBONES = mobiletasks.list_backbones() + (["timm/mobilenetv1_100", "timm/xception41"] if HAS_TIMM else [])


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights *and* BatchNorm statistics, so that a wrong mapping cannot hide behind defaults."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


def calibrate(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Each BatchNorm's running statistics set to those of what reaches it when ``model(images)`` runs, in eval mode.

    A deep network with random statistics saturates: its outputs hardly depend on its input (MobileNetV2 gives the
    same logits, to 1e-7, for any image), so a comparison of outputs could not see a wrong input transform.
    """

    def measure(bn: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        bn.running_mean.copy_(args[0].mean((0, 2, 3)))
        bn.running_var.copy_(args[0].var((0, 2, 3), unbiased=False))

    hooks = [m.register_forward_pre_hook(measure) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        for hook in hooks:
            hook.remove()
    return model
