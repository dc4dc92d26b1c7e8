"""EffNet (Freeman, Roese-Koerner and Kummert, "EffNet: An Efficient Structure for Convolutional Neural Networks",
ICIP 2018, arXiv 1801.06434), as a classifier and a feature extractor.

The EffNet block (paper Fig. 1a) replaces MobileNet's 3x3 depthwise conv by two spatially separable depthwise
convs with a one-dimensional max pooling between them, and moves the other half of the downsampling into the last
pointwise conv, which becomes a 2x1 conv with a one-dimensional stride ("separable pooling", section 3). No kernel of
the network is 3x3, and there is no stem conv: the first block reads the image ("Addressing the first layer").

``variant="cifar"`` is the paper's CIFAR-10 network (Table 1): three blocks take 32x32x3 to 4x4x256, a fully
connected layer reads the flattened map. ``variant="imagenet"`` (the default) is **our extension, not the paper's**:
the same blocks, two more of them (512 and 1024 channels, the widths doubling on as in Table 1) so that the last map
is at reduction 32, then global average pooling and a linear layer as the MobileNets; the SSD and DeepLab heads read
it like any backbone. The paper trains no ImageNet model and gives no weights.

Taps are named after the blocks: ``block1`` (reduction 2) to ``block3`` (8) for ``cifar``, to ``block5`` (32) for
``imagenet``, each capped at ``output_stride``.

Choices the paper leaves open, and why:

- **Axes.** Fig. 1a and Table 1 write "dw 1x3 + 1d mp", "dw 3x1", "2x1xch + 1d stride" and name no axis for the
  pooling and the stride. We pool over the width (the axis the 1x3 conv just filtered: 1x2 max pooling) and stride
  the 2x1 conv over the height (the axis of its two taps), so each half of the downsampling follows the
  convolution along its axis. The public ports differ (arthurdouillard/keras-effnet: 2x1 pooling, 2x1 kernel with
  1x2 stride; andrijdavid/EffNet: 2x1 pooling, 1x2 kernel with 1x2 stride); every reading gives the same
  parameters, MACs and map sizes, which is all that Tables 1 and 2 state.
- **Bottleneck** of a half: the first 1x1 conv gives ``out_channels // 2`` (Fig. 1a "1x1xch/2", Table 1: 1x1x32
  before 2x1x64), and the depthwise convs keep that width (Table 1's floats: no depth multiplier).
- **Activation and order.** The paper names none; both public ports (neither the authors') use a leaky ReLU with
  Keras's default slope 0.3, after every conv, and put BatchNorm after it. We keep the leaky ReLU (slope 0.3) after
  every conv, in the order conv, BatchNorm, activation, so that ``optimize_for_inference`` folds BatchNorm into the
  convs.
- **Sizes.** The pooling and the 2x1 conv are unpadded: a block maps ``H x W`` to ``floor(H / 2) x floor(W / 2)``
  (Table 1's sizes at 32x32), so an input needs at least ``2 ** blocks`` pixels a side (32 for ``imagenet``).
- **Output stride** 8 or 16 takes the stride out of the later blocks (DeepLabV3, section 3.1): their pooling and
  their 2x1 conv run at stride 1, padded at the end by their dilation (the pooling by repeating the last value,
  which a max ignores; the conv with zeros), and every later conv is dilated. The weights stay those of output
  stride 32, and the dilated maps sampled every ``32 / output_stride`` pixels are the maps at output stride 32
  (``tests/test_effnet.py``). Every stride of the network is a block's, so 8, 16 and 32 are all possible.

The class reuses :class:`~mobiletasks.backbones._mobilenet.MobileNetBase` (normalization, taps, pruning of unused
layers, dilation plan, freezing, the pool-dropout-linear classifier): an EffNet is a sequence of blocks, each of them
a stage. Only the CIFAR head differs: it flattens the 4x4 map (average-pooled to 4x4 first, so that other input
sizes work; at 32x32 the pooling does nothing).

Sources: the paper's Fig. 1 and Tables 1 and 2 (arXiv 1801.06434; the figure and tables as reproduced in
arthurdouillard.github.io's "3 small but powerful convolutional networks"), the ports named above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from ..compat import make_divisible
from ..registry import register_backbone, register_model
from ._mobilenet import DilationPlan, MobileNetBase, Tap
from .base import FeatureInfo, OutFeatures

LEAKY_SLOPE = 0.3  # the ports' leaky ReLU (Keras's default slope)

VariantName = Literal["cifar", "imagenet"]


@dataclass(frozen=True)
class Variant:
    """One EffNet network: its blocks' widths, the image side it is made for and the classifier's input grid."""

    widths: tuple[int, ...]  # each block's output channels at width 1.0; every block halves the height and width
    input_size: int
    head_grid: int  # the classifier flattens the last map average-pooled to head_grid x head_grid


VARIANTS: dict[str, Variant] = {
    # EffNet paper, Table 1 (CIFAR-10, 32x32x3): one block = 1x1xch/2 | dw 1x3 + 1d mp | dw 3x1 | 2x1xch + 1d stride
    #   block   layers                                          floats out (Table 1)
    #   1       1x1x32, dw 1x3 + mp, dw 3x1, 2x1x64 + stride    32768, 16384, 16384, 16384
    #   2       1x1x64, dw 1x3 + mp, dw 3x1, 2x1x128 + stride   16384, 8192, 8192, 8192
    #   3       1x1x128, dw 1x3 + mp, dw 3x1, 2x1x256 + stride  8192, 4096, 4096, 4096
    #   fully connected on the flattened 4x4x256 map            10
    "cifar": Variant(widths=(64, 128, 256), input_size=32, head_grid=4),
    # ours, not the paper's: two more blocks reach reduction 32; global average pooling, linear
    #   block   1   2    3    4    5
    #   out     64  128  256  512  1024
    #   reduction 2 4    8    16   32
    "imagenet": Variant(widths=(64, 128, 256, 512, 1024), input_size=224, head_grid=1),
}


class EffNetBlock(nn.Module):
    """The EffNet block (paper Fig. 1a): 1x1 conv to half the output channels, depthwise 1x3 conv, 1x2 max pooling,
    depthwise 3x1 conv, 2x1 conv to ``out_channels`` with stride 2 over the height. BatchNorm and a leaky ReLU
    follow every conv.

    Args:
        in_channels, out_channels: the block's input and output channels (``out_channels >= 2``).
        stride: 2 (the paper's block) or 1 (where the stride became dilation: the pooling and the 2x1 conv run at
            stride 1, padded at the end by ``dilation``, and keep the map's size).
        dilation: of the depthwise convs, the pooling and the 2x1 conv.

    Shapes:
        ``[B, in_channels, H, W] -> [B, out_channels, floor(H / stride), floor(W / stride)]``.

    Raises:
        ValueError: ``stride`` not 1 or 2, ``dilation`` below 1, or ``out_channels`` below 2.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, dilation: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"an EffNet block has stride 2, or 1 where the stride became dilation; got {stride!r}")
        if dilation < 1 or out_channels < 2:
            raise ValueError(f"need dilation >= 1 and out_channels >= 2, got {dilation!r} and {out_channels!r}")
        mid = out_channels // 2  # bottleneck of a half (Fig. 1a, "1x1xch/2")
        act = partial(nn.LeakyReLU, negative_slope=LEAKY_SLOPE)
        self.squeeze = Conv2dNormActivation(in_channels, mid, kernel_size=1, activation_layer=act)
        self.dw_row = Conv2dNormActivation(
            mid, mid, kernel_size=(1, 3), dilation=dilation, groups=mid, activation_layer=act
        )
        self.pool = nn.MaxPool2d((1, 2), stride=(1, stride), dilation=(1, dilation))  # "1d mp"
        self.dw_col = Conv2dNormActivation(
            mid, mid, kernel_size=(3, 1), dilation=dilation, groups=mid, activation_layer=act
        )
        self.expand = Conv2dNormActivation(  # "2x1xch + 1d stride"
            mid, out_channels, kernel_size=(2, 1), stride=(stride, 1), dilation=dilation, activation_layer=act
        )
        self.pad = 0 if stride == 2 else dilation  # at stride 1 the even windows keep the size: pad at the end
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: Tensor) -> Tensor:
        x = self.dw_row(self.squeeze(x))
        if self.pad:  # a max over a repeated last value is the max without it
            x = F.pad(x, (0, self.pad, 0, 0), mode="replicate")
        x = self.dw_col(self.pool(x))
        if self.pad:
            x = F.pad(x, (0, 0, 0, self.pad))
        out: Tensor = self.expand(x)
        return out


