"""The ImageNet classifiers of the two papers, for ``create_model``: the backbone classes themselves,
whose ``forward_features`` / ``forward_head`` split lets other heads replace the classifier."""

from __future__ import annotations

from ..backbones import MobileNetV1, MobileNetV2
from ..registry import register_model

register_model("mobilenet_v1")(MobileNetV1)  # V1 paper, Table 1
register_model("mobilenet_v2")(MobileNetV2)  # V2 paper, Table 2
