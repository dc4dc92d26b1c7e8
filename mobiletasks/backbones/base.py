"""The feature-info contract every backbone meets, and the freezing that comes with it.

A backbone is an ``nn.Module`` whose ``forward(x)`` returns an ordered dict of named feature maps, and
whose ``feature_info`` lists, in the same order, each map's name, channels and reduction (its stride
relative to the input image). Heads read their ``in_channels`` from ``feature_info``; nobody types a
channel list twice. See ``docs/backbones.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from torch import nn

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


def check_output_stride(output_stride: int) -> None:
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")


def check_width(width_mult: float) -> None:
    if not isinstance(width_mult, int | float) or not 0 < width_mult <= 4:
        raise ValueError(f"width_mult must be a number in (0, 4], got {width_mult!r} (the paper uses 0.25 to 1.4)")


def select_features(available: Sequence[FeatureInfo], out_features: Sequence[str] | None) -> list[FeatureInfo]:
    """The taps named by ``out_features`` (all when None), in network order."""
    if out_features is None:
        return list(available)
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
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self
