"""Shared fixtures: tiny inputs, models with random BatchNorm statistics, the backbones to check, and the
coco128 / voc128 trees (the real files where they are present, synthetic stand-ins elsewhere)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from data_trees import DataTrees, use, write_data_trees
from torch import nn

import mobiletasks

HAS_TIMM = importlib.util.find_spec("timm") is not None
# every registered backbone, plus timm models through the namespace (one MobileNet, one Xception)
BACKBONES = mobiletasks.list_backbones() + (["timm/mobilenetv1_100", "timm/xception41"] if HAS_TIMM else [])


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights *and* BatchNorm statistics, so that a wrong mapping cannot hide behind defaults."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


def calibrate(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Each BatchNorm's running statistics set to those of what reaches it when ``model(images)`` runs, in eval mode.

    A deep network with random statistics saturates: its outputs hardly depend on its input (MobileNetV2 gives the
    same logits, to 1e-7, for any image), so a comparison of outputs could not see a wrong input transform.
    """

    def measure(bn: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        bn.running_mean.copy_(args[0].mean((0, 2, 3)))
        bn.running_var.copy_(args[0].var((0, 2, 3), unbiased=False))

    hooks = [m.register_forward_pre_hook(measure) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        for hook in hooks:
            hook.remove()
    return model


# The real coco128 and voc128 files: in the folder MOBILETASKS_REAL_DATA names (a missing one hides them, as on a
# fresh clone), else in the repository's data/ (a copy or a link), else in ../shared/data beside the checkout.
_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(
    os.environ.get("MOBILETASKS_REAL_DATA")
    or next((d for d in (_ROOT / "data", _ROOT.parent / "shared" / "data") if (d / "coco128").is_dir()), _ROOT / "data")
)
HAS_REAL_DATA = (REAL_DATA / "coco128").is_dir() and (REAL_DATA / "voc128").is_dir()
# what the tests know of the real files
REAL_TREES = DataTrees(
    REAL_DATA / "coco128",
    REAL_DATA / "voc128",
    real=True,
    train_images=128,
    empty_images=frozenset({250, 508}),
    train_crowds=6,
    val_images=128,
    val_masks=100,
)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("real_data") and not HAS_REAL_DATA:
        pytest.skip(f"needs the real coco128 and voc128 files, not found in {REAL_DATA} (MOBILETASKS_REAL_DATA)")


@pytest.fixture(scope="session")
def synthetic_trees(tmp_path_factory: pytest.TempPathFactory) -> DataTrees:
    """The synthetic stand-ins for coco128 and voc128 (tests/data_trees.py), written once a session."""
    return write_data_trees(tmp_path_factory.mktemp("data_trees"))


@pytest.fixture(scope="session")
def trees(request: pytest.FixtureRequest) -> DataTrees:
    """The real coco128 and voc128 where they are present, else the synthetic stand-ins."""
    return use(REAL_TREES if HAS_REAL_DATA else request.getfixturevalue("synthetic_trees"))


@pytest.fixture(scope="session", params=[pytest.param("real", marks=pytest.mark.real_data), "synthetic"])
def both_trees(request: pytest.FixtureRequest) -> DataTrees:
    """Each in turn, for tests whose expectations are the files' own: the real trees, then the stand-ins."""
    return REAL_TREES if request.param == "real" else request.getfixturevalue("synthetic_trees")
