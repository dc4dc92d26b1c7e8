"""MobileNetV1 (Howard et al., arXiv 1704.04861).

Taps follow the TF-slim names the SSD configs use: ``conv0`` is the stem, ``conv1`` to ``conv13`` the
depthwise-separable layers (``conv11``: stride 16, 512 channels; ``conv13``: stride 32, 1024).
The activation is ReLU6, as in the TF-slim and timm reference implementations.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from ..compat import make_divisible
from ..registry import register_backbone
from ._mobilenet import DilationPlan, MobileNetBase, Tap, stem
from .base import FeatureInfo

# V1 paper, Table 1: the 13 depthwise-separable layers after the 32-channel stem conv (stride 2)
V1_SETTING: list[tuple[int, int]] = [
    # pointwise channels, depthwise stride
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
]


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv + BN + ReLU6, then 1x1 pointwise conv + BN + ReLU6 (V1 paper, Fig. 3)."""

    def __init__(self, inp: int, oup: int, stride: int, dilation: int) -> None:
        super().__init__(
            Conv2dNormActivation(inp, inp, stride=stride, dilation=dilation, groups=inp, activation_layer=nn.ReLU6),
            Conv2dNormActivation(inp, oup, kernel_size=1, activation_layer=nn.ReLU6),
        )
        self.out_channels = oup


class MobileNetV1(MobileNetBase):
    """MobileNetV1 classifier or feature extractor; arguments as :class:`MobileNetBase`.

    ``width_mult`` is the paper's width multiplier alpha (V1 paper, section 3.3); rounding channels to
    multiples of 8 leaves the paper's 1.0/0.75/0.5/0.25 widths exact. The resolution multiplier is
    simply the input size: any size works. Default dropout 0, as timm.

    Example:
        >>> net = MobileNetV1(features_only=True, out_features=["conv11", "conv13"])
        >>> [(f.name, f.channels, f.reduction) for f in net.feature_info]
        [('conv11', 512, 16), ('conv13', 1024, 32)]
    """

    hub_files = ("mobilenetv1_100*.pth", "mobilenetv1_100*.safetensors")
    default_dropout = 0.0
    # [-1, 1] input, as TF-slim's MobileNetV1 (inception preprocessing) and timm's mobilenetv1_100 weights expect
    default_image_mean = (0.5, 0.5, 0.5)
    default_image_std = (0.5, 0.5, 0.5)

    def _layers(self, plan: DilationPlan) -> tuple[list[nn.Module], list[Tap], list[int]]:
        first = stem(plan, self.width_mult)
        features: list[nn.Module] = [first]
        inp: int = first.out_channels
        taps: list[Tap] = []
        stage_starts = [0]
        for c, s in V1_SETTING:
            reduction_in = plan.reduction
            stride, dilation = plan(s)
            if s == 2:  # a new stage: tap the last layer before it
                stage_starts.append(len(features))
                taps.append(_tap(len(features) - 1, inp, reduction_in))
            oup = make_divisible(c * self.width_mult, 8)
            features.append(DepthwiseSeparable(inp, oup, stride, dilation))
            inp = oup
        taps.append(_tap(len(features) - 1, inp, plan.reduction))
        return features, taps, stage_starts

    @staticmethod
    def convert_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Accept timm's ``mobilenetv1_100`` layout (``conv_stem``, ``blocks.S.I.conv_dw``) besides ours."""
        if "conv_stem.weight" not in state:
            return state
        # timm's stage S starts at our features index _TIMM_STAGE_START[S]
        out = {}
        for key, value in state.items():
            new = key
            if m := re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(conv_dw|bn1|conv_pw|bn2)\.(.+)", key):
                stage, i, part, rest = m.groups()
                out_index = _TIMM_STAGE_START[int(stage)] + int(i)
                new = f"features.{out_index}.{_TIMM_BLOCK[part]}.{rest}"
            elif m := re.fullmatch(r"(conv_stem|bn1)\.(.+)", key):
                new = f"features.0.{_TIMM_STEM[m[1]]}.{m[2]}"
            elif m := re.fullmatch(r"classifier\.(.+)", key):
                new = f"classifier.1.{m[1]}"
            out[new] = value
        return out


_TIMM_STAGE_START = [1] + [i + 1 for i, (_, s) in enumerate(V1_SETTING) if s == 2]
_TIMM_STEM = {"conv_stem": "0", "bn1": "1"}
_TIMM_BLOCK = {"conv_dw": "0.0", "bn1": "0.1", "conv_pw": "1.0", "bn2": "1.1"}


def _tap(index: int, channels: int, reduction: int) -> Tap:
    return Tap(FeatureInfo(f"conv{index}", channels, reduction, f"features.{index}"), index)


@register_backbone("mobilenet_v1")
def mobilenet_v1_backbone(**kwargs: Any) -> MobileNetV1:
    """MobileNetV1 feature extractor; keyword arguments as :class:`MobileNetV1`."""
    return MobileNetV1(features_only=True, **kwargs)
