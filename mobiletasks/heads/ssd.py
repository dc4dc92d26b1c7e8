"""SSD and SSDLite parts that sit on a backbone: the extra feature layers and the box/class predictors.

Both follow torchvision's contract: the feature extractor returns an ordered dict of maps and exposes
``out_channels``; a head takes the list of maps and returns ``{"bbox_regression": Tensor[N, HWA, 4],
"cls_logits": Tensor[N, HWA, K]}``. torchvision's ``SSDLiteHead`` is the SSDLite predictor as it is;
``SSDHead`` here differs from torchvision's only by its kernel size (TF's SSD-MobileNet predicts with 1x1
convs, torchvision's VGG SSD with 3x3).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.detection.ssd import SSDScoringHead
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.ops.misc import Conv2dNormActivation

from ..backbones.base import Backbone, FeatureInfo

__all__ = ["SSDFeatureExtractor", "SSDHead", "detection_taps", "ssdlite_head"]

# Depths of the four extra layers after the stride-32 map (TF object detection API, layer_depth
# [-1, -1, 512, 256, 256, 128]; SSDLite, MobileNetV2 paper section 6.2).
EXTRA_DEPTHS = (512, 256, 256, 128)


def detection_taps(feature_info: Sequence[FeatureInfo]) -> list[str]:
    """The two taps SSD reads from a backbone: its last stride-16 and last stride-32 outputs.

    On MobileNetV2 these are ``layer15_expansion`` (576 channels) and ``layer19`` (1280), as in the
    paper; on MobileNetV1 ``conv11`` and ``conv13``. A tap selector: pass it as a backbone's ``out_features``
    to build only the layers up to these taps.

    Raises:
        ValueError: the backbone has no tap at stride 16 or 32.
    """
    taps = []
    for reduction in (16, 32):
        names = [f.name for f in feature_info if f.reduction == reduction]
        if not names:
            found = sorted({f.reduction for f in feature_info})
            raise ValueError(
                f"SSD needs a backbone tap at stride {reduction}, this backbone has strides {found}; "
                "use output_stride=32 and a backbone that reaches stride 32"
            )
        taps.append(names[-1])
    return taps


def _extra_layer(in_channels: int, depth: int, depthwise: bool) -> nn.Sequential:
    """1x1 reduce to depth/2, 3x3 stride 2 (depthwise + 1x1 expand in SSDLite, a full conv in SSD)."""
    mid, act = depth // 2, nn.ReLU6
    layers = [Conv2dNormActivation(in_channels, mid, kernel_size=1, activation_layer=act)]
    if depthwise:
        layers += [
            Conv2dNormActivation(mid, mid, kernel_size=3, stride=2, groups=mid, activation_layer=act),
            Conv2dNormActivation(mid, depth, kernel_size=1, activation_layer=act),
        ]
    else:
        layers.append(Conv2dNormActivation(mid, depth, kernel_size=3, stride=2, activation_layer=act))
    return nn.Sequential(*layers)


class SSDFeatureExtractor(nn.Module):
    """A feature backbone giving two maps (strides 16 and 32) followed by SSD's extra layers.

    Args:
        backbone: a :class:`~mobiletasks.backbones.base.Backbone` whose ``feature_info`` lists exactly the two taps
            to read (build it with ``out_features=detection_taps``).
        depths: output channels of the extra layers, each halving the resolution.
        depthwise: SSDLite's depthwise separable extra layers (True) or SSD's regular ones.

    ``forward(x)`` returns an ordered dict of the 2 + len(depths) maps; ``out_channels`` lists their channels.
    """

    def __init__(self, backbone: Backbone, depths: Sequence[int] = EXTRA_DEPTHS, depthwise: bool = True) -> None:
        super().__init__()
        info = list(backbone.feature_info)
        self.body = backbone
        channels = [f.channels for f in info]
        extra = []
        for depth in depths:
            extra.append(_extra_layer(channels[-1], depth, depthwise))
            channels.append(depth)
        self.extra = nn.ModuleList(extra)
        self.out_channels = channels
        for m in self.extra.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features: OrderedDict[str, Tensor] = OrderedDict(self.body(x))
        last = next(reversed(features.values()))
        for i, layer in enumerate(self.extra):
            last = layer(last)
            features[f"extra{i + 1}"] = last
        return features


class SSDHead(nn.Module):
    """SSD's predictor: one conv per map for class logits and one for box offsets.

    Args:
        in_channels: channels of each feature map.
        num_anchors: anchors per location of each map.
        num_classes: classes including background.
        kernel_size: 1 as in TF's SSD-MobileNet (MobileNetV1 paper, Table 13 setting), 3 as in VGG SSD.
    """

    def __init__(
        self, in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int, kernel_size: int = 1
    ) -> None:
        super().__init__()

        def convs(outputs_per_anchor: int) -> nn.ModuleList:
            return nn.ModuleList(
                nn.Conv2d(c, outputs_per_anchor * a, kernel_size, padding=kernel_size // 2)
                for c, a in zip(in_channels, num_anchors, strict=True)
            )

        self.classification_head = SSDScoringHead(convs(num_classes), num_classes)
        self.regression_head = SSDScoringHead(convs(4), 4)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        # x: the feature maps, finest first
        return {"bbox_regression": self.regression_head(x), "cls_logits": self.classification_head(x)}


def ssdlite_head(in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int) -> SSDLiteHead:
    """torchvision's SSDLite predictor (3x3 depthwise + BN + ReLU6, then 1x1), MobileNetV2 paper section 6.2."""
    return SSDLiteHead(list(in_channels), list(num_anchors), num_classes, nn.BatchNorm2d)
