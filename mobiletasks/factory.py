"""``create_backbone`` and ``create_model``: look a name up in its registry, build, load weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .backbones.base import Backbone
from .common import PathLike
from .registry import BACKBONES, MODELS
from .weights import load_pretrained


def create_backbone(name: str, *, pretrained: bool | PathLike | None = None, **kwargs: Any) -> Backbone:
    """Build a registered backbone: an ``nn.Module`` meeting the :class:`~mobiletasks.backbones.base.Backbone`
    contract, whose ``forward`` returns an ordered dict of feature maps described by its ``feature_info``.

    Args:
        name: a name from ``list_backbones()``, ``"torchvision/<classifier>"``, ``"timm/<model>"`` or the
            import path of a backbone class.
        pretrained: a weights file, or True for the matching file in the torch hub cache. Never downloads.
        **kwargs: the backbone's own arguments (``width_mult``, ``output_stride``, ``out_features``, ...);
            ``out_features`` takes tap names or a selector of them (``mobiletasks.backbones.base.OutFeatures``).

    Raises:
        ValueError: an unknown name, bad arguments, a module that describes no feature maps (no or an empty
            ``feature_info``), or a weights file that does not fit.
        FileNotFoundError: a weights file that does not exist.

    Example:
        >>> net = create_backbone("mobilenet_v2", output_stride=16, out_features=["layer18"])
        >>> net.feature_info[0].channels, net.feature_info[0].reduction
        (320, 16)
    """
    net = BACKBONES.build(name, **kwargs)
    if not isinstance(net, Backbone) or not net.feature_info:
        raise ValueError(f"backbone {name!r} describes no feature maps (feature_info); pick a registered backbone")
    load_pretrained(net, pretrained, name)
    return net


def create_model(
    name: str, *, pretrained: bool | PathLike | None = None, channels_last: bool = True, **kwargs: Any
) -> nn.Module:
    """Build a registered complete model (``list_models()``), e.g. the ImageNet classifiers.

    Args:
        name: a name from ``list_models()``, ``"torchvision/<classifier>"``, ``"timm/<model>"`` or an import path.
        pretrained: a weights file, or True for the matching file in the torch hub cache. Never downloads.
        channels_last: keep the convolution weights in channels-last (NHWC) memory format. Inputs stay ordinary
            NCHW tensors: the first convolution converts its output, so every later layer runs in NHWC, which
            oneDNN (CPU) and cuDNN (GPU) run faster for MobileNets' depthwise and 1x1 convolutions: on a 2-core
            CPU, SSDLite and DeepLabV3 on MobileNetV2 train 1.5x faster and infer 1.2x faster
            (``docs/benchmarks.md``). Outputs are the same up to float rounding; state dicts and exported ONNX
            files do not depend on it. False: the default contiguous (NCHW) weights.
        **kwargs: the model's own arguments (``num_classes``, ``width_mult``, ...).

    Example:
        >>> model = create_model("mobilenet_v1", num_classes=120, width_mult=0.75)
        >>> model.classifier[1].out_features
        120
    """
    model = load_pretrained(MODELS.build(name, **kwargs), pretrained, name)
    return model.to(memory_format=torch.channels_last) if channels_last else model
