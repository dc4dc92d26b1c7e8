"""The base of every task: hyperparameters saved, the model built from the registry, one optimizer recipe.

A task's ``__init__`` saves its (plain) arguments, then calls ``configure_models``, ``configure_losses``
and ``configure_metrics``. Class attributes ``monitor`` and ``mode`` choose the checkpoint kept as best.
Validation and test use the data module's ``evaluator(split)``, accumulated over the whole split; a task
implements ``evaluate_batch`` (feed one batch to the evaluator) and may extend ``on_evaluated``. Each split
logs how many images it scored (``val/images``); an image that could not be read fails the split unless the
task's ``skip_unreadable`` is set (:mod:`mobiletasks.data.skips`). BatchNorm layers that a training batch of one
image gives one value per channel use their running statistics (:mod:`mobiletasks.tasks.batchnorm`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal, Protocol

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from lightning.pytorch.cli import OptimizerCallable
from torch import nn

from ..data.base import plain_paths
from ..data.skips import SkipLog
from ..factory import create_model
from .batchnorm import guard_single_value_batchnorm

log = logging.getLogger(__name__)

Schedule = Literal["cosine", "poly", "constant"]


class Evaluator(Protocol):
    """What a data module's ``evaluator(split)`` returns: a metric accumulated over the whole split."""

    def update(self, preds: Any, targets: Any) -> None: ...
    def compute(self) -> dict[str, float]: ...


