"""The model contract: what a model (or backbone) may state about itself, one ``typing.Protocol`` per statement.

Every statement is optional: the code that needs one checks it with ``isinstance`` and otherwise uses the default
named in the protocol's docstring. A model that takes images in [0, 1] also states its normalization
(:class:`mobiletasks.preprocessing.NormalizesInput`); a backbone states its feature maps
(:class:`mobiletasks.backbones.base.Backbone`). This module imports nothing of the package, so every layer may
use it.

- :class:`HasHubFiles`: ``hub_files``, its weight files in the torch hub cache (``load_pretrained``);
- :class:`ConvertsStateDict`: ``convert_state_dict``, to load other layouts (``load_pretrained``);
- :class:`HasClassHead`: ``class_head_prefix``, its class layers, fresh when fine-tuned (``load_pretrained``);
- :class:`HasFeaturesOnly`: ``features_only``, a feature extractor (``load_pretrained``);
- :class:`HasInputSize`: ``default_input_size``, its image side (``mobiletasks summary``, export, infer).

Example:
    >>> from mobiletasks import create_model
    >>> model = create_model("deeplabv3_mobilenet_v2", num_classes=2, aspp=False)
    >>> isinstance(model, HasInputSize), model.default_input_size, isinstance(model, HasHubFiles)
    (True, 513, False)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["ConvertsStateDict", "HasClassHead", "HasFeaturesOnly", "HasHubFiles", "HasInputSize"]


@runtime_checkable
class HasHubFiles(Protocol):
    """A model whose pretrained weights ``pretrained=True`` finds in the torch hub cache.

    ``hub_files``: ``tuple[str, ...]`` of glob patterns of file names in ``<torch.hub.get_dir()>/checkpoints``
    (e.g. ``("mobilenet_v2-*.pth",)``, torchvision's file); the newest match is loaded. Without it,
    ``pretrained=True`` raises ``ValueError`` (a file path still works).
    """

    @property
    def hub_files(self) -> tuple[str, ...]: ...


@runtime_checkable
class ConvertsStateDict(Protocol):
    """A model that loads weight files of other layouts (MobileNetV1: timm's keys).

    ``convert_state_dict(state)``: takes the file's flat ``{key: Tensor}`` dict and returns it keyed as the model's
    own ``state_dict()`` (tensors unchanged; keys it does not know kept as they are, to be reported). Without it,
    files load as they are.
    """

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]: ...


@runtime_checkable
class HasClassHead(Protocol):
    """A model whose class layers are not under ``classifier.``.

    ``class_head_prefix``: ``str``, the state-dict key prefix of the layers whose shapes follow ``num_classes``
    (``"head.classification_head."`` for SSD, ``"head.classifier."`` for DeepLabV3, ``"head.fc."`` for the
    classifiers on a backbone). A weight file for another number of classes loads all but these, which stay
    fresh (with a warning). Without it: ``"classifier."`` (torchvision's and our MobileNets').
    """

    @property
    def class_head_prefix(self) -> str: ...


@runtime_checkable
class HasFeaturesOnly(Protocol):
    """A network that is a classifier or only its feature extractor.

    ``features_only``: ``bool``; True: it builds no classifier and only the layers its taps need, so a weight file's
    keys of the other layers are ignored on loading. Without it: False (every key of a file must fit).
    """

    @property
    def features_only(self) -> bool: ...


@runtime_checkable
class HasInputSize(Protocol):
    """A model built for one image size.

    ``default_input_size``: ``int``, the square image side in pixels it was built for (an SSD's ``size``, 513 for
    DeepLabV3 as in the paper's tables). ``mobiletasks summary`` counts MACs there and export makes its example
    input there; ``mobiletasks infer`` records it for a classifier checkpoint. Without it: 224 (the ImageNet
    classifiers) for summary and export, and no recorded size for infer.
    """

    @property
    def default_input_size(self) -> int: ...
