"""The registries: duplicate names, unknown names, user backbones, import paths."""

from __future__ import annotations

import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from mobiletasks import FeatureInfo, create_backbone, create_model, list_backbones, list_models, register_backbone
from mobiletasks.backbones import FeatureBackbone
from mobiletasks.registry import BACKBONES, MODELS, Registry


class TinyBackbone(FeatureBackbone):
    """What a user writes: two strided convs and their feature info."""

    def __init__(self, width: int = 8, frozen_stages: int = 0, freeze_bn: bool = False) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.feature_info = [FeatureInfo("c1", width, 2), FeatureInfo("c2", 2 * width, 4)]
        self.freeze(frozen_stages, freeze_bn)

    def stages(self) -> list[nn.Module]:
        return [self.c1, self.c2]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        a = self.c1(x)
        return OrderedDict(c1=a, c2=self.c2(a))


@pytest.fixture
def user_backbone() -> Iterator[str]:
    register_backbone("tiny_test_net")(TinyBackbone)
    yield "tiny_test_net"
    BACKBONES._builders.pop("tiny_test_net")


def test_user_backbone_registers_and_builds(user_backbone: str) -> None:
    assert user_backbone in list_backbones()
    net = create_backbone(user_backbone, width=4, frozen_stages=1)
    out = net(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in out.values()] == [f.channels for f in net.feature_info] == [4, 8]
    assert not net.c1.weight.requires_grad and net.c2.weight.requires_grad


def test_duplicate_names_are_rejected(user_backbone: str) -> None:
    with pytest.raises(ValueError, match="'tiny_test_net' is already registered"):
        register_backbone(user_backbone)(TinyBackbone)
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("mobilenet_v2")(TinyBackbone)


def test_registry_decorator_uses_function_name() -> None:
    registry = Registry("widget")

    @registry.register()
    def small_widget() -> nn.Module:
        return nn.Identity()

    assert registry.names() == ["small_widget"]
    assert isinstance(registry.build("small_widget"), nn.Identity)


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown backbone 'mobilenet_v9'; known: (\w+, )*mobilenet_v1, mobilenet_v2.*'timm/<name>'"
    ):
        create_backbone("mobilenet_v9")
    with pytest.raises(
        ValueError,
        match=r"unknown model 'resnet'; known: attribute_classifier, classifier, deeplabv3, .*mobilenet_v2, "
        r".*ssdlite.*'timm/<name>', 'torchvision/<name>'",
    ):
        create_model("resnet")
    with pytest.raises(ValueError, match=r"unknown torchvision classifier 'not_a_net'; known: .*resnet18"):
        create_backbone("torchvision/not_a_net")


def test_import_path(user_backbone: str) -> None:
    net = create_backbone("test_registry.TinyBackbone", width=2)
    assert [f.channels for f in net.feature_info] == [2, 4]
    with pytest.raises(ValueError, match=r"cannot import 'nowhere\.Nothing'"):
        create_backbone("nowhere.Nothing")


def test_any_torchvision_classifier_through_the_namespace() -> None:
    net = create_backbone("torchvision/mnasnet0_5")  # not in the listed five
    out = net(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in out.values()] == [f.channels for f in net.feature_info]


def test_models_are_listed() -> None:
    assert {"mobilenet_v1", "mobilenet_v2"} <= set(list_models())


def test_a_new_definition_of_the_same_builder_replaces_it() -> None:
    """Re-running a notebook cell defines the builder again (a new object, same module and name): no error."""
    registry = Registry("widget")

    def cell(width: int) -> Callable[..., nn.Module]:
        @registry.register("widget")
        def widget() -> nn.Module:
            return nn.Linear(width, width)

        return widget

    first, second = cell(2), cell(3)
    assert first is not second and (first.__module__, first.__qualname__) == (second.__module__, second.__qualname__)
    assert registry.names() == ["widget"]
    built = registry.build("widget")
    assert isinstance(built, nn.Linear) and built.in_features == 3  # the new definition


def test_another_builder_under_a_taken_name_is_rejected() -> None:
    registry = Registry("widget")

    @registry.register("widget")
    def widget() -> nn.Module:
        return nn.Identity()

    def other() -> nn.Module:
        return nn.Identity()

    with pytest.raises(ValueError, match=r"widget 'widget' is already registered \(by test_registry\.[\w.<>]*widget\)"):
        registry.register("widget")(other)
    # the same qualified name in another module is another builder
    imposter = types.FunctionType(widget.__code__, {}, "widget")
    imposter.__qualname__, imposter.__module__ = widget.__qualname__, "somewhere_else"
    with pytest.raises(ValueError, match="'widget' is already registered"):
        registry.register("widget")(imposter)
    assert registry.build("widget").__class__ is nn.Identity and registry._builders["widget"] is widget


# the registered models whose builders call create_backbone (the classifier classes, MobileNetV1 and the others,
# are their own backbones)
BACKBONE_MODELS = [name for name in list_models() if not isinstance(MODELS._builders[name], type)]


@pytest.mark.parametrize("name", BACKBONE_MODELS)
def test_models_build_their_backbone_once(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model builder builds its backbone once: it selects its taps with out_features, not with a probe backbone."""
    calls: list[str] = []
    for backbone in ("mobilenet_v1", "mobilenet_v2"):
        builder = BACKBONES._builders[backbone]

        def counted(*, _builder: Callable[..., nn.Module] = builder, _name: str = backbone, **kwargs: Any) -> nn.Module:
            calls.append(_name)
            return _builder(**kwargs)

        monkeypatch.setitem(BACKBONES._builders, backbone, counted)
    create_model(name, num_classes=3)
    assert len(calls) == 1, f"create_model({name!r}) built its backbone {len(calls)} times: {calls}"
