"""MobileNetV2 (Sandler et al., arXiv 1801.04381), with torchvision's parameter names.

Parameter names match ``torchvision.models.mobilenet_v2`` so its state dicts load as they are.
Taps follow the TF-slim layer numbering the SSDLite configs use: ``layer1`` is the stem conv,
``layer2`` to ``layer18`` the bottlenecks, ``layer19`` the last 1x1 conv.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from ..compat import make_divisible
from ..registry import register_backbone
from ._mobilenet import DilationPlan, MobileNetBase, Tap, stem
from .base import FeatureInfo

# V2 paper, Table 2: expansion t, output channels c, repeats n, first stride s
V2_SETTING: list[tuple[int, int, int, int]] = [
    # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class InvertedResidual(nn.Module):
    """Inverted residual with linear bottleneck (V2 paper, Fig. 3b); shortcut only when stride 1 and in == out."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, dilation: int = 1) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden, kernel_size=1, activation_layer=nn.ReLU6))
        layers += [
            Conv2dNormActivation(
                hidden, hidden, stride=stride, dilation=dilation, groups=hidden, activation_layer=nn.ReLU6
            ),
            nn.Conv2d(hidden, oup, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self.hidden_channels = hidden

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)

    def forward_from_expansion(self, x: Tensor, hidden: Tensor) -> Tensor:
        """Finish the block from the output of its expansion ``conv[0]`` (for expansion taps)."""
        y = self.conv[1:](hidden)
        return x + y if self.use_res_connect else y


class MobileNetV2(MobileNetBase):
    """MobileNetV2 classifier or feature extractor; arguments as :class:`MobileNetBase`.

    Channels are rounded to multiples of 8 and the last 1280 is not thinned for widths below 1.0
    (V2 paper, section 6.1). Default dropout 0.2, as torchvision.

    Example:
        >>> net = MobileNetV2(features_only=True, out_features=["layer15_expansion", "layer19"])
        >>> [(f.name, f.channels, f.reduction) for f in net.feature_info]
        [('layer15_expansion', 576, 16), ('layer19', 1280, 32)]
    """

    hub_files = ("mobilenet_v2-*.pth",)  # torchvision's ImageNet weights
    default_dropout = 0.2

    def _layers(self, plan: DilationPlan) -> tuple[list[nn.Module], list[Tap], list[int]]:
        first = stem(plan, self.width_mult)
        features: list[nn.Module] = [first]
        inp: int = first.out_channels
        taps: list[Tap] = []
        stage_starts = [0]
        for t, c, n, s in V2_SETTING:
            oup = make_divisible(c * self.width_mult, 8)
            for i in range(n):
                nominal = s if i == 0 else 1
                reduction_in = plan.reduction
                stride, dilation = plan(nominal)
                block = InvertedResidual(inp, oup, stride, t, dilation)
                if nominal == 2:  # a new stage: tap the last block before it, and its own expansion
                    stage_starts.append(len(features))
                    prev = len(features) - 1
                    taps.append(_tap(f"layer{prev + 1}", inp, reduction_in, prev))
                    taps.append(_tap(f"layer{prev + 2}_expansion", block.hidden_channels, reduction_in, prev + 1, True))
                features.append(block)
                inp = oup
        last = len(features) - 1
        taps.append(_tap(f"layer{last + 1}", inp, plan.reduction, last))
        head = make_divisible(1280 * max(1.0, self.width_mult), 8)
        features.append(Conv2dNormActivation(inp, head, kernel_size=1, activation_layer=nn.ReLU6))
        taps.append(_tap(f"layer{last + 2}", head, plan.reduction, last + 1))
        return features, taps, stage_starts


def _tap(name: str, channels: int, reduction: int, index: int, expansion: bool = False) -> Tap:
    module = f"features.{index}.conv.0" if expansion else f"features.{index}"
    return Tap(FeatureInfo(name, channels, reduction, module), index, expansion)


@register_backbone("mobilenet_v2")
def mobilenet_v2_backbone(**kwargs: Any) -> MobileNetV2:
    """MobileNetV2 feature extractor; keyword arguments as :class:`MobileNetV2`."""
    return MobileNetV2(features_only=True, **kwargs)
