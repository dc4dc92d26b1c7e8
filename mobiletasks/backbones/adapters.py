"""Any torchvision classifier or timm ``features_only`` model as a backbone with the same contract.

``torchvision/<name>``: taps are found with torchvision's feature extraction: at each reduction, the
last block output of the classifier's body (before its pooling and classifier), named by its module
path (``layer3``, ``features.12``, ``stage4``). ``output_stride`` is reached by turning
the strides beyond it into dilation, measured by a probe forward pass, so it works on any CNN.

``timm/<name>``: ``timm.create_model(name, features_only=True, output_stride=...)``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision import models as tv_models
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from ..registry import BACKBONES
from .base import FeatureBackbone, FeatureInfo, OutFeatures, check_output_stride, select_features

# The torchvision backbones we test and list; any other torchvision classifier works too.
TORCHVISION_BACKBONES = (
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "resnet18",
)
_HEAD_MODULES = ("avgpool", "classifier", "fc", "flatten", "dropout")  # torchvision's classifier heads
_PROBE = 224


def _reduction(size: int) -> int:
    """Nearest power of two to ``_PROBE / size``: unpadded convs (SqueezeNet) leave sizes a pixel off."""
    return 2 ** round(math.log2(_PROBE / size))


@torch.no_grad()
def dilate_(model: nn.Module, output_stride: int) -> None:
    """Replace strides that would pass ``output_stride`` by dilation, in place.

    A probe pass records the reduction at each conv or pool's input; a layer whose stride would pass
    ``output_stride`` loses it, and every layer with a larger nominal input reduction is dilated by the
    ratio, padding scaled to keep sizes. Measured reductions make parallel branches (ResNet's
    downsample) come out right, which a walk over module order would not.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d)]
    seen: dict[nn.Module, int] = {}

    def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        seen.setdefault(module, _reduction(args[0].shape[-1]))

    hooks = [m.register_forward_pre_hook(record) for m in layers]
    was_training = model.training
    model.eval()(torch.zeros(1, 3, _PROBE, _PROBE))
    model.train(was_training)
    for h in hooks:
        h.remove()
    for m in layers:
        reduction = seen.get(m)
        if reduction is None:  # not on the forward path
            continue
        stride, kernel = _pair(m.stride)[0], _pair(m.kernel_size)[0]
        restrided = stride > 1 and reduction * stride > output_stride
        if restrided:
            m.stride = (1, 1)
        if isinstance(m, nn.Conv2d):
            dilation = reduction // min(reduction, output_stride)
            if kernel > 1 and (restrided or dilation > 1):
                m.dilation = (dilation, dilation)
                m.padding = (dilation * (kernel - 1) // 2,) * 2
        elif restrided and kernel > 1:  # a pool: no dilation, "same" padding keeps the size
            m.padding = ((kernel - 1) // 2,) * 2


def _pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return (v, v) if isinstance(v, int) else tuple(v)


class TorchvisionBackbone(FeatureBackbone):
    """A torchvision classifier's body as a feature extractor (weights: see ``pretrained``).

    ``out_features``: tap names or a selector of them, as :func:`~mobiletasks.backbones.base.select_features`.
    """

    def __init__(
        self,
        name: str,
        output_stride: int = 32,
        out_features: OutFeatures = None,
        frozen_stages: int = 0,
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        check_output_stride(output_stride)
        try:
            model = tv_models.get_model(name, weights=None)
        except ValueError as err:
            known = ", ".join(tv_models.list_models(module=tv_models))
            raise ValueError(f"unknown torchvision classifier {name!r}; known: {known}") from err
        taps = {  # found at the nominal strides, so that dilation does not merge stages
            node: replace(info, reduction=min(info.reduction, output_stride))
            for node, info in _find_taps(model).items()
        }
        if output_stride != 32:
            dilate_(model, output_stride)
            try:
                model.eval()(torch.zeros(1, 3, _PROBE, _PROBE))
            except RuntimeError as err:
                raise ValueError(
                    f"torchvision/{name} cannot run at output_stride={output_stride}: its parallel branches "
                    f"do not line up once dilated ({str(err).splitlines()[0]}); use output_stride=32"
                ) from err
        self.feature_info = select_features(list(taps.values()), out_features)
        self.name, self.output_stride, self.features_only = name, output_stride, True
        nodes = {node: info.name for node, info in taps.items() if info in self.feature_info}
        self.body = create_feature_extractor(model, return_nodes=nodes)
        self._stage_modules = _group_by_tap(self.body)
        self.freeze(frozen_stages, freeze_bn)

    def stages(self) -> list[nn.Module]:
        return self._stage_modules

    @property
    def hub_files(self) -> tuple[str, ...]:
        """torchvision's own file name for its default ImageNet weights."""
        return (Path(tv_models.get_model_weights(self.name).DEFAULT.url).name,)

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return _into_body(self, state)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict(self.body(x))


@torch.no_grad()
def _find_taps(model: nn.Module) -> dict[str, FeatureInfo]:
    """Node -> FeatureInfo: at each reduction, the last output of a module at depth one or two of the
    body (``layer3``, ``features.12``: block outputs, not nodes inside blocks), named by its shortest path."""
    _, nodes = get_graph_node_names(model)
    last_of: dict[str, str] = {}  # module path -> its last node, i.e. its output
    for node in nodes[1:]:  # nodes[0] is the input
        parts = node.split(".")
        if parts[0] in _HEAD_MODULES:
            break
        for k in range(1, min(2, len(parts)) + 1):
            last_of[".".join(parts[:k])] = node
    names: dict[str, str] = {}  # node -> the shortest path it ends
    for path, node in sorted(last_of.items(), key=lambda item: -len(item[0])):
        names[node] = path
    names = {n: names[n] for n in nodes if n in names}  # graph order
    probe = create_feature_extractor(model, return_nodes=list(names)).eval()
    last: dict[int, tuple[str, int]] = {}
    for node, y in probe(torch.zeros(1, 3, _PROBE, _PROBE)).items():
        if isinstance(y, Tensor) and y.dim() == 4 and _reduction(y.shape[-1]) <= 32:  # not pooled
            last[_reduction(y.shape[-1])] = (node, y.shape[1])
    return {node: FeatureInfo(names[node], c, r, node) for r, (node, c) in sorted(last.items())}


def _group_by_tap(body: nn.Module) -> list[nn.Module]:
    """The graph's modules in execution order, cut after each tap: one ``nn.ModuleList`` a stage."""
    graph: Any = body.graph
    output = next(n for n in graph.nodes if n.op == "output")
    taps = set(output.args[0].values())
    stages: list[list[nn.Module]] = [[]]
    for node in graph.nodes:
        if node.op == "call_module":
            stages[-1].append(body.get_submodule(node.target))
        if node in taps:
            stages.append([])
    return [nn.ModuleList(s) for s in stages[: len(taps)]]


class TimmBackbone(FeatureBackbone):
    """Any timm model that supports ``features_only``; ``output_stride`` as timm implements it.

    ``out_features``: tap names or a selector of them, as :func:`~mobiletasks.backbones.base.select_features`.
    """

    def __init__(
        self,
        name: str,
        output_stride: int = 32,
        out_features: OutFeatures = None,
        frozen_stages: int = 0,
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        check_output_stride(output_stride)
        try:
            import timm
        except ImportError as err:
            raise ImportError(f"backbone 'timm/{name}' needs timm: pip install 'mobiletasks[timm]'") from err
        kwargs: dict[str, Any] = {"output_stride": output_stride} if output_stride != 32 else {}
        try:
            body: Any = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
        except RuntimeError as err:  # timm raises RuntimeError for unknown names
            raise ValueError(f"timm/{name}: {err}; see timm.list_models()") from err
        infos = [
            FeatureInfo(d["module"].replace(".", "_"), d["num_chs"], d["reduction"], d["module"])
            for d in body.feature_info.get_dicts()
        ]
        self.body = body
        self.feature_info = select_features(infos, out_features)
        self._keep = [i for i, f in enumerate(infos) if f in self.feature_info]
        self.output_stride, self.features_only = output_stride, True
        self.freeze(frozen_stages, freeze_bn)

    def stages(self) -> list[nn.Module]:
        """Leaf modules in registration order, cut after the last one inside each tap's module."""
        leaves = [(n, m) for n, m in self.body.named_modules() if not list(m.children())]
        cuts: list[int] = []
        for f in self.feature_info:
            prefixes = (f.module, f.module.replace(".", "_", 1))
            inside = [i for i, (n, _) in enumerate(leaves) if any(n == p or n.startswith(p + ".") for p in prefixes)]
            cuts.append(inside[-1] + 1 if inside else (cuts[-1] if cuts else 0))
        return [nn.ModuleList(m for _, m in leaves[a:b]) for a, b in zip([0, *cuts[:-1]], cuts, strict=True)]

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return _into_body(self, state)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        maps = self.body(x)
        return OrderedDict((self.feature_info[j].name, maps[i]) for j, i in enumerate(self._keep))


def _into_body(backbone: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A classifier's state dict keyed for ``backbone.body`` (timm's feature wrapper writes ``blocks.0`` as
    ``blocks_0``); keys that fit nothing are kept as they are, to be reported."""
    own = backbone.state_dict()
    out = {}
    for key, value in state.items():
        candidates = (f"body.{key}", "body." + key.replace(".", "_", 1), key)
        out[next((c for c in candidates if c in own), key)] = value
    return out


BACKBONES.register_namespace("torchvision", TorchvisionBackbone)
BACKBONES.register_namespace("timm", TimmBackbone)
for _name in TORCHVISION_BACKBONES:
    BACKBONES.register(f"torchvision/{_name}")(partial(TorchvisionBackbone, _name))
