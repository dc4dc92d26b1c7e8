"""``create_backbone`` and ``create_model``: look a name up in its registry, build, load weights."""

from __future__ import annotations

from typing import Any

from torch import nn

from .registry import BACKBONES, MODELS
from .weights import PathLike, load_pretrained


def create_backbone(name: str, *, pretrained: bool | PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered backbone: a module whose ``forward`` returns an ordered dict of feature maps
    described by its ``feature_info``.

    Args:
        name: a name from ``list_backbones()``, ``"torchvision/<classifier>"``, ``"timm/<model>"`` or the
            import path of a backbone class.
        pretrained: a weights file, or True for the matching file in the torch hub cache. Never downloads.
        **kwargs: the backbone's own arguments (``width_mult``, ``output_stride``, ``out_features``, ...).

    Example:
        >>> net = create_backbone("mobilenet_v2", output_stride=16, out_features=["layer18"])
        >>> net.feature_info[0].channels, net.feature_info[0].reduction
        (320, 16)
    """
    return load_pretrained(BACKBONES.build(name, **kwargs), pretrained, name)


def create_model(name: str, *, pretrained: bool | PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered complete model (``list_models()``), e.g. the ImageNet classifiers.

    Example:
        >>> model = create_model("mobilenet_v1", num_classes=120, width_mult=0.75)
        >>> model.classifier[1].out_features
        120
    """
    return load_pretrained(MODELS.build(name, **kwargs), pretrained, name)
