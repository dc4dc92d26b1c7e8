"""Our backbones inside torchvision's detection and segmentation models: one call each.

torchvision's detectors (``FasterRCNN``, ``MaskRCNN``, ``RetinaNet``, ``FCOS``) take a backbone with an
``out_channels`` attribute whose maps are keyed as their defaults expect: ``"0"``, ``"1"``, ... (the RoI poolers'
``featmap_names``) and five levels in all (the default anchor generators). Its segmenters take a backbone that
returns ``{"out": ..., "aux": ...}`` (``DeepLabV3``, ``FCN``) or ``{"low": ..., "high": ...}`` (``LRASPP``).
torchvision's own ``BackboneWithFPN`` cannot wrap our backbones (it walks module children by name), so:

- :class:`FPNBackbone`: any registered backbone (ours, ``torchvision/<name>``, ``timm/<name>``) with torchvision's
  ``FeaturePyramidNetwork`` and ``LastLevelMaxPool`` on its taps, as torchvision's ``resnet_fpn_backbone`` builds;
- :class:`IntermediateTaps`: the taps a segmenter needs, under the names it reads, as torchvision's
  ``IntermediateLayerGetter`` does for its own networks.

Example:
    >>> import torch
    >>> from torchvision.models.detection import FasterRCNN
    >>> model = FasterRCNN(FPNBackbone("mobilenet_v2", width_mult=0.5), num_classes=3, min_size=128, max_size=128)
    >>> _ = model.eval()
    >>> sorted(model([torch.rand(3, 128, 96)])[0])
    ['boxes', 'labels', 'scores']
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool

from ..backbones.base import Backbone, FeatureInfo
from ..factory import create_backbone

__all__ = ["FPNBackbone", "IntermediateTaps", "coarsest_taps"]


def coarsest_taps(levels: int) -> Any:
    """A tap selector (``out_features``) keeping, of each reduction, its last tap (the stage's output, or its
    expansion where the backbone taps that later), then the ``levels`` coarsest of these: MobileNetV2's
    ``layer5_expansion``, ``layer8_expansion``, ``layer15_expansion`` and ``layer19`` at strides 4, 8, 16 and 32."""

    def select(infos: Sequence[FeatureInfo]) -> list[str]:
        last: dict[int, str] = {}
        for info in infos:  # finest first; a later tap of the same reduction replaces the earlier
            last[info.reduction] = info.name
        return list(last.values())[-levels:]

    return select


def _backbone(backbone: Backbone | str, kwargs: dict[str, Any]) -> Backbone:
    """The backbone of a name (``create_backbone(name, **kwargs)``) or a built one (then without ``kwargs``)."""
    if isinstance(backbone, str):
        return create_backbone(backbone, **kwargs)
    if not isinstance(backbone, Backbone):
        raise TypeError(
            f"backbone is a {type(backbone).__name__}; pass a registered name (mobiletasks.list_backbones(): "
            "'mobilenet_v2', 'torchvision/resnet50', ...) or a backbone create_backbone built (with feature_info)"
        )
    if kwargs:
        raise ValueError(
            f"backbone arguments {sorted(kwargs)} given with a built backbone; pass the backbone's name with them, "
            "or build it with them"
        )
    return backbone


class FPNBackbone(nn.Module):
    """A registered backbone with a feature pyramid, as torchvision's detection models take it.

    The output is torchvision's: an ordered dict of ``out_channels`` maps keyed ``"0"`` (finest) to
    ``str(levels - 1)``, then ``"pool"`` (a stride-2 max-pool of the coarsest, ``LastLevelMaxPool``): with the default
    ``levels=4``, the five maps that the default anchor generators of ``FasterRCNN``, ``MaskRCNN``, ``RetinaNet`` and
    ``FCOS`` expect, and the names their default ``MultiScaleRoIAlign`` pools from. Built as torchvision's
    ``resnet_fpn_backbone`` (``torchvision.models.detection.backbone_utils``), on our taps.

    Args:
        backbone: a registered name (``mobilenet_v2``, ``torchvision/resnet50``, ``timm/...``), built with
            ``backbone_kwargs`` and the taps of :func:`coarsest_taps` (unless ``out_features`` is given), or a built
            backbone (all its taps are used).
        out_channels: the pyramid's channels (FPN paper: 256).
        levels: the backbone taps the pyramid takes (default 4; a name given, without ``out_features``). The
            detectors' default anchor generators take 5 maps: ``levels + 1`` with ``LastLevelMaxPool``, ``levels +
            2`` with ``LastLevelP6P7`` (so ``levels=3`` there, RetinaNet's P3-P7).
        extra_blocks: the pyramid's extra levels (default ``LastLevelMaxPool``, ``"pool"``; ``LastLevelP6P7(256,
            256)`` adds ``"p6"`` and ``"p7"``).
        backbone_kwargs: ``create_backbone``'s arguments: ``pretrained`` (ImageNet weights), ``width_mult``,
            ``output_stride``, ``frozen_stages``, ``out_features``, ...

    Raises:
        ValueError: backbone arguments or ``levels`` with a built backbone; ``levels`` below 1, or more than the
            backbone has strides (e.g. MobileNetV2 at ``output_stride=8`` has 3); ``create_backbone``'s errors.
        TypeError: ``backbone`` is neither a name nor a backbone with ``feature_info``.

    Attributes:
        body: the backbone; ``fpn``: torchvision's ``FeaturePyramidNetwork``; ``out_channels``: what the detection
            heads read.
    """

    def __init__(
        self,
        backbone: Backbone | str,
        out_channels: int = 256,
        levels: int | None = None,
        extra_blocks: ExtraFPNBlock | None = None,
        **backbone_kwargs: Any,
    ) -> None:
        super().__init__()
        if levels is not None and (not isinstance(levels, int) or isinstance(levels, bool) or levels < 1):
            raise ValueError(f"levels is {levels!r}; give the number of backbone taps the pyramid takes, e.g. 4")
        named = isinstance(backbone, str)
        if levels is not None and (not named or "out_features" in backbone_kwargs):
            raise ValueError(
                "levels picks the taps of a backbone built from its name; leave it out with out_features or a "
                "built backbone (all their taps are used)"
            )
        wanted = None
        if named and "out_features" not in backbone_kwargs:
            wanted = levels or 4
            backbone_kwargs["out_features"] = coarsest_taps(wanted)
        self.body = _backbone(backbone, backbone_kwargs)
        taps = [(info.name, info.reduction) for info in self.body.feature_info]
        if wanted is not None and len(taps) < wanted:
            raise ValueError(
                f"{backbone} has taps at only {len(taps)} strides here {taps}, and the pyramid takes {wanted}: keep "
                "output_stride 32 for detection (dilation is for segmentation), or pass levels="
                f"{len(taps)} and the client an anchor generator and RoI pooler of {len(taps) + 1} maps"
            )
        channels = [info.channels for info in self.body.feature_info]
        self.fpn = FeaturePyramidNetwork(channels, out_channels, extra_blocks or LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        maps = self.body(x)
        return self.fpn(OrderedDict((str(k), m) for k, m in enumerate(maps.values())))


class IntermediateTaps(nn.Module):
    """A registered backbone returning the taps ``return_taps`` names, under the names a client reads: as
    torchvision's ``IntermediateLayerGetter`` does for its own networks' layers.

    ``{"layer19": "out", "layer14": "aux"}`` for ``DeepLabV3`` and ``FCN`` (with an auxiliary head),
    ``{"layer7": "low", "layer19": "high"}`` for ``LRASPP`` (strides 8 and 32).

    Args:
        backbone: a registered name (built with ``backbone_kwargs`` and exactly these taps) or a built backbone.
        return_taps: tap name -> output name, in output order.
        backbone_kwargs: ``create_backbone``'s arguments (``pretrained``, ``width_mult``, ``output_stride``, ...).

    Raises:
        ValueError: a tap the backbone does not have (the message lists its taps); backbone arguments with a built
            backbone.

    Attributes:
        channels: output name -> channels, for the heads (``DeepLabHead(model.backbone.channels["out"], 21)``).
    """

    def __init__(self, backbone: Backbone | str, return_taps: Mapping[str, str], **backbone_kwargs: Any) -> None:
        super().__init__()
        if not isinstance(return_taps, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in return_taps.items()
        ):
            raise ValueError(
                f"return_taps is {return_taps!r}; give a dict from tap names to the names the client reads, e.g. "
                "{'layer19': 'out'} for DeepLabV3"
            )
        if isinstance(backbone, str):
            try:
                self.body = create_backbone(backbone, out_features=list(return_taps), **backbone_kwargs)
            except ValueError as err:
                if "out_features" not in str(err):
                    raise
                raise ValueError(
                    f"return_taps {dict(return_taps)} names a tap {backbone} does not have (it maps a tap to the name "
                    f"the client reads, e.g. {{'layer19': 'out'}}): {err}"
                ) from None
        else:
            self.body = _backbone(backbone, backbone_kwargs)
        known = {info.name: info.channels for info in self.body.feature_info}
        missing = [tap for tap in return_taps if tap not in known]
        if missing:
            raise ValueError(f"the backbone has no tap {missing[0]!r}; its taps are {list(known)}")
        self.return_taps = dict(return_taps)
        self.channels = {name: known[tap] for tap, name in self.return_taps.items()}

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        maps = self.body(x)
        return OrderedDict((name, maps[tap]) for tap, name in self.return_taps.items())
