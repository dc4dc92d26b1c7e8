"""Classifiers for ``create_model``.

``mobilenet_v1`` and ``mobilenet_v2`` are the ImageNet classifiers of the two papers: the backbone classes
themselves, with their own pooling, dropout and linear layer (V1 paper Tables 10 and 12 are ``mobilenet_v1``
with 120 and 40 outputs). ``classifier`` and ``attribute_classifier`` put the heads of
:mod:`mobiletasks.heads.classification` on any registered backbone (``timm/...``, ``torchvision/...`` too).
Like torchvision's and timm's classifiers, all of them take ImageNet-normalized images.

Example:
    >>> import torch
    >>> from mobiletasks import create_model
    >>> model = create_model("attribute_classifier", backbone="mobilenet_v2", num_classes=40).eval()
    >>> model(torch.rand(2, 3, 96, 96)).shape
    torch.Size([2, 40])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..backbones import MobileNetV1, MobileNetV2
from ..factory import create_backbone
from ..heads.classification import AttributeHead, ClassificationHead
from ..registry import MODELS, register_model
from ..weights import PathLike

__all__ = ["ImageClassifier", "attribute_classifier", "classifier"]

register_model("mobilenet_v1")(MobileNetV1)  # V1 paper, Table 1
register_model("mobilenet_v2")(MobileNetV2)  # V2 paper, Table 2


class ImageClassifier(nn.Module):
    """A feature backbone and a classification head: ``forward_head(forward_features(x))``.

    Args:
        backbone: returns an ordered dict of maps (``create_backbone``); the head reads the last.
        head: a :class:`ClassificationHead` or :class:`AttributeHead`.
    """

    def __init__(self, backbone: nn.Module, head: ClassificationHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.num_classes = head.fc.out_features
        self.class_head_prefix = "head.fc."  # fresh when fine-tuned to other classes

    def forward_features(self, x: Tensor) -> OrderedDict[str, Tensor]:
        features: OrderedDict[str, Tensor] = self.backbone(x)
        return features

    def forward_head(self, features: OrderedDict[str, Tensor]) -> Tensor:
        logits: Tensor = self.head(features)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _backbone(name: str, kwargs: dict[str, Any] | None, pretrained: bool | PathLike | None) -> Any:
    backbone = create_backbone(name, pretrained=pretrained, **(kwargs or {}))
    if not getattr(backbone, "feature_info", None):
        raise ValueError(f"backbone {name!r} describes no feature maps (feature_info); pick a registered backbone")
    return backbone


@register_model("classifier")
def classifier(
    *,
    backbone: str = "mobilenet_v1",
    num_classes: int = 1000,
    dropout: float = 0.0,
    pool: str = "avg",
    backbone_kwargs: dict[str, Any] | None = None,
    pretrained_backbone: bool | PathLike | None = None,
) -> ImageClassifier:
    """A :class:`ClassificationHead` (pool, dropout, linear) on any registered backbone's deepest map.

    Args:
        backbone: a registered backbone name (``list_backbones()``, ``torchvision/...``, ``timm/...``).
        num_classes: outputs (120 for Stanford Dogs, 200 for CUB).
        dropout, pool: the head's.
        backbone_kwargs: the backbone's own arguments, e.g. ``{"width_mult": 0.75}``.
        pretrained_backbone: ImageNet weights for the backbone (a file, or True for the hub cache).

    Example:
        >>> classifier(backbone="mobilenet_v1", num_classes=120, backbone_kwargs={"width_mult": 0.5}).head.fc
        Linear(in_features=512, out_features=120, bias=True)
    """
    body = _backbone(backbone, backbone_kwargs, pretrained_backbone)
    return ImageClassifier(body, ClassificationHead(body.feature_info[-1].channels, num_classes, dropout, pool))


@register_model("attribute_classifier")
def attribute_classifier(
    *,
    backbone: str = "mobilenet_v1",
    num_classes: int = 40,
    dropout: float = 0.0,
    pool: str = "avg",
    prior: float | Sequence[float] | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    pretrained_backbone: bool | PathLike | None = None,
) -> ImageClassifier:
    """An :class:`AttributeHead` (one logit per attribute) on any registered backbone (V1 paper section 4.5).

    Args:
        num_classes: the number of attributes (40 for CelebA).
        prior: the attributes' positive rates, to start the biases at their log-odds.
        other arguments: see :func:`classifier`.
    """
    body = _backbone(backbone, backbone_kwargs, pretrained_backbone)
    return ImageClassifier(body, AttributeHead(body.feature_info[-1].channels, num_classes, dropout, pool, prior))


def _torchvision_classifier(name: str, **kwargs: Any) -> nn.Module:
    from torchvision import models

    try:
        return models.get_model(name, weights=None, **kwargs)
    except ValueError as err:
        raise ValueError(f"unknown torchvision classifier {name!r}; see torchvision.models.list_models()") from err


def _timm_classifier(name: str, **kwargs: Any) -> nn.Module:
    try:
        import timm
    except ImportError as err:
        raise ValueError(f"timm/{name} needs timm: pip install 'mobiletasks[timm]'") from err
    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}; see timm.list_models()")
    return timm.create_model(name, pretrained=False, **kwargs)


# whole classifiers from the two libraries (teachers for distillation, baselines): weights only from files
MODELS.register_namespace("torchvision", _torchvision_classifier)
MODELS.register_namespace("timm", _timm_classifier)
