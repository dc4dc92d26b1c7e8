"""ShuffleNet V1 (Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
arXiv 1707.01083), as a classifier and a feature extractor.

The network is the paper's Table 1: a 3x3 stride-2 conv with 24 channels and a 3x3 stride-2 max pool, then three
stages of 4, 8 and 4 ShuffleNet units (Fig. 2) whose widths depend on the number of groups ``g`` of the pointwise
group convolutions, global pooling and a linear classifier. Taps follow the paper's layer names: ``maxpool``
(stride 4), ``stage2`` (8), ``stage3`` (16) and ``stage4`` (32).

Choices the paper leaves open, and why:

- **Channel shuffle** is the paper's reshape-transpose (:class:`ChannelShuffle`), not ``torch.nn.ChannelShuffle``.
  That one does export: the exporter of ``mobiletasks.deploy.export_onnx`` (``torch.onnx.export(..., dynamo=True)``,
  opset 20) turns it into Reshape-Transpose-Reshape, as it does the reshape-transpose. But ``aten::channel_shuffle``
  has kernels for CPU and CUDA only and no composite fallback (``torch._C._dispatch_dump("aten::channel_shuffle")``,
  torch 2.14), so a model using it fails on MPS (what Lightning's ``accelerator="auto"`` picks on Apple silicon)
  and XPU (intel/torch-xpu-ops PR 960), and the TorchScript exporter (``dynamo=False``) refuses it. The
  reshape-transpose runs on every device and exports with both exporters; what it gives up is the CPU kernel's
  channels-last output (it returns a contiguous tensor, which the next convolution converts back).
- **Scale factor** ``width_mult`` is the paper's "ShuffleNet s x" (section 3.3): every width of Table 1, the stem
  included, times s. Stage widths are rounded up to multiples of ``4 g`` (the bottleneck, a quarter of a unit's
  output, must split into ``g`` groups) and the stem up to multiples of ``g`` (so that the first unit's grouped
  branch gets ``stage2 - stem`` channels divisible by ``g``), as tensorpack's ShuffleNet does. Table 1 (s = 1) is
  exact, and so are Megvii's reference widths (ShuffleNet-Series) at 0.5x and 2x for g = 3 and 8; at 1.5x Megvii
  keeps a stem of 24 where s x 24 gives 36 (g = 3) or 40 (g = 8).
- **The first unit of a stage** has a bottleneck of a quarter of its whole output (concatenation included) and
  its grouped branch gives ``out - in`` channels, as in Megvii's reference code (ShuffleNet-Series). Stage2's first
  pointwise conv is not grouped (section 3.3); its channel shuffle is kept, as in the reference code, so that
  every unit has the same layout.
- **Output stride** 8 or 16 takes the stride out of the first unit of the later stages: its depthwise conv runs at
  stride 1 (with the previous dilation, the later units dilated; DeepLabV3, section 3.1) and its 3x3 average-pool
  shortcut at stride 1, so both branches keep the same size.

The class reuses :class:`~mobiletasks.backbones._mobilenet.MobileNetBase` (normalization, taps, pruning of unused
layers, dilation plan, freezing, the pool-dropout-linear classifier): a ShuffleNet is, like a MobileNet, a
sequence of layers whose stride doubles at stage boundaries.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from ..registry import register_backbone, register_model
from ._mobilenet import DilationPlan, MobileNetBase, Tap
from .base import FeatureInfo

GROUPS = (1, 2, 3, 4, 8)

# ShuffleNet paper, Table 1 (ShuffleNet 1x, 224x224 input)
STEM_CHANNELS = 24  # Conv1: 3x3, stride 2; then MaxPool: 3x3, stride 2
STAGES: list[tuple[str, int, dict[int, int]]] = [
    # stage, units (the first of stride 2), output channels for g = 1, 2, 3, 4, 8
    ("stage2", 4, {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}),
    ("stage3", 8, {1: 288, 2: 400, 3: 480, 4: 544, 8: 768}),
    ("stage4", 4, {1: 576, 2: 800, 3: 960, 4: 1088, 8: 1536}),
]


class ChannelShuffle(nn.Module):
    """Channel shuffle (paper section 3.1, Fig. 1c): the channels, seen as ``groups`` rows of ``C / groups``,
    transposed and flattened, so that output channel ``j`` is input channel ``(j % groups) * (C / groups) +
    j // groups``. The permutation of ``torch.nn.ChannelShuffle``; why not that module: see the module docstring.

    Shapes:
        ``[B, C, H, W] -> [B, C, H, W]``, ``C`` divisible by ``groups``.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        return x.unflatten(1, (self.groups, -1)).transpose(1, 2).flatten(1, 2)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ShuffleUnit(nn.Module):
    """A ShuffleNet unit (paper Fig. 2b, 2c): 1x1 group conv, channel shuffle, 3x3 depthwise conv, 1x1 group conv.

    With ``stride == 1`` and ``concat=False`` (Fig. 2b) the branch's ``out_channels`` are added to the input; with
    ``concat=True`` (Fig. 2c, the first unit of a stage) the branch gives ``out_channels - in_channels`` that are
    concatenated after a 3x3 average pool of the input (stride ``stride``: 1 where the stride became dilation).
    BatchNorm after every conv, ReLU after the first and after the addition or concatenation, none after the
    depthwise conv (section 3.2).

    Args:
        in_channels, out_channels: the unit's input and output channels.
        groups: groups of the 1x1 convs.
        stride, dilation: of the depthwise conv (and the stride of the shortcut's pooling).
        concat: Fig. 2c: pooled shortcut and concatenation.
        group_first: group the first 1x1 conv (False in Stage2's first unit, section 3.3).

    Shapes:
        ``[B, in_channels, H, W] -> [B, out_channels, ceil(H / stride), ceil(W / stride)]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int,
        stride: int = 1,
        dilation: int = 1,
        concat: bool = False,
        group_first: bool = True,
    ) -> None:
        super().__init__()
        branch_out = out_channels - in_channels if concat else out_channels
        if not concat and (stride != 1 or in_channels != out_channels):
            raise ValueError(
                f"a residual ShuffleNet unit keeps its shape: got stride {stride}, {in_channels} -> {out_channels} "
                "channels; use concat=True"
            )
        mid = out_channels // 4  # the bottleneck: a quarter of the unit's output (section 3.3)
        self.compress = Conv2dNormActivation(
            in_channels, mid, kernel_size=1, groups=groups if group_first else 1, activation_layer=nn.ReLU
        )
        self.shuffle: nn.Module = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.depthwise = Conv2dNormActivation(
            mid, mid, stride=stride, dilation=dilation, groups=mid, activation_layer=None
        )
        self.expand = Conv2dNormActivation(mid, branch_out, kernel_size=1, groups=groups, activation_layer=None)
        self.shortcut = nn.AvgPool2d(3, stride=stride, padding=1) if concat else None
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand(self.depthwise(self.shuffle(self.compress(x))))
        if self.shortcut is None:
            return nn.functional.relu(x + y)
        # the pooled shortcut is already >= 0: ReLU of the concatenation is ReLU of the branch
        return torch.cat([self.shortcut(x), nn.functional.relu(y)], 1)


def stage_channels(groups: int, width_mult: float = 1.0) -> tuple[int, list[int]]:
    """The stem's and the three stages' output channels of "ShuffleNet ``width_mult`` x" with ``groups`` groups.

    Widths of Table 1 times ``width_mult``; stages rounded to multiples of ``4 * groups``, the stem to multiples of
    ``groups`` (see the module docstring).

    Raises:
        ValueError: ``groups`` not one of Table 1's.

    Example:
        >>> stage_channels(3), stage_channels(8, 0.5)
        ((24, [240, 480, 960]), (16, [192, 384, 768]))
    """
    if groups not in GROUPS:
        raise ValueError(f"groups must be one of {GROUPS} (ShuffleNet paper, Table 1), got {groups!r}")
    stem = _round_up(STEM_CHANNELS * width_mult, groups)
    return stem, [_round_up(widths[groups] * width_mult, 4 * groups) for _, _, widths in STAGES]


def _round_up(value: float, divisor: int) -> int:
    # 1e-9: products of floats land a hair above whole numbers (200 * 0.07 = 14.000000000000002)
    return math.ceil(value / divisor - 1e-9) * divisor


class ShuffleNetV1(MobileNetBase):
    """ShuffleNet V1 classifier or feature extractor.

    The classifier takes RGB float images ``[B, 3, H, W]`` in [0, 1] (normalized inside with ``image_mean`` /
    ``image_std``, ImageNet's by default) and returns logits ``[B, num_classes]``; with ``features_only`` it takes
    normalized images and returns an ordered dict of the taps of ``feature_info``: ``maxpool`` (stem channels,
    reduction 4), ``stage2`` (8), ``stage3`` (16) and ``stage4`` (32), each capped at ``output_stride``.

    Args:
        groups: groups of the pointwise convolutions, one of 1, 2, 3, 4, 8 (paper Table 1).
        width_mult: the scale factor s of "ShuffleNet s x" (the paper uses 0.25 to 2); channels are rounded to
            suit ``groups`` (:func:`stage_channels`).
        dropout: dropout before the classifier (default 0: the paper uses none).
        kwargs: ``num_classes``, ``output_stride``, ``features_only``, ``out_features``, ``frozen_stages``,
            ``freeze_bn``, ``image_mean``, ``image_std``, by name, as
            :class:`~mobiletasks.backbones._mobilenet.MobileNetBase`. The 5 stages for ``frozen_stages`` are Conv1,
            MaxPool (no parameters), Stage2, Stage3, Stage4.

    Raises:
        ValueError: ``groups`` not one of (1, 2, 3, 4, 8), ``width_mult`` not in (0, 4], or a bad argument of
            :class:`~mobiletasks.backbones._mobilenet.MobileNetBase` (``output_stride`` not 8, 16 or 32, ...).

    Example:
        >>> net = ShuffleNetV1(groups=3, features_only=True, output_stride=16)
        >>> [(f.name, f.channels, f.reduction) for f in net.feature_info]
        [('maxpool', 24, 4), ('stage2', 240, 8), ('stage3', 480, 16), ('stage4', 960, 16)]
    """

    default_dropout = 0.0

    def __init__(
        self,
        groups: int = 3,
        width_mult: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if isinstance(groups, bool) or groups not in GROUPS:
            raise ValueError(f"groups must be one of {GROUPS} (ShuffleNet paper, Table 1), got {groups!r}")
        if isinstance(width_mult, bool) or not isinstance(width_mult, int | float) or not 0 < width_mult <= 4:
            raise ValueError(
                f"width_mult must be a number in (0, 4], got {width_mult!r} (the ShuffleNet paper uses 0.25 to 2)"
            )
        self.groups = groups  # read by _layers, which the base's __init__ calls
        super().__init__(width_mult=width_mult, **kwargs)

    def _layers(self, plan: DilationPlan) -> tuple[list[nn.Module], list[Tap], list[int]]:
        stem, widths = stage_channels(self.groups, self.width_mult)
        stride, _ = plan(2)
        features: list[nn.Module] = [Conv2dNormActivation(3, stem, stride=stride, activation_layer=nn.ReLU)]
        stride, _ = plan(2)  # output stride >= 8: the stem is never dilated
        features.append(nn.MaxPool2d(3, stride=stride, padding=1))
        taps = [_tap("maxpool", stem, plan.reduction, 1)]
        stage_starts = [0, 1]
        inp = stem
        for (name, units, _), oup in zip(STAGES, widths, strict=True):
            stage_starts.append(len(features))
            for i in range(units):
                stride, dilation = plan(2 if i == 0 else 1)
                first = i == 0
                features.append(
                    ShuffleUnit(
                        inp,
                        oup,
                        self.groups,
                        stride,
                        dilation,
                        concat=first,
                        group_first=not (first and name == "stage2"),  # section 3.3
                    )
                )
                inp = oup
            taps.append(_tap(name, oup, plan.reduction, len(features) - 1))
        return features, taps, stage_starts


def _tap(name: str, channels: int, reduction: int, index: int) -> Tap:
    return Tap(FeatureInfo(name, channels, reduction, f"features.{index}"), index)


register_model("shufflenet_v1")(ShuffleNetV1)  # paper Table 1; groups and width_mult (Table 2)


@register_backbone("shufflenet_v1")
def shufflenet_v1_backbone(**kwargs: Any) -> ShuffleNetV1:
    """ShuffleNet V1 feature extractor; keyword arguments as :class:`ShuffleNetV1` (``groups``, ``width_mult``,
    ``output_stride``, ``out_features``, ...).

    Example:
        >>> net = shufflenet_v1_backbone(groups=8, width_mult=0.5, out_features=["stage3", "stage4"])
        >>> [(f.name, f.channels, f.reduction) for f in net.feature_info]
        [('stage3', 384, 16), ('stage4', 768, 32)]
    """
    return ShuffleNetV1(features_only=True, **kwargs)
