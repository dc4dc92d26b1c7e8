"""The data-module contracts the tasks read (``HasSplits``, ``HasEvaluator``): every shipped data module meets
them, and a task given bare dataloaders says what it needs instead of failing on a missing attribute."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import mobiletasks.data
from mobiletasks.data.base import HasEvaluator, HasSplits
from mobiletasks.data.inference import InferenceDataModule
from mobiletasks.tasks import ClassificationTask

DATA_MODULES = [getattr(mobiletasks.data, n) for n in mobiletasks.data.__all__ if n.endswith("DataModule")]


@pytest.mark.parametrize("cls", DATA_MODULES, ids=lambda c: c.__name__)
def test_every_data_module_meets_the_contracts(cls: type) -> None:
    assert issubclass(cls, HasSplits) and issubclass(cls, HasEvaluator)


def test_the_inference_data_module_has_splits_but_no_evaluator() -> None:
    assert issubclass(InferenceDataModule, HasSplits) and not issubclass(InferenceDataModule, HasEvaluator)


def test_bare_dataloaders_get_a_clear_error() -> None:
    task = ClassificationTask(num_classes=2, model_kwargs={"width_mult": 0.25})
    loader = DataLoader(TensorDataset(torch.rand(2, 3, 32, 32), torch.tensor([0, 1])), batch_size=2)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="evaluates with the data module's evaluator"):
        trainer.validate(task, dataloaders=loader)
