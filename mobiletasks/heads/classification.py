"""Classification heads on a backbone's deepest map: one class per image (fine-grained recognition, V1 paper
section 4.3) or one logit per attribute (face attributes, V1 paper section 4.5)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["AttributeHead", "ClassificationHead"]


class ClassificationHead(nn.Module):
    """Global pooling, dropout and a linear layer: logits ``[B, num_classes]``.

    Args:
        in_channels: channels of the map it reads (a backbone's ``feature_info[-1].channels``).
        num_classes: outputs.
        dropout: dropout before the linear layer (V1 paper: none, or a little for small data).
        pool: ``avg`` (the papers') or ``max`` global pooling.

    ``forward`` takes the map ``[B, C, H, W]`` or a backbone's ordered dict of maps (it reads the last).

    Example:
        >>> head = ClassificationHead(1024, 120)
        >>> head({"conv13": torch.rand(2, 1024, 7, 7)}).shape
        torch.Size([2, 120])
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0, pool: str = "avg") -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        pools = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}
        if pool not in pools:
            raise ValueError(f"pool must be one of {sorted(pools)}, got {pool!r}")
        self.pool = pools[pool](1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc.weight, 0, 0.01)  # as the classifiers of torchvision's MobileNets
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: Tensor | Mapping[str, Tensor]) -> Tensor:
        x = features if isinstance(features, Tensor) else list(features.values())[-1]
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


class AttributeHead(ClassificationHead):
    """One independent logit per attribute (multi-label); ``predict`` gives the sigmoid probabilities.

    Args:
        in_channels, dropout, pool: as :class:`ClassificationHead`.
        num_attributes: outputs (40 for CelebA).
        prior: the attributes' positive rates (one for all, or one each): the biases start at their log-odds,
            so training starts from the prior rather than from 0.5 everywhere.

    Example:
        >>> head = AttributeHead(256, 3, prior=[0.5, 0.1, 0.9])
        >>> [round(p, 3) for p in head.predict(torch.zeros(1, 256, 4, 4))[0].tolist()]
        [0.5, 0.1, 0.9]
    """

    def __init__(
        self,
        in_channels: int,
        num_attributes: int,
        dropout: float = 0.0,
        pool: str = "avg",
        prior: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__(in_channels, num_attributes, dropout, pool)
        if prior is not None:
            rates = [float(prior)] * num_attributes if isinstance(prior, int | float) else [float(p) for p in prior]
            if len(rates) != num_attributes or not all(0 < p < 1 for p in rates):
                raise ValueError(f"prior must be {num_attributes} rates strictly between 0 and 1, got {prior!r}")
            with torch.no_grad():
                self.fc.bias.copy_(torch.tensor([math.log(p / (1 - p)) for p in rates]))

    def predict(self, features: Tensor | Mapping[str, Tensor]) -> Tensor:
        """Attribute probabilities ``[B, num_attributes]``."""
        return torch.sigmoid(self(features))
