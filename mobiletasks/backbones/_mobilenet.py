"""What MobileNet V1 and V2 share: a ``features`` sequence, named taps, dilation and the classifier."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from ..common import IMAGENET_MEAN, IMAGENET_STD, RGB
from ..compat import make_divisible
from ..preprocessing import Normalize
from .base import FeatureBackbone, FeatureInfo, OutFeatures, check_output_stride, check_width, select_features


class DilationPlan:
    """Turns nominal strides into (stride, dilation) pairs so that the reduction stops at ``output_stride``.

    The layer that would pass ``output_stride`` keeps the previous dilation and loses its stride; every
    later layer is dilated by the strides removed so far (DeepLabV3, section 3.1).
    """

    def __init__(self, output_stride: int) -> None:
        check_output_stride(output_stride)
        self.output_stride = output_stride
        self.reduction = 1
        self.dilation = 1

    def __call__(self, stride: int) -> tuple[int, int]:
        dilation = self.dilation
        if self.reduction * stride > self.output_stride:
            self.dilation *= stride
            return 1, dilation
        self.reduction *= stride
        return stride, dilation


@dataclass(frozen=True)
class Tap:
    """Where a tap of ``feature_info`` is read in ``features``."""

    info: FeatureInfo
    index: int  # position in ``features``
    expansion: bool = False  # read inside the block, after its 1x1 expansion


class MobileNetBase(FeatureBackbone):
    """A MobileNet classifier or, with ``features_only``, feature extractor.

    The classifier takes RGB float images ``[B, 3, H, W]`` in [0, 1] and normalizes them inside with
    ``image_mean`` / ``image_std``; so do ``forward_features`` and ``forward_taps``, which take what
    ``forward`` takes (as timm's ``forward_features``). The feature extractor takes normalized images: the
    detector or segmenter around it normalizes, and it has no ``image_mean`` / ``image_std``.

    Args:
        num_classes: classifier outputs (ignored with ``features_only``).
        width_mult: the width multiplier; channels are rounded to multiples of 8.
        dropout: dropout before the classifier (default: the subclass's ``default_dropout``).
        output_stride: 8, 16 or 32; strides beyond it become dilation.
        features_only: return an ordered dict of feature maps instead of logits.
        out_features: tap names to return (default: all of ``feature_info``), or a selector: a callable taking the
            list of all taps and returning their names (:func:`~mobiletasks.backbones.base.select_features`);
            later layers are not built.
        frozen_stages: freeze the first N of the 5 stages (a stage ends where the stride doubles).
        freeze_bn: keep every BatchNorm's running statistics fixed in training.
        image_mean, image_std: the classifier's input normalization, per RGB channel (default: the subclass's
            ``default_image_mean`` / ``default_image_std``, those its reference weights expect).

    Subclasses build the layers, their taps and where stages start in ``_layers``.
    """

    default_dropout: float  # each subclass states its reference's default
    # the statistics its reference weights expect (MobileNetV1 overrides them)
    default_image_mean: RGB = IMAGENET_MEAN
    default_image_std: RGB = IMAGENET_STD
    image_mean: RGB  # classifier mode only
    image_std: RGB

    def __init__(
        self,
        num_classes: int = 1000,
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
        super().__init__()
        check_width(width_mult)
        dropout = self.default_dropout if dropout is None else dropout
        if not features_only and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if out_features is not None and not features_only:
            raise ValueError("out_features needs features_only=True (or use create_backbone)")
        if features_only and (image_mean is not None or image_std is not None):
            raise ValueError(
                "image_mean and image_std are the classifier's: a feature extractor (features_only=True) takes "
                "normalized images, normalized by the model around it; leave them out"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.width_mult, self.output_stride, self.features_only = width_mult, output_stride, features_only
        if features_only:
            self.normalize: nn.Module = nn.Identity()  # the detector or segmenter around the backbone normalizes
        else:
            normalize = Normalize(
                self.default_image_mean if image_mean is None else image_mean,
                self.default_image_std if image_std is None else image_std,
            )
            self.normalize, self.image_mean, self.image_std = normalize, normalize.image_mean, normalize.image_std
        features, taps, stage_starts = self._layers(DilationPlan(output_stride))
        self.num_features: int = features[-1].out_channels  # type: ignore[assignment]
        self.feature_info = select_features([t.info for t in taps], out_features)
        self._taps = [t for t in taps if t.info in self.feature_info]
        if features_only:  # drop the layers no tap needs: they would cost parameters and time
            features = features[: self._taps[-1].index + 1]
        self.features = nn.Sequential(*features)
        self._stage_starts = [s for s in stage_starts if s < len(features)]
        self.num_classes = 0 if features_only else num_classes
        self.classifier = (
            nn.Identity()
            if features_only
            else nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.num_features, num_classes))
        )
        _init_weights(self)
        self.freeze(frozen_stages, freeze_bn)

    def _layers(self, plan: DilationPlan) -> tuple[list[nn.Module], list[Tap], list[int]]:
        """The layers of ``features``, the taps among them, and the index where each stage starts."""
        raise NotImplementedError

    def stages(self) -> list[nn.Module]:
        bounds = [*self._stage_starts, len(self.features)]
        return [self.features[a:b] for a, b in itertools.pairwise(bounds)]

    def forward_features(self, x: Tensor) -> Tensor:
        """The last feature map ``[B, num_features, H / 32, W / 32]`` (classifier mode) of images as ``forward``
        takes them."""
        return self.features(self.normalize(x))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    def forward_taps(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """All taps of ``feature_info`` of images as ``forward`` takes them, computing no layer beyond the last one."""
        x = self.normalize(x)
        out: OrderedDict[str, Tensor] = OrderedDict()
        taps = iter(self._taps)
        tap = next(taps, None)
        layer: Any
        for i, layer in enumerate(self.features):
            if tap is not None and tap.index == i and tap.expansion:
                hidden = layer.conv[0](x)
                out[tap.info.name] = hidden
                x = layer.forward_from_expansion(x, hidden)
                tap = next(taps, None)
            else:
                x = layer(x)
            while tap is not None and tap.index == i:
                out[tap.info.name] = x
                tap = next(taps, None)
            if tap is None:
                break
        return out

    def forward(self, x: Tensor) -> Tensor | OrderedDict[str, Tensor]:
        if self.features_only:
            return self.forward_taps(x)
        return self.forward_head(self.forward_features(x))


def stem(plan: DilationPlan, width_mult: float) -> Conv2dNormActivation:
    """The 3x3 stride-2 conv with 32 channels (before thinning) that both papers start with."""
    stride, _ = plan(2)
    return Conv2dNormActivation(3, make_divisible(32 * width_mult, 8), stride=stride, activation_layer=nn.ReLU6)


def _init_weights(model: nn.Module) -> None:
    # as torchvision's MobileNetV2
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
