"""The backbone contract (:class:`Backbone`), its feature taps, and the freezing that comes with it.

A backbone is an ``nn.Module`` whose ``forward(x)`` returns an ordered dict of named feature maps, and
whose ``feature_info`` lists, in the same order, each map's name, channels and reduction (its stride
relative to the input image). Heads read their ``in_channels`` from ``feature_info``; nobody types a
channel list twice. :class:`FeatureBackbone` is the base class that adds freezing. See ``docs/backbones.md``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from ..compat import BatchNormBase

OUTPUT_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class FeatureInfo:
    """One feature tap: its key in the output dict, channels and reduction (stride)."""

    name: str
    channels: int
    reduction: int
    module: str = ""  # where it is read, for information

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


TapSelector = Callable[[list[FeatureInfo]], Sequence[str]]  # all taps -> the names to keep
# a backbone's ``out_features``: tap names, a selector of them, or None for all
OutFeatures = Sequence[str] | TapSelector | None


@runtime_checkable
class Backbone(Protocol):
    """What ``create_backbone`` returns and every head reads: an ``nn.Module`` with these two members.

    ``feature_info``: ``Sequence[FeatureInfo]``, one entry per feature map in the order ``forward`` returns them,
    finest first; each names the map (its key), its channels and its reduction (input side / map side: 2, 4, 8,
    16 or 32, at most the backbone's ``output_stride``).

    ``backbone(x)``: ``x`` float ``[B, 3, H, W]``, normalized as the backbone's weights expect (the model around
    it normalizes); returns an ordered dict ``{info.name: Tensor[B, info.channels, ~H / info.reduction,
    ~W / info.reduction]}`` with the entries of ``feature_info``, in its order, in ``x``'s dtype.

    Backbones that subclass :class:`FeatureBackbone` also freeze stages (``frozen_stages``, ``freeze_bn``); the
    registered ones take ``out_features`` (:data:`OutFeatures`) to build only the layers their taps need.
    """

    @property
    def feature_info(self) -> Sequence[FeatureInfo]: ...

    def __call__(self, x: Tensor) -> OrderedDict[str, Tensor]: ...


def check_output_stride(output_stride: int) -> None:
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")


def check_width(width_mult: float) -> None:
    if not isinstance(width_mult, int | float) or not 0 < width_mult <= 4:
        raise ValueError(f"width_mult must be a number in (0, 4], got {width_mult!r} (the paper uses 0.25 to 1.4)")


def select_features(available: Sequence[FeatureInfo], out_features: OutFeatures) -> list[FeatureInfo]:
    """The taps named by ``out_features``, in network order.

    Args:
        available: every tap the backbone can give, in network order.
        out_features: tap names (one name as a string too); a selector, called with the list of all
            ``available`` taps, that returns the names (so that a model picks its taps from the backbone it builds,
            as SSD's ``detection_taps``); None: all taps.

    Raises:
        ValueError: an unknown name, or no name at all.

    Example:
        >>> taps = [FeatureInfo("a", 8, 8), FeatureInfo("b", 16, 16), FeatureInfo("c", 32, 32)]
        >>> [f.name for f in select_features(taps, lambda info: [f.name for f in info if f.reduction >= 16])]
        ['b', 'c']
    """
    if out_features is None:
        return list(available)
    if callable(out_features):
        out_features = out_features(list(available))
    if isinstance(out_features, str):
        out_features = [out_features]
    names = [f.name for f in available]
    unknown = [n for n in out_features if n not in names]
    if unknown or not out_features:
        raise ValueError(f"out_features {list(out_features)!r}: unknown or empty; choose from {names}")
    return [f for f in available if f.name in out_features]


class FeatureBackbone(nn.Module):
    """Base of all backbones: ``feature_info`` plus freezing of BatchNorm statistics and early stages.

    Subclasses implement ``stages()``: their modules grouped in execution order, one group a stage
    (a stage ends where the nominal stride next doubles).
    """

    feature_info: list[FeatureInfo]

    def __init__(self) -> None:
        super().__init__()
        self.frozen_stages = 0
        self.freeze_bn = False

    def stages(self) -> list[nn.Module]:
        raise NotImplementedError

    def freeze(self, frozen_stages: int = 0, freeze_bn: bool = False) -> None:
        """Freeze the parameters and BatchNorm statistics of the first ``frozen_stages`` stages and,
        with ``freeze_bn``, the statistics (not the affine parameters) of every BatchNorm layer."""
        stages = self.stages()
        if not 0 <= frozen_stages <= len(stages):
            raise ValueError(f"frozen_stages must be in [0, {len(stages)}] for this backbone, got {frozen_stages}")
        self.frozen_stages, self.freeze_bn = frozen_stages, freeze_bn
        for stage in stages[:frozen_stages]:
            stage.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> FeatureBackbone:
        super().train(mode)
        if mode:
            for stage in self.stages()[: self.frozen_stages]:
                stage.eval()
            if self.freeze_bn:
                for m in self.modules():
                    if isinstance(m, BatchNormBase):
                        m.eval()
        return self