class BaseTask(L.LightningModule):
    """Shared machinery of the tasks.

    Args:
        optimizer: builds the optimizer from parameter groups, e.g. in YAML
            ``{class_path: torch.optim.SGD, init_args: {lr: 0.15, momentum: 0.9, weight_decay: 4.0e-5}}``.
        schedule: the learning rate over all training steps: ``cosine`` (to zero), ``poly`` (DeepLab's
            ``(1 - progress) ** 0.9``) or ``constant``.
        warmup_steps: steps of linear warm-up from lr/1000 (torchvision's detection recipe uses 1000).
        norm_weight_decay: weight decay of normalization layers' parameters and biases (None: the optimizer's).

    Every task also takes ``skip_unreadable`` (default False): score validation and test splits without the
    images that cannot be read (a warning says how many) instead of failing at the end of the split.
    """

    monitor = "val/loss"
    mode: Literal["min", "max"] = "min"
    model: nn.Module
    prediction_writer = "a prediction writer"  # named in the warning when predict runs without one

    def __init__(
        self,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        schedule: Schedule = "cosine",
        warmup_steps: int = 0,
        norm_weight_decay: float | None = 0.0,
    ) -> None:
        super().__init__()
        # the optimizer factory is code, not a hyperparameter: checkpoints stay loadable with weights_only=True
        self.save_hyperparameters(ignore=["optimizer"])
        plain_paths(self.hparams)
        self.optimizer = optimizer
        self.evaluators: dict[str, Evaluator] = {}  # per split, while its epoch runs
        self.scored: dict[str, int] = {}  # images fed to each split's evaluator
        self._skips_before: dict[str, int] = {}  # the split's skip count when its epoch started
        self.configure_models()
        self.batchnorm_guard = guard_single_value_batchnorm(self.model)
        self.configure_losses()
        self.configure_metrics()

    def configure_models(self) -> None:
        """``create_model(model, pretrained=..., num_classes=..., **model_kwargs, **model_options())`` from the
        hyperparameters every task has (``model``, ``num_classes``, ``model_kwargs``, ``pretrained``,
        ``pretrained_backbone``)."""
        hp = self.hparams
        kwargs = {**(hp["model_kwargs"] or {}), **self.model_options()}
        if hp["pretrained_backbone"] is not None:
            kwargs["pretrained_backbone"] = hp["pretrained_backbone"]
        try:
            self.model = create_model(hp["model"], pretrained=hp["pretrained"], num_classes=hp["num_classes"], **kwargs)
        except TypeError as err:
            if "pretrained_backbone" not in kwargs or "pretrained_backbone" not in str(err):
                raise
            raise ValueError(
                f"model {hp['model']!r} has no separate backbone to take pretrained_backbone "
                f"({hp['pretrained_backbone']}): load its ImageNet weights with `pretrained` (a class head of another "
                "size stays fresh), or use model 'classifier' / a detector / a segmenter with backbone=..."
            ) from None

    def model_options(self) -> dict[str, Any]:
        """The task's own arguments that the model builder takes."""
        return {}

    def configure_losses(self) -> None:
        """The loss functions, where the model does not compute its own."""

    def configure_metrics(self) -> None:
        """The metrics, where the data module does not provide the evaluator."""

    def configure_callbacks(self) -> list[Callback]:
        """The best checkpoint by the task's metric and the last one, in ``<save_dir>/<name>/checkpoints``: one
        folder for all runs of an experiment, so ``last.ckpt`` is always the latest run's and each run's best
        checkpoint carries its log version (``best-version_3-epoch=011.ckpt``). Without a logger, Lightning's
        default folder."""
        logger = self._trainer.logger if self._trainer is not None else None
        dirpath, run = None, ""
        if logger is not None and logger.save_dir is not None:
            dirpath = Path(logger.save_dir) / str(logger.name) / "checkpoints"
            version = logger.version
            run = (version if isinstance(version, str) else f"version_{version}") + "-" if version != "" else ""
        return [
            ModelCheckpoint(
                dirpath=dirpath,
                filename=f"best-{run}{{epoch:03d}}",
                monitor=self.monitor,
                mode=self.mode,
                save_last=True,
                enable_version_counter=False,
            )
        ]

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters, with the weight decay of ``norm_weight_decay`` on normalization layers and
        biases and, where the task has it, ``depthwise_weight_decay`` on depthwise convolution filters (None:
        the optimizer's)."""
        hp = self.hparams
        decay: dict[int, float] = {}  # parameter id -> its own weight decay
        if hp.get("depthwise_weight_decay") is not None:
            for m in self.modules():
                if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels:
                    decay[id(m.weight)] = hp["depthwise_weight_decay"]
        if hp["norm_weight_decay"] is not None:
            norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
            for m in self.modules():
                if isinstance(m, norm_types):
                    decay.update({id(p): hp["norm_weight_decay"] for p in m.parameters()})
            decay.update({id(p): hp["norm_weight_decay"] for n, p in self.named_parameters() if n.endswith(".bias")})
        params = [p for p in self.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": [p for p in params if id(p) not in decay]}]
        for value in dict.fromkeys(decay.values()):
            groups.append({"params": [p for p in params if decay.get(id(p)) == value], "weight_decay": value})
        return [g for g in groups if g["params"]]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer(self.parameter_groups())
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup, schedule = self.hparams["warmup_steps"], self.hparams["schedule"]

        def factor(step: int) -> float:
            if step < warmup:
                return 1e-3 + (1 - 1e-3) * step / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            if schedule == "cosine":
                return 0.5 * (1 + math.cos(math.pi * progress))
            return (1 - progress) ** 0.9 if schedule == "poly" else 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # evaluation: the data module's evaluator accumulates over the whole split
    def evaluate_batch(self, evaluator: Evaluator, batch: Any) -> None:
        raise NotImplementedError

    def on_evaluated(self, split: str, evaluator: Evaluator) -> None:
        """Called after a split's metrics are logged (the detection task writes its results file here)."""

    def _start(self, split: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "evaluator"):
            raise ValueError(
                f"{type(self).__name__} evaluates with the data module's evaluator: pass a mobiletasks data "
                "module (e.g. COCODetectionDataModule, VOCSegmentationDataModule) as `datamodule=`, not bare "
                "dataloaders"
            )
        self.evaluators[split] = datamodule.evaluator(split)
        self.scored[split] = 0
        self._skips_before[split] = self._skips(split)

    def _skip_log(self, split: str) -> SkipLog | None:
        datamodule = getattr(self.trainer, "datamodule", None)
        datasets = getattr(datamodule, "datasets", {})
        return getattr(datasets.get(split), "skip_log", None)

    def _skips(self, split: str) -> int:
        skip_log = self._skip_log(split)
        return skip_log.count if skip_log is not None else 0

    def _skip_examples(self, split: str) -> str:
        skip_log = self._skip_log(split)
        return "; ".join(skip_log.examples()[:3]) if skip_log is not None else ""

    def _end(self, split: str) -> None:
        evaluator = self.evaluators.pop(split)
        skipped = self._skips(split) - self._skips_before.pop(split)
        if skipped:
            self._report_skipped(split, skipped)
        metrics = {f"{split}/{k}": float(v) for k, v in evaluator.compute().items()}
        self.log_dict({**metrics, f"{split}/images": float(self.scored[split])})
        self.on_evaluated(split, evaluator)

    def _report_skipped(self, split: str, skipped: int) -> None:
        """A shortfall of scored images is an error unless the user opted into ``skip_unreadable``."""
        examples = self._skip_examples(split)
        total = self.scored[split] + skipped
        if self.hparams.get("skip_unreadable"):
            log.warning(
                "%s: scored %d of %d images; %d could not be read and are left out of the metrics "
                "(skip_unreadable), e.g. %s",
                split,
                self.scored[split],
                total,
                skipped,
                examples,
            )
            return
        raise ValueError(
            f"{split}: {skipped} of {total} images could not be read, so the {split} metrics would not be those of "
            f"the whole split (e.g. {examples}). Fix or remove these files (`mobiletasks data check --config ...` "
            "lists every one), or set model.init_args.skip_unreadable=true to score the readable images"
        )

    def _evaluate(self, split: str, batch: Any) -> None:
        self.scored[split] += len(batch[0])  # every task's batch starts with its images
        self.evaluate_batch(self.evaluators[split], batch)

    def on_validation_epoch_start(self) -> None:
        self._start("val")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._end("val")

    def on_test_epoch_start(self) -> None:
        self._start("test")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate("test", batch)

    def on_test_epoch_end(self) -> None:
        self._end("test")

    def on_predict_start(self) -> None:
        if not any(isinstance(cb, BasePredictionWriter) for cb in self.trainer.callbacks):  # type: ignore[attr-defined]
            log.warning(
                "no prediction writer configured: predictions stay in memory. Add %s to trainer.callbacks",
                self.prediction_writer,
            )
        self._skips_before["predict"] = self._skips("predict")

    def on_predict_end(self) -> None:
        skipped = self._skips("predict") - self._skips_before.pop("predict", 0)
        if skipped:
            examples = self._skip_examples("predict")
            log.warning("%d images could not be read and have no prediction, e.g. %s", skipped, examples)