class EffNet(MobileNetBase):
    """EffNet classifier or feature extractor.

    The classifier takes RGB float images ``[B, 3, H, W]`` in [0, 1] (normalized inside with ``image_mean`` /
    ``image_std``, ImageNet's by default) and returns logits ``[B, num_classes]``; with ``features_only`` it takes
    normalized images and returns an ordered dict of the taps of ``feature_info``: ``blockN`` with the N-th block's
    output (channels ``out_channels``, reduction ``2 ** N``, capped at ``output_stride``).

    Args:
        num_classes: classifier outputs (ignored with ``features_only``; the paper's CIFAR-10 network has 10).
        variant: ``"cifar"``, the paper's network (Table 1: three blocks, a fully connected layer on the flattened
            4x4 map, made for 32x32 images), or ``"imagenet"``, our extension to reduction 32 (five blocks, global
            average pooling, made for 224x224); see the module docstring.
        width_mult: multiplies every block's output channels, rounded to multiples of 8 (not in the paper).
        dropout: dropout before the classifier (default 0: the paper names none).
        output_stride, features_only, out_features, frozen_stages, freeze_bn, image_mean, image_std: as
            :class:`~mobiletasks.backbones._mobilenet.MobileNetBase`. Every block is a stage for ``frozen_stages``.

    ``default_input_size`` is the variant's image side (32 or 224), which ``mobiletasks summary`` and export use.

    Raises:
        ValueError: ``variant`` not ``"cifar"`` or ``"imagenet"``, or a bad argument of
            :class:`~mobiletasks.backbones._mobilenet.MobileNetBase` (``output_stride`` not 8, 16 or 32,
            ``width_mult`` not in (0, 4], ...).

    Example:
        >>> net = EffNet(features_only=True, output_stride=16)
        >>> [(f.name, f.channels, f.reduction) for f in net.feature_info]
        [('block1', 64, 2), ('block2', 128, 4), ('block3', 256, 8), ('block4', 512, 16), ('block5', 1024, 16)]
        >>> EffNet(variant="cifar", num_classes=10)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    default_dropout = 0.0

    def __init__(
        self,
        num_classes: int = 1000,
        variant: VariantName = "imagenet",
        width_mult: float = 1.0,
        dropout: float | None = None,
        output_stride: int = 32,
        features_only: bool = False,
        out_features: OutFeatures = None,
        frozen_stages: int = 0,
        freeze_bn: bool = False,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
    ) -> None:
        if not isinstance(variant, str) or variant not in VARIANTS:
            raise ValueError(
                f"variant must be one of {sorted(VARIANTS)} ('cifar': the EffNet paper's Table 1; 'imagenet': ours, "
                f"to reduction 32), got {variant!r}"
            )
        self.variant = variant  # read by _layers, which the base's __init__ calls
        super().__init__(
            num_classes=num_classes,
            width_mult=width_mult,
            dropout=dropout,
            output_stride=output_stride,
            features_only=features_only,
            out_features=out_features,
            frozen_stages=frozen_stages,
            freeze_bn=freeze_bn,
            image_mean=image_mean,
            image_std=image_std,
        )
        spec = VARIANTS[variant]
        self.default_input_size = spec.input_size
        self.head_grid = spec.head_grid
        if not features_only and spec.head_grid > 1:  # Table 1: the fully connected layer reads the flattened map
            fc = nn.Linear(self.num_features * spec.head_grid**2, num_classes)
            nn.init.normal_(fc.weight, 0, 0.01)
            nn.init.zeros_(fc.bias)
            p = self.default_dropout if dropout is None else dropout
            self.classifier = nn.Sequential(nn.Dropout(p=p), fc)

    def _layers(self, plan: DilationPlan) -> tuple[list[nn.Module], list[Tap], list[int]]:
        features: list[nn.Module] = []
        taps: list[Tap] = []
        inp = 3  # no stem: the first block reads the image (paper section 3, "Addressing the first layer")
        for width in VARIANTS[self.variant].widths:
            stride, dilation = plan(2)
            oup = make_divisible(width * self.width_mult, 8)
            index = len(features)
            features.append(EffNetBlock(inp, oup, stride, dilation))
            taps.append(Tap(FeatureInfo(f"block{index + 1}", oup, plan.reduction, f"features.{index}"), index))
            inp = oup
        return features, taps, list(range(len(features)))  # every block halves the map: one stage each

    def forward_head(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` of the last map: average-pooled to ``head_grid x head_grid`` (1 for
        ``imagenet``; 4 for ``cifar``, whose 32x32 input gives a 4x4 map), flattened, dropout, linear."""
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, self.head_grid), 1))


register_model("effnet")(EffNet)  # EffNet paper, Table 1 (variant="cifar"); variant="imagenet" is ours


@register_backbone("effnet")
def effnet_backbone(**kwargs: Any) -> EffNet:
    """EffNet feature extractor; keyword arguments as :class:`EffNet` (``variant``, ``width_mult``,
    ``output_stride``, ``out_features``, ...).

    Example:
        >>> net = effnet_backbone(variant="cifar", width_mult=0.5)
        >>> [(f.name, f.channels, f.reduction) for f in net.feature_info]
        [('block1', 32, 2), ('block2', 64, 4), ('block3', 128, 8)]
    """
    return EffNet(features_only=True, **kwargs)
