"""ShiftNet (Wu et al., "Shift: A Zero FLOP, Zero Parameter Alternative to Spatial Convolutions", arXiv 1711.08141).

The *shift* replaces a k x k spatial convolution: the channels are split into k^2 groups and each group is moved
by one of the kernel's offsets (the centre group stays), with zeros shifted in at the border. It has no
parameters and no multiplies; the 1x1 convolutions around it mix what it moved (the paper's Conv-Shift-Conv, CSC,
module). ShiftNet-A/B/C are the paper's ImageNet networks: a 7x7 stem and four groups of CSC modules.

Where the numbers come from: the paper's ImageNet tables could not be read here. Its results are quoted by Liu et
al.'s survey (ACM Computing Surveys 2024, Table 1): ShiftNet-A 70.1% top-1, 4.1M parameters, 1.4G MACs;
ShiftNet-B 61.2%, 1.1M, 0.371G; MobileFaceNets (Chen et al. 2018, section 1) quotes ShiftNet-C at 0.78M
parameters. The layer table below is that of a public PyTorch ShiftNet-A (``class ShiftNetA``, depths
``[5, 6, 7, 3]``); built here it gives 4.16M / 1.424G MACs for A and, at half width, 1.17M / 0.3710G for B: the
survey's B MACs to four digits. That implementation puts BN-ReLU before each 1x1 conv (pre-activation); the
modules here are the authors' ShiftResNet's (conv-BN-ReLU, shift, conv-BN, shortcut, ReLU), with the same
convolution weights. C's definition was not found; 0.4 times A's width is the round width that gives its 0.78M
(0.80M here), an inference, not the paper's text.

Taps, ResNet style: ``conv1`` is the stem (stride 2), ``layer1`` to ``layer4`` the last module of each group
(strides 4, 8, 16, 32).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops.misc import Conv2dNormActivation

from ..compat import make_divisible
from ..registry import register_backbone, register_model
from ._mobilenet import DilationPlan, MobileNetBase, Tap
from .base import FeatureInfo, check_width

__all__ = ["Shift", "ShiftBlock", "ShiftNet", "ShiftNetConfig", "shift", "shiftnet_backbone"]

ShiftNetConfig = Literal["A", "B", "C"]

# ShiftNet-A's groups after the 7x7 stride-2 stem conv with 32 channels, as the public PyTorch ShiftNet-A has
# them (the paper's own table could not be read here; see the module docstring for what it reproduces).
SHIFTNET_A: list[tuple[int, int, int, int, int]] = [
    # c: output channels, k: shift kernel, e1: expansion of the first (stride 2) module, e: of the others,
    # n: modules in the group
    # c, k, e1, e, n
    (64, 5, 4, 4, 5),
    (128, 5, 4, 3, 6),
    (256, 3, 3, 2, 7),
    (512, 3, 2, 1, 3),
]
STEM_CHANNELS = 32

# the width of each configuration relative to A: B halves every layer (1.17M parameters, 0.371G MACs, the
# survey's 1.1M / 0.371G); C at 0.4 is inferred from its 0.78M parameters (see the module docstring)
CONFIG_WIDTH: dict[str, float] = {"A": 1.0, "B": 0.5, "C": 0.4}

_TAP_NAMES = ("conv1", "layer1", "layer2", "layer3", "layer4")
_OFFSETS_3X3 = [(i, j) for i in range(3) for j in range(3)]


def shift(x: Tensor, kernel_size: int = 3, dilation: int = 1) -> Tensor:
    """Move each of ``kernel_size ** 2`` channel groups by one offset of the kernel, zeros coming in at the border.

    The channels are split into ``kernel_size ** 2`` consecutive groups of ``C // kernel_size ** 2`` channels, in
    the kernel's row-major order; group ``n`` at kernel position ``(i, j) = divmod(n, kernel_size)`` becomes
    ``out[:, c, y, x] = x[:, c, y + (i - kernel_size // 2) * dilation, x + (j - kernel_size // 2) * dilation]``
    (zero outside the map). The centre group, and the ``C mod kernel_size ** 2`` channels left over at the end,
    stay where they are. (The authors' CUDA kernel, shiftnet_cuda_v2, gives channel ``c`` the offset
    ``c mod kernel_size ** 2`` instead: the same layer up to an order of the channels, which the 1x1 convolutions
    around it learn; it too leaves the left-over channels in place.) This is a depthwise ``kernel_size``
    convolution, dilated by ``dilation``, whose kernels are one-hot, without its multiplies: one zero pad of
    ``x``, then a slice per group, concatenated.

    Args:
        x: ``[B, C, H, W]`` with ``C >= kernel_size ** 2``.
        kernel_size: the odd side of the kernel whose offsets the groups take (3: 9 groups, shifts of one pixel).
        dilation: the offsets are multiplied by it (a shift of ``dilation`` pixels in a dilated network).

    Returns:
        ``[B, C, H, W]``, in ``x``'s dtype.

    Raises:
        ValueError: an even or non-positive ``kernel_size``, a non-positive ``dilation``, or fewer channels than
            groups.

    Example:
        >>> y = shift(torch.ones(1, 9, 3, 3))
        >>> y[0, 0]  # group 0 takes the up-left neighbour: zeros come in at the top and the left
        tensor([[0., 0., 0.],
                [0., 1., 1.],
                [0., 1., 1.]])
        >>> y[0, 8]  # group 8 takes the down-right neighbour
        tensor([[1., 1., 0.],
                [1., 1., 0.],
                [0., 0., 0.]])
    """
    _check_shift(kernel_size, dilation)
    groups = kernel_size * kernel_size
    size = x.shape[1] // groups
    if size == 0:
        raise ValueError(
            f"a {kernel_size}x{kernel_size} shift moves {groups} channel groups; the input has only {x.shape[1]} "
            f"channels: give it at least {groups}"
        )
    r = kernel_size // 2 * dilation
    padded = F.pad(x, (r, r, r, r))
    parts = []
    for n in range(groups):
        i, j = divmod(n, kernel_size)
        top, left = i * dilation, j * dilation
        # rows top .. top + H of the padded map; a negative end keeps the slice free of the input's size (ONNX)
        rows = slice(top, top - 2 * r or None)
        cols = slice(left, left - 2 * r or None)
        parts.append(padded[:, n * size : (n + 1) * size, rows, cols])
    if groups * size < x.shape[1]:
        parts.append(x[:, groups * size :])
    return torch.cat(parts, dim=1)


def _check_shift(kernel_size: int, dilation: int) -> None:
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive integer (3, 5, ...), got {kernel_size!r}")
    if not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"dilation must be a positive integer, got {dilation!r}")


class Shift(nn.Module):
    """:func:`shift` of ``channels`` channels as a module: no parameters and, in eager mode, no multiply-accumulates
    (``[B, channels, H, W] -> [B, channels, H, W]``).

    Under ``torch.onnx.export`` and ``torch.export`` it runs as :meth:`as_conv`, the same map as one depthwise
    convolution with one-hot kernels: one graph node instead of ``kernel_size ** 2`` slices and a concatenation.
    The exporters' time grows with the nodes: ``export_onnx`` of a DeepLabV3 on a thin ShiftNet-B took 194 s with
    the slices, 15 s with the convolutions (MobileNetV2's: 34 s), on two CPU cores.

    Raises:
        ValueError: bad ``kernel_size`` or ``dilation`` (see :func:`shift`), or fewer ``channels`` than groups.
    """

    one_hot: Tensor

    def __init__(self, channels: int, kernel_size: int = 3, dilation: int = 1) -> None:
        super().__init__()
        _check_shift(kernel_size, dilation)
        groups = kernel_size * kernel_size
        if channels < groups:
            raise ValueError(
                f"a {kernel_size}x{kernel_size} shift moves {groups} channel groups; give it at least {groups} "
                f"channels, got {channels}"
            )
        self.channels, self.kernel_size, self.dilation = channels, kernel_size, dilation
        # the depthwise kernels of ``as_conv``: derived, not learned, so not in the state dict
        kernel = torch.zeros(channels, 1, kernel_size, kernel_size)
        size = channels // groups
        for n in range(groups):
            kernel[n * size : (n + 1) * size, 0, n // kernel_size, n % kernel_size] = 1.0
        kernel[groups * size :, 0, kernel_size // 2, kernel_size // 2] = 1.0  # the left-over channels stay
        self.register_buffer("one_hot", kernel, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
            return self.as_conv(x)
        return shift(x, self.kernel_size, self.dilation)

    def as_conv(self, x: Tensor) -> Tensor:
        """The shift as a depthwise convolution with one-hot kernels: the same values, with multiplies by 0 and 1."""
        pad = self.kernel_size // 2 * self.dilation
        return F.conv2d(x, self.one_hot.to(x.dtype), padding=pad, dilation=self.dilation, groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, dilation={self.dilation}"


class _DilatedAvgPool3x3(nn.Module):
    """3x3 average pool, stride 1, over neighbours ``dilation`` pixels apart, zero padded and divided by 9 at the
    border (``nn.AvgPool2d(3, 1, 1)``'s ``count_include_pad``): the shortcut of a group's first module once its
    stride became dilation. No parameters and no multiply-accumulates, as the shift."""

    def __init__(self, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation

    def forward(self, x: Tensor) -> Tensor:
        d = self.dilation
        padded = F.pad(x, (d, d, d, d))
        windows = [padded[..., i * d : i * d - 2 * d or None, j * d : j * d - 2 * d or None] for i, j in _OFFSETS_3X3]
        total = windows[0]
        for window in windows[1:]:
            total = total + window
        return total / 9


class ShiftBlock(nn.Module):
    """The CSC module: 1x1 conv (expansion) - BN - ReLU - shift - 1x1 conv - BN, a shortcut, then ReLU.

    A group's first module (``downsample``) subsamples: its second 1x1 conv has the stride (after the shift, as
    the authors' ShiftResNet) and gives ``oup - inp`` channels, concatenated with the input average-pooled 3x3
    (``inp`` channels); the others add their input. The hidden width is the branch's output times ``expansion``.

    Args:
        inp, oup: input and output channels (a ``downsample`` module needs ``oup > inp``; the others ``oup == inp``).
        expansion: hidden channels per branch output channel.
        kernel_size: the shift's kernel (3 or 5 in ShiftNet).
        stride: 2, or 1 (also for a ``downsample`` module whose stride became dilation).
        dilation: the shift's and the pooled shortcut's dilation.
        downsample: the group's first module (concatenated, pooled shortcut).

    Raises:
        ValueError: channels that do not fit (see above), or fewer hidden channels than shift groups.
    """

    def __init__(
        self,
        inp: int,
        oup: int,
        expansion: float,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        downsample: bool = False,
    ) -> None:
        super().__init__()
        branch = oup - inp if downsample else oup
        if branch < 1 or (not downsample and (inp != oup or stride != 1)):
            kind = "a downsampling module needs oup > inp" if downsample else "a residual module needs inp == oup"
            raise ValueError(f"{kind} (and stride 1 without downsampling); got inp={inp}, oup={oup}, stride={stride}")
        hidden = int(branch * expansion)
        if hidden < kernel_size**2:
            raise ValueError(
                f"the {kernel_size}x{kernel_size} shift needs at least {kernel_size**2} hidden channels, this module "
                f"has {hidden} ({branch} x expansion {expansion}); widen the network"
            )
        self.conv = nn.Sequential(
            Conv2dNormActivation(inp, hidden, kernel_size=1, activation_layer=nn.ReLU),
            Shift(hidden, kernel_size, dilation),
            nn.Conv2d(hidden, branch, 1, stride=stride, bias=False),
            nn.BatchNorm2d(branch),
        )
        self.shortcut: nn.Module | None = None
        if downsample:
            self.shortcut = nn.AvgPool2d(3, stride, padding=1) if dilation == 1 else _DilatedAvgPool3x3(dilation)
        self.out_channels, self.hidden_channels = oup, hidden

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        y = y + x if self.shortcut is None else torch.cat((y, self.shortcut(x)), dim=1)
        return F.relu(y)


@register_model("shiftnet")
class ShiftNet(MobileNetBase):
    """ShiftNet-A, -B or -C classifier or, with ``features_only``, feature extractor.

    The classifier takes RGB float images ``[B, 3, H, W]`` in [0, 1] and returns logits ``[B, num_classes]``;
    the feature extractor takes normalized images and returns ``{"conv1": [B, 32w, H/2, W/2], "layer1": [B, 64w,
    H/4, W/4], ..., "layer4": [B, 512w, H/32, W/32]}`` (``w`` the width; sides rounded up; strides capped at
    ``output_stride``). The other arguments are :class:`~mobiletasks.backbones._mobilenet.MobileNetBase`'s.

    Args:
        config: ``"A"``, ``"B"`` (A at half width) or ``"C"`` (A at 0.4 of its width, inferred: see the module
            docstring).
        width_mult: a further width multiplier on the configuration's; channels are rounded to multiples of 8.
        output_stride: 8, 16 or 32; strides beyond it become dilation: the shifts move by the dilation, the pooled
            shortcut of the de-strided module pools over neighbours as far apart, so that the map equals the
            strided network's computed densely.

    Raises:
        ValueError: an unknown ``config``, a width too small for the structure (a group's first module needs more
            output than input channels, a shift at least ``k ** 2`` hidden channels), or the base class's errors.

    Example:
        >>> net = ShiftNet(config="B", features_only=True, out_features=["layer3", "layer4"])
        >>> [(f.name, f.channels, f.reduction) for f in net.feature_info]
        [('layer3', 128, 16), ('layer4', 256, 32)]
    """

    default_dropout = 0.0  # the public ShiftNet-A has none

    def __init__(
        self,
        config: ShiftNetConfig = "A",
        width_mult: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if config not in CONFIG_WIDTH:
            raise ValueError(f"config must be one of {sorted(CONFIG_WIDTH)} (ShiftNet-A/B/C), got {config!r}")
        check_width(width_mult)
        super().__init__(width_mult=CONFIG_WIDTH[config] * width_mult, **kwargs)
        self.config = config

    def _layers(self, plan: DilationPlan) -> tuple[list[nn.Module], list[Tap], list[int]]:
        width = self.width_mult
        stride, _ = plan(2)
        inp = make_divisible(STEM_CHANNELS * width, 8)
        features: list[nn.Module] = [
            Conv2dNormActivation(3, inp, kernel_size=7, stride=stride, activation_layer=nn.ReLU)
        ]
        taps: list[Tap] = []
        stage_starts = [0]
        for c, k, e1, e, n in SHIFTNET_A:
            taps.append(_tap(len(taps), len(features) - 1, inp, plan.reduction))  # the last layer of the stage
            stage_starts.append(len(features))
            oup = make_divisible(c * width, 8)
            if oup <= inp:
                raise ValueError(
                    f"width {width:g} rounds a group's {inp} input and {oup} output channels (multiples of 8) so that "
                    "its first module has nothing to add to the pooled shortcut; use a larger width_mult"
                )
            for i in range(n):
                stride, dilation = plan(2 if i == 0 else 1)
                block = ShiftBlock(inp, oup, e1 if i == 0 else e, k, stride, dilation, downsample=i == 0)
                features.append(block)
                inp = oup
        taps.append(_tap(len(taps), len(features) - 1, inp, plan.reduction))
        return features, taps, stage_starts


def _tap(stage: int, index: int, channels: int, reduction: int) -> Tap:
    return Tap(FeatureInfo(_TAP_NAMES[stage], channels, reduction, f"features.{index}"), index)


@register_backbone("shiftnet")
def shiftnet_backbone(*, config: ShiftNetConfig = "A", **kwargs: Any) -> ShiftNet:
    """ShiftNet feature extractor (taps ``conv1``, ``layer1`` to ``layer4``); ``config`` and the keyword arguments
    as :class:`ShiftNet`.

    Example:
        >>> net = shiftnet_backbone(config="C", output_stride=16)
        >>> [(f.name, f.channels, f.reduction) for f in net.feature_info][-2:]
        [('layer3', 104, 16), ('layer4', 208, 16)]
    """
    return ShiftNet(config=config, features_only=True, **kwargs)
