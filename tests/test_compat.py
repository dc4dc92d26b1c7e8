"""mobiletasks.compat: every private API of another library that mobiletasks uses is still there, with the parameters
and the behaviour mobiletasks relies on. A failure names the library, its installed version and the private name:
adapt ``mobiletasks/compat.py`` (and the code that uses the name) to the new version."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList

from mobiletasks import compat
from mobiletasks.compat import (
    CLI_INSTANTIATE_TRAINER,
    CLI_PARSE_CKPT_PATH,
    MAKE_DIVISIBLE,
    PRIVATE_APIS,
    PrivateAPI,
    PrivateAPIError,
    overrides_private,
)
from mobiletasks.models.detection import TFAnchorGenerator


def fail(record: PrivateAPI, problem: str) -> None:
    pytest.fail(str(record.error(problem)), pytrace=False)


@pytest.mark.parametrize("record", PRIVATE_APIS, ids=lambda r: r.qualified_name)
def test_private_api_is_there_with_its_parameters(record: PrivateAPI) -> None:
    try:
        record.check()
    except PrivateAPIError as err:
        pytest.fail(str(err), pytrace=False)


@functools.cache
def library_source(package: str) -> str:
    root = Path(importlib.import_module(package).__file__ or "").parent
    return "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in sorted(root.rglob("*.py")))


@pytest.mark.parametrize("record", [r for r in PRIVATE_APIS if r.kind == "method"], ids=lambda r: r.qualified_name)
def test_private_method_is_still_called_by_its_library(record: PrivateAPI) -> None:
    """An override of a method its library no longer calls would never run, silently."""
    package = record.owner.split(".")[0]
    if not re.search(rf"\.{re.escape(record.name)}\(", library_source(package)):
        fail(record, f"is no longer called anywhere in {package}")


@pytest.mark.parametrize(
    ("value", "divisor", "min_value", "expected"),
    [
        (32 * 1.0, 8, None, 32),
        (32 * 0.75, 8, None, 24),  # MobileNetV1 0.75
        (1280 * 1.4, 8, None, 1792),  # MobileNetV2 1.4's last conv
        (16 * 0.35, 8, None, 8),  # never below the divisor
        (10, 8, None, 16),  # 8 would be more than 10% down
        (3, 8, 4, 4),  # min_value
        (100, 16, None, 96),
    ],
)
def test_make_divisible_rounds_as_tf_slim(value: float, divisor: int, min_value: int | None, expected: int) -> None:
    got = compat.make_divisible(value, divisor, min_value)
    if got != expected or not isinstance(got, int):
        fail(MAKE_DIVISIBLE, f"returns {got!r} for ({value}, {divisor}, {min_value}), not {expected}")


def test_batch_norm_bases_cover_the_norm_layers() -> None:
    for layer in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm):
        if not issubclass(layer, compat.BatchNormBase):
            fail(compat.BATCH_NORM, f"is no base of {layer.__name__}")
    for layer in (nn.BatchNorm2d, nn.SyncBatchNorm, nn.InstanceNorm2d):
        if not issubclass(layer, compat.NormBase):
            fail(compat.NORM_BASE, f"is no base of {layer.__name__}")
    if issubclass(nn.InstanceNorm2d, compat.BatchNormBase) or issubclass(nn.GroupNorm, compat.NormBase):
        fail(compat.BATCH_NORM, "now also covers InstanceNorm2d or GroupNorm")


def test_default_box_generator_calls_the_overridden_methods() -> None:
    """torchvision's __init__ stores _generate_wh_pairs' result in _wh_pairs and forward calls _grid_default_boxes."""
    calls: list[str] = []

    class Probe(DefaultBoxGenerator):
        def _generate_wh_pairs(
            self, num_outputs: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
        ) -> list[torch.Tensor]:
            calls.append("wh_pairs")
            return [torch.tensor([[0.5, 0.25]])] * num_outputs

        def _grid_default_boxes(
            self, grid_sizes: list[list[int]], image_size: list[int], dtype: torch.dtype = torch.float32
        ) -> torch.Tensor:
            calls.append("grid")
            return super()._grid_default_boxes(grid_sizes, image_size, dtype)

    generator = Probe([[2]])
    pairs = compat.WH_PAIRS_ATTRIBUTE.read(generator)
    if not (isinstance(pairs, list) and len(pairs) == 1 and torch.equal(pairs[0], torch.tensor([[0.5, 0.25]]))):
        fail(compat.WH_PAIRS_ATTRIBUTE, f"does not hold what _generate_wh_pairs returned: {pairs!r}")
    boxes = generator(ImageList(torch.zeros(1, 3, 32, 32), [(32, 32)]), [torch.zeros(1, 1, 4, 4)])
    if calls != ["wh_pairs", "grid"]:
        fail(compat.GRID_DEFAULT_BOXES, f"is not called as it was: calls {calls}")
    if boxes[0].shape != (16, 4):  # one box per cell of the 4x4 map: the one shape _wh_pairs holds
        fail(compat.WH_PAIRS, f"gives boxes of shape {tuple(boxes[0].shape)}, not (16, 4)")
    # the TF anchors: 3 boxes on the lowest map, 6 on the others (MobileNetV1 paper's SSD setting)
    assert TFAnchorGenerator().num_anchors_per_location() == [3, 6, 6, 6, 6, 6]


def test_strategy_checkpoint_io_is_the_configured_one() -> None:
    io = TorchCheckpointIO()
    if compat.configured_checkpoint_io(SingleDeviceStrategy("cpu")) is not None:
        fail(compat.STRATEGY_CHECKPOINT_IO, "is set on a strategy configured without one")
    if compat.configured_checkpoint_io(SingleDeviceStrategy("cpu", checkpoint_io=io)) is not io:
        fail(compat.STRATEGY_CHECKPOINT_IO, "is not the CheckpointIO the strategy was configured with")


def test_module_trainer_is_none_or_the_attached_trainer() -> None:
    module = L.LightningModule()
    if compat.attached_trainer(module) is not None:
        fail(compat.MODULE_TRAINER, "is set on a module without a trainer")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    module.trainer = trainer
    if compat.attached_trainer(module) is not trainer:
        fail(compat.MODULE_TRAINER, "is not the trainer the module is attached to")


def test_errors_name_the_library_its_version_and_the_name() -> None:
    version = re.escape(MAKE_DIVISIBLE.installed_version())
    gone = dataclasses.replace(MAKE_DIVISIBLE, name="_make_divisible_v2")
    with pytest.raises(
        PrivateAPIError,
        match=rf"^torchvision {version}: private function torchvision\.models\._utils\._make_divisible_v2 does not "
        r"exist .* written for torchvision 0\.29",
    ):
        gone.check()
    changed = dataclasses.replace(MAKE_DIVISIBLE, parameters=("value", "divisor"))
    with pytest.raises(PrivateAPIError, match=r"takes \('v', 'divisor', 'min_value'\), not \('value', 'divisor'\)"):
        changed.check()
    with pytest.raises(PrivateAPIError, match=r"lightning .*_checkpoint_io is not set on this object"):
        compat.configured_checkpoint_io(object())


def test_overrides_private_refuses_a_method_its_base_lost() -> None:
    renamed = dataclasses.replace(CLI_PARSE_CKPT_PATH, name="_parse_ckpt_path_gone")
    with pytest.raises(PrivateAPIError, match=r"lightning .*LightningCLI\._parse_ckpt_path_gone does not exist"):

        @overrides_private(renamed)
        class Gone(LightningCLI):
            def _parse_ckpt_path_gone(self) -> None: ...

    with pytest.raises(TypeError, match=r"lists .*_instantiate_trainer as overridden but does not define it"):

        @overrides_private(CLI_INSTANTIATE_TRAINER)
        class Forgot(LightningCLI):
            pass

    decorate: Callable[[type], type] = overrides_private(CLI_PARSE_CKPT_PATH)
    with pytest.raises(TypeError, match="not a method of its bases"):
        decorate(nn.Module)
