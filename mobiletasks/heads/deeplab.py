"""The Mobile DeepLabV3 head (MobileNetV2 paper section 6.3): torchvision's ASPP, a 1x1 classifier, and an
optional DeepLabV3+ decoder (beyond the paper).

With ``aspp=False`` the ASPP keeps only its 1x1 branch and its image pooling branch: the paper's cheapest
row (2.11M parameters with MobileNetV2). Atrous rates are (6, 12, 18) at output stride 16 and doubled at 8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.ops.misc import Conv2dNormActivation

__all__ = ["DeepLabV3Head", "atrous_rates"]


def atrous_rates(output_stride: int, aspp: bool) -> tuple[int, ...]:
    """ASPP's dilation rates: (6, 12, 18) at output stride 16, doubled at 8; none without ASPP."""
    if not aspp:
        return ()
    if output_stride not in (8, 16):
        raise ValueError(f"DeepLabV3 runs at output_stride 8 or 16 (the paper's settings), got {output_stride}")
    return tuple(r * 16 // output_stride for r in (6, 12, 18))


class DeepLabV3Head(nn.Module):
    """ASPP (or its pooling + 1x1 part) on the deepest map, then per-pixel logits.

    Args:
        in_channels: channels of the deepest backbone map.
        num_classes: classes including background (21 for VOC).
        rates: atrous rates of the 3x3 ASPP branches (empty: image pooling + 1x1 only).
        low_level_channels: channels of a stride-4 map for the DeepLabV3+ decoder (None: no decoder).
        channels: width of the ASPP branches (256, as DeepLab).

    ``forward(high, low=None)`` returns logits at the resolution of ``low`` (decoder) or of ``high``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        rates: tuple[int, ...] = (6, 12, 18),
        low_level_channels: int | None = None,
        channels: int = 256,
    ) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, rates, channels)
        self.decoder: nn.Module | None = None
        self.reduce: nn.Module | None = None
        if low_level_channels is not None:
            # DeepLabV3+ (Chen et al. 2018): 48-channel low-level features, two 3x3 convs on the concatenation
            self.reduce = Conv2dNormActivation(low_level_channels, 48, kernel_size=1)
            self.decoder = nn.Sequential(
                Conv2dNormActivation(channels + 48, channels, kernel_size=3),
                Conv2dNormActivation(channels, channels, kernel_size=3),
            )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, high: Tensor, low: Tensor | None = None) -> Tensor:
        x = self.aspp(high)
        if self.decoder is not None and self.reduce is not None and low is not None:
            x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
            x = self.decoder(torch.cat([x, self.reduce(low)], dim=1))
        return self.classifier(x)
