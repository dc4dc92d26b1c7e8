"""Classifiers for ``create_model``.

``mobilenet_v1`` and ``mobilenet_v2`` are the ImageNet classifiers of the two papers: the backbone classes
themselves, with their own pooling, dropout and linear layer (V1 paper Tables 10 and 12 are ``mobilenet_v1``
with 120 and 40 outputs). ``classifier`` and ``attribute_classifier`` put the heads of
:mod:`mobiletasks.heads.classification` on any registered backbone (``timm/...``, ``torchvision/...`` too).
All of them, and the ``torchvision/<name>`` and ``timm/<name>`` classifiers, take RGB float images in [0, 1] and
normalize them inside, with the statistics they record as ``image_mean`` and ``image_std``
(:mod:`mobiletasks.preprocessing`).

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

from ..backbones import Backbone, MobileNetV1, MobileNetV2
from ..common import IMAGENET_MEAN, IMAGENET_STD, PathLike
from ..factory import create_backbone
from ..heads.classification import AttributeHead, ClassificationHead
from ..preprocessing import Normalize
from ..registry import MODELS, register_model

__all__ = ["ImageClassifier", "attribute_classifier", "classifier"]

register_model("mobilenet_v1")(MobileNetV1)  # V1 paper, Table 1
register_model("mobilenet_v2")(MobileNetV2)  # V2 paper, Table 2


class ImageClassifier(nn.Module):
    """A feature backbone and a classification head: ``forward_head(forward_features(x))``.

    ``forward`` and ``forward_features`` take RGB float images ``[B, 3, H, W]`` in [0, 1] and normalize them
    with ``image_mean`` / ``image_std`` before the backbone (which takes normalized images).

    Args:
        backbone: a :class:`~mobiletasks.backbones.base.Backbone` (``create_backbone``); the head reads its last map.
        head: a :class:`ClassificationHead` or :class:`AttributeHead`.
        image_mean, image_std: the input normalization, per RGB channel (default ImageNet's).
    """

    def __init__(
        self,
        backbone: Backbone,
        head: ClassificationHead,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(image_mean, image_std)
        self.image_mean, self.image_std = self.normalize.image_mean, self.normalize.image_std
        self.backbone, self.head = backbone, head
        self.num_classes = head.fc.out_features
        self.class_head_prefix = "head.fc."  # fresh when fine-tuned to other classes

    def forward_features(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """The backbone's maps of images in [0, 1]."""
        features: OrderedDict[str, Tensor] = self.backbone(self.normalize(x))
        return features

    def forward_head(self, features: OrderedDict[str, Tensor]) -> Tensor:
        logits: Tensor = self.head(features)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _backbone(name: str, kwargs: dict[str, Any] | None, pretrained: bool | PathLike | None) -> Backbone:
    return create_backbone(name, pretrained=pretrained, **(kwargs or {}))


@register_model("classifier")
def classifier(
    *,
    backbone: str = "mobilenet_v1",
    num_classes: int = 1000,
    dropout: float = 0.0,
    pool: str = "avg",
    backbone_kwargs: dict[str, Any] | None = None,
    pretrained_backbone: bool | PathLike | None = None,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
) -> ImageClassifier:
    """A :class:`ClassificationHead` (pool, dropout, linear) on any registered backbone's deepest map.

    Args:
        backbone: a registered backbone name (``list_backbones()``, ``torchvision/...``, ``timm/...``).
        num_classes: outputs (120 for Stanford Dogs, 200 for CUB).
        dropout, pool: the head's.
        backbone_kwargs: the backbone's own arguments, e.g. ``{"width_mult": 0.75}``.
        pretrained_backbone: ImageNet weights for the backbone (a file, or True for the hub cache).
        image_mean, image_std: the input normalization, per RGB channel: the statistics the backbone's weights
            were trained with (default ImageNet's, as torchvision's weights).

    Example:
        >>> classifier(backbone="mobilenet_v1", num_classes=120, backbone_kwargs={"width_mult": 0.5}).head.fc
        Linear(in_features=512, out_features=120, bias=True)
    """
    body = _backbone(backbone, backbone_kwargs, pretrained_backbone)
    head = ClassificationHead(body.feature_info[-1].channels, num_classes, dropout, pool)
    return ImageClassifier(body, head, image_mean, image_std)


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
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
) -> ImageClassifier:
    """An :class:`AttributeHead` (one logit per attribute) on any registered backbone (V1 paper section 4.5).

    Args:
        num_classes: the number of attributes (40 for CelebA).
        prior: the attributes' positive rates, to start the biases at their log-odds.
        other arguments: see :func:`classifier`.
    """
    body = _backbone(backbone, backbone_kwargs, pretrained_backbone)
    head = AttributeHead(body.feature_info[-1].channels, num_classes, dropout, pool, prior)
    return ImageClassifier(body, head, image_mean, image_std)


def _torchvision_classifier(
    name: str, *, image_mean: Sequence[float] = IMAGENET_MEAN, image_std: Sequence[float] = IMAGENET_STD, **kwargs: Any
) -> nn.Module:
    from torchvision import models

    try:
        model = models.get_model(name, weights=None, **kwargs)
    except ValueError as err:
        raise ValueError(f"unknown torchvision classifier {name!r}; see torchvision.models.list_models()") from err
    return _normalizing(model, image_mean, image_std)


def _timm_classifier(
    name: str, *, image_mean: Sequence[float] | None = None, image_std: Sequence[float] | None = None, **kwargs: Any
) -> nn.Module:
    try:
        import timm
    except ImportError as err:
        raise ValueError(f"timm/{name} needs timm: pip install 'mobiletasks[timm]'") from err
    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}; see timm.list_models()")
    model = timm.create_model(name, pretrained=False, **kwargs)
    cfg = timm.data.resolve_model_data_config(model)  # its pretrained_cfg: what its default weights expect
    mean = cfg["mean"] if image_mean is None else image_mean
    return _normalizing(model, mean, cfg["std"] if image_std is None else image_std)


def _normalizing(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """``model`` (a library's classifier) taking images in [0, 1]: a forward pre-hook feeds its ``forward`` what
    its ``normalize`` submodule makes of them. ``normalize`` holds no state, so the state dict stays the library's
    and its weight files load as they are; the library's other methods (timm's ``forward_features``) take
    normalized images as before."""
    normalize = Normalize(mean, std)
    model.add_module("normalize", normalize)  # refuses a name the model already uses
    model.image_mean, model.image_std = normalize.image_mean, normalize.image_std  # type: ignore[assignment]
    model.register_forward_pre_hook(_normalize_input)
    return model


def _normalize_input(model: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    images, *rest = args
    return (model.get_submodule("normalize")(images), *rest)


# whole classifiers from the two libraries (teachers for distillation, baselines): weights only from files
MODELS.register_namespace("torchvision", _torchvision_classifier)
MODELS.register_namespace("timm", _timm_classifier)
