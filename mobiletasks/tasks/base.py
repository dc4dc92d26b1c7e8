"""The base of every task: hyperparameters saved, the model built from the registry, one optimizer recipe.

A task's ``__init__`` saves its (plain) arguments, then calls ``configure_models``, ``configure_losses``
and ``configure_metrics``. Class attributes ``monitor`` and ``mode`` name the metric of the best checkpoint
(:class:`~mobiletasks.tasks.checkpoint.TaskCheckpoint`).
Validation and test use the data module's ``evaluator(split)``, accumulated over the whole split; a task
implements ``evaluate_batch`` (feed one batch to the evaluator) and may extend ``on_evaluated``. Each split
logs how many images it scored (``val/images``); an image that could not be read fails the split unless the
task's ``skip_unreadable`` is set (:mod:`mobiletasks.data.skips`). BatchNorm layers that a training batch of one
image gives one value per channel use their running statistics (:mod:`mobiletasks.tasks.batchnorm`).

Under several processes (Lightning's DDP) each image of a split is scored by one process and the evaluators gather
their states before computing, so the metrics, ``images`` and the unreadable images counted are those of the whole
split (:mod:`mobiletasks.evaluation.distributed`). A task implements ``training_loss``; ``training_step`` stops on a
non-finite loss, or skips that batch (``nonfinite_loss``), and the global RNGs are seeded per step, so that
``fit --ckpt_path last`` continues as the uninterrupted run would (:mod:`mobiletasks.tasks.safety`).

Validation, test and prediction run :attr:`BaseTask.net`: a copy of the model with its BatchNorm layers folded
into the convolutions (:func:`~mobiletasks.optimize.optimize_for_inference`), made when the loop puts the model in
evaluation mode and dropped when it ends. The trained weights and the checkpoints are those of ``model``; the
outputs are the same up to float rounding.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sized
from pathlib import Path
from typing import Any, Literal, Protocol

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from ..compat import NormBase, attached_trainer
from ..data.base import HasEvaluator, HasSplits, plain_paths
from ..data.samplers import ResumableDataLoader, default_seed
from ..data.skips import SkipLog
from ..evaluation.distributed import gather, total
from ..evaluation.plots import HasFigures, save_figures
from ..factory import create_model
from ..optimize import optimize_for_inference, uses_channels_last
from .batchnorm import guard_single_value_batchnorm
from .pictures import ClassNames, log_images, png_tensor
from .safety import first_nonfinite, nonfinite_message, step_seed

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

    Every task also takes:

    - ``skip_unreadable`` (default False): score validation and test splits without the images that cannot be
      read (a warning says how many) instead of failing at the end of the split;
    - ``nonfinite_loss`` (default ``"stop"``): on a NaN or infinite training loss (on any process), ``"stop"``
      raises ``FloatingPointError`` naming the step, the loss terms and the batch's images; ``"skip"`` drops that
      batch's update (no optimizer step, BatchNorm statistics as before the batch; a warning names it,
      ``train/skipped_batches`` counts them).

    A checkpoint is never written with a non-finite weight (``FloatingPointError`` instead).
    """

    monitor = "val/loss"
    mode: Literal["min", "max"] = "min"
    kind = "task"  # classification, attributes, detection or segmentation: what export and infer produce
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
        if int(self.hparams.get("log_val_images") or 0) < 0:
            raise ValueError(
                f"log_val_images is {self.hparams['log_val_images']}; give the number of validation images to log "
                "with their predictions (0: none)"
            )
        self.optimizer = optimizer
        self.evaluators: dict[str, Evaluator] = {}  # per split, while its epoch runs
        self.scored: dict[str, int] = {}  # images fed to each split's evaluator
        self._skips_before: dict[str, int] = {}  # the split's skip count when its epoch started
        self.seed: int | None = None  # of the per-step RNG draws; saved in checkpoints
        self.skipped_batches = 0  # training batches dropped for a non-finite loss (nonfinite_loss="skip")
        self._nonfinite = False  # the loss of a batch since the last optimizer step was not finite
        self._loader_states: list[dict[str, int]] = []  # of the training loader, from the checkpoint resumed
        self._buffers_before: list[Tensor] = []  # with nonfinite_loss="skip": the buffers before the update
        self._pictures: list[Tensor] = []  # of this validation, uint8 [3, H, W] each (log_val_images)
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
            norm_types = (NormBase, nn.GroupNorm, nn.LayerNorm)
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

    # evaluation runs the BatchNorm-folded copy of the model
    @property
    def net(self) -> nn.Module:
        """The network to run: ``model`` in training mode; outside it, during validation, test and prediction, an
        evaluation copy with BatchNorm folded into the convolutions (not a submodule: not in the state dict, not
        in checkpoints)."""
        folded = self.__dict__.get("_folded")
        return folded if folded is not None and not self.training else self.model

    def _fold(self) -> None:
        # in the model's own memory format: channels_last=False in model_kwargs holds for evaluation too
        self.__dict__["_folded"] = optimize_for_inference(self.model, channels_last=uses_channels_last(self.model))

    def _unfold(self) -> None:
        self.__dict__["_folded"] = None

    def on_validation_model_eval(self) -> None:
        super().on_validation_model_eval()
        self._fold()

    def on_validation_end(self) -> None:
        self._unfold()

    def on_test_model_eval(self) -> None:
        super().on_test_model_eval()
        self._fold()

    def on_test_end(self) -> None:
        self._unfold()

    def on_predict_model_eval(self) -> None:
        super().on_predict_model_eval()
        self._fold()

    # evaluation: the data module's evaluator accumulates over the whole split
    def evaluate_batch(self, evaluator: Evaluator, batch: Any) -> Any:
        """Feed one batch to the evaluator; return the predictions fed (None for an empty batch), which
        ``draw_pictures`` draws."""
        raise NotImplementedError

    def draw_pictures(self, batch: Any, preds: Any, count: int) -> list[Tensor]:
        """Up to ``count`` pictures (uint8 [3, H, W]) of the batch's first images: the ground truth beside the
        predictions ``evaluate_batch`` returned."""
        return []

    def _class_names(self) -> ClassNames:
        """The data module's class names (the index, where it names none)."""
        names = getattr(getattr(self.trainer, "datamodule", None), "class_names", None)
        return ClassNames([str(n) for n in names] if names is not None else [])

    def on_evaluated(self, split: str, evaluator: Evaluator) -> None:
        """Called after a split's metrics are logged (the detection task writes its results file here)."""

    def _start(self, split: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if not isinstance(datamodule, HasEvaluator):
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

    def _gathered_skips(self, split: str, since: int) -> tuple[int, int, str]:
        """Over all processes: the samples of ``split`` skipped since the count was ``since``, all ever skipped,
        and some examples."""
        skip_log = self._skip_log(split)
        count = self._skips(split)
        mine = (count - since, count, skip_log.examples()[:3] if skip_log is not None else [])
        states = gather(mine)
        examples = [e for *_, found in states for e in found]
        return sum(s[0] for s in states), sum(s[1] for s in states), "; ".join(dict.fromkeys(examples[:3]))

    def _unread(self, split: str, done: int) -> tuple[int, str]:
        """Images of ``split`` that could not be read, over all processes, given the ``done`` ones, and examples.

        Over a whole split they are the split's images not done: DataLoader workers may read (and count) samples
        before the epoch's first hook, so a count taken then would miss them. Raises RuntimeError where the
        processes saw more images than the split has, or fewer while none could not be read (a sampler or loader
        of the user's that does not give each image to one process once)."""
        counted, ever, examples = self._gathered_skips(split, self._skips_before.pop(split, 0))
        size = self._split_size(split)
        if size is None:  # part of the split (limit_*_batches, the sanity check): the count since the start
            return counted, examples
        if done > size or (done < size and not ever):
            raise RuntimeError(
                f"{split}: the processes saw {done} images but the split has {size}; the metrics would not be those "
                "of the whole split. A custom sampler or dataloader must give each image to one process once"
            )
        return size - done, examples

    def _end(self, split: str) -> None:
        evaluator = self.evaluators.pop(split)
        scored = total(self.scored[split])
        skipped, examples = self._unread(split, scored)
        if skipped:
            self._report_skipped(split, scored, skipped, examples)
        metrics = {f"{split}/{k}": float(v) for k, v in evaluator.compute().items()}
        # every process holds the same numbers: their max is each (a mean of equal floats is not always equal)
        headline = f"{split}/{self.monitor.partition('/')[2]}"  # the metric of the best checkpoint, on the bar
        rest = {k: v for k, v in metrics.items() if k != headline}
        self.log_dict({**rest, f"{split}/images": float(scored)}, sync_dist=True, reduce_fx="max")
        if headline in metrics:
            self.log(headline, metrics[headline], prog_bar=True, sync_dist=True, reduce_fx="max")
        self._report(split, metrics)
        self.on_evaluated(split, evaluator)
        self._draw(split, evaluator)

    def _report(self, split: str, metrics: dict[str, float]) -> None:
        """One console line of the split's summary metrics (not the per-class ones) after each validation of a fit:
        the progress bar shows only the monitored one, and ``validate``/``test`` print Lightning's own table."""
        if self.trainer.sanity_checking or self.trainer.state.fn != "fit":
            return
        summary = {k: v for k, v in metrics.items() if "/" not in k.partition("/")[2]}
        # through the progress bar (first process only), so that the line does not end up inside the bar
        self.print(
            f"{split} after epoch {self.current_epoch} (step {self.global_step}): "
            + ", ".join(f"{k.partition('/')[2]} {v:.4f}" for k, v in summary.items())
        )

    def _draw(self, split: str, evaluator: Evaluator) -> None:
        """Log the validation pictures, and write the split's figures (PNG and CSV) into the log folder and log
        them as images; on the first process, not in the sanity check, and only where the run has a logger."""
        pictures, self._pictures = self._pictures, []
        trainer = self.trainer
        if trainer.sanity_checking or not self.loggers:
            return
        log_dir = trainer.log_dir  # a collective under DDP (the first process's folder): every process asks
        if not trainer.is_global_zero or log_dir is None:
            return
        if pictures:
            log_images(self.loggers, f"{split}/pictures", pictures, self.global_step)
        if isinstance(evaluator, HasFigures):
            written = save_figures(evaluator, Path(log_dir), split)
            pngs = [path for path in written if path.suffix == ".png"]
            names = [path.stem.removesuffix(f"_{split}") for path in pngs]
            log_images(self.loggers, f"{split}/figures", [png_tensor(p) for p in pngs], self.global_step, names)
            if pngs:
                log.info("%s figures written to %s", split, ", ".join(str(p) for p in pngs))

    def _split_size(self, split: str) -> int | None:
        """The number of images of ``split`` when the run covers all of it (else None: ``limit_*_batches``,
        ``fast_dev_run``, the sanity check, a data module that does not say)."""
        trainer = self.trainer
        limit = getattr(trainer, f"limit_{split}_batches", None)
        datamodule = getattr(trainer, "datamodule", None)
        # the whole split is the float 1.0 (Lightning's default); the int 1 is one batch
        whole = isinstance(limit, float) and limit == 1.0
        if trainer.sanity_checking or getattr(trainer, "fast_dev_run", False) or not whole:
            return None
        if not isinstance(datamodule, HasSplits):
            return None
        dataset = datamodule.dataset(split)
        return len(dataset) if isinstance(dataset, Sized) else None

    def _report_skipped(self, split: str, scored: int, skipped: int, examples: str) -> None:
        """A shortfall of scored images is an error unless the user opted into ``skip_unreadable``."""
        total = scored + skipped
        if self.hparams.get("skip_unreadable"):
            self._warn(
                f"{split}: scored {scored} of {total} images; {skipped} could not be read and are left out of the "
                f"metrics (skip_unreadable), e.g. {examples}"
            )
            return
        raise ValueError(
            f"{split}: {skipped} of {total} images could not be read, so the {split} metrics would not be those of "
            f"the whole split (e.g. {examples}). Fix or remove these files (`mobiletasks data check --config ...` "
            "lists every one), or set model.init_args.skip_unreadable=true to score the readable images"
        )

    def _warn(self, message: str) -> None:
        """A warning of the whole run, logged once (by the first process)."""
        if self.trainer.is_global_zero:
            log.warning(message)

    def _evaluate(self, split: str, batch: Any) -> None:
        self.scored[split] += len(batch[0])  # every task's batch starts with its images
        preds = self.evaluate_batch(self.evaluators[split], batch)
        wanted = int(self.hparams.get("log_val_images") or 0) - len(self._pictures)
        drawing = split == "val" and not self.trainer.sanity_checking and self.trainer.is_global_zero
        if drawing and wanted > 0 and preds is not None and self.loggers:
            self._pictures += self.draw_pictures(batch, preds, wanted)[:wanted]

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

    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.scored["predict"] = self.scored.get("predict", 0) + len(batch[0])

    def on_predict_end(self) -> None:
        self._unfold()
        skipped, examples = self._unread("predict", total(self.scored.pop("predict", 0)))
        if skipped:
            self._warn(f"{skipped} images could not be read and have no prediction, e.g. {examples}")

    # training: one loss per task; non-finite losses, per-step seeds and sound checkpoints here
    def training_loss(self, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss to minimize and its terms to log (``{}`` when it has none) for one training batch."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        size = len(batch[0])  # every task's batch starts with its images
        if not size:  # the training loader replaces unreadable samples, so a batch is never empty
            raise RuntimeError(f"training batch {batch_idx} holds no image; train with a mobiletasks data module")
        if self.hparams.get("nonfinite_loss") == "skip" and not self._nonfinite:
            # the BatchNorm statistics before the update's batches: a non-finite batch may put NaN in them
            self._buffers_before = [b.detach().clone() for b in self.buffers()]
        loss, terms = self.training_loss(batch)
        if not self._finite(loss, terms, batch, batch_idx):
            return loss  # its gradients and statistics are dropped in optimizer_step
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=size)
        self.log("train/loss", loss, batch_size=size, prog_bar=True)
        if self.trainer.optimizers:  # the schedule's learning rate (every parameter group has the same)
            self.log("train/lr", float(self.trainer.optimizers[0].param_groups[0]["lr"]), batch_size=size)
        return loss

    def _finite(self, loss: Tensor, terms: dict[str, Tensor], batch: Any, batch_idx: int) -> bool:
        """Whether the loss is finite on every process; else stop or mark the step skipped (``nonfinite_loss``)."""
        here = not bool(torch.isfinite(loss.detach()))
        anywhere = here
        if self.trainer.world_size > 1:  # every process must take the same decision, or DDP hangs
            flag = torch.tensor(float(here), device=loss.device)
            anywhere = bool(self.trainer.strategy.reduce(flag, reduce_op="sum") > 0)
        if not anywhere:
            return True
        message = nonfinite_message(loss, terms, batch, self.current_epoch, self.global_step, batch_idx, here)
        if self.hparams.get("nonfinite_loss", "stop") != "skip":
            raise FloatingPointError(
                f"{message}. Lower the learning rate or add warm-up (warmup_steps), check these images' annotations "
                "(`mobiletasks data check`), or set model.init_args.nonfinite_loss=skip to drop such batches"
            )
        self._nonfinite = True
        self.skipped_batches += 1
        log.warning("%s: batch skipped (nonfinite_loss=skip), %d so far", message, self.skipped_batches)
        self.log("train/skipped_batches", float(self.skipped_batches), reduce_fx="max")
        return False

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Lightning's step, except after a non-finite loss: its gradients are dropped and no parameter moves."""
        if optimizer_closure is None:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        loss = optimizer_closure()  # training_step and backward, as optimizer.step would run them
        if self._nonfinite:
            self._nonfinite = False
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():  # after backward: autograd keeps the statistics the forward updated
                for buffer, saved in zip(self.buffers(), self._buffers_before, strict=True):
                    buffer.copy_(saved)
            return None
        return super().optimizer_step(epoch, batch_idx, optimizer, lambda: loss)

    def on_fit_start(self) -> None:
        if self.seed is None:
            self.seed = default_seed()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Seed the global RNGs (dropout, ...) from the run's seed and this step, the same after a resume."""
        assert self.seed is not None
        torch.manual_seed(step_seed(self.seed, self.current_epoch, batch_idx, self.global_rank))

    def on_train_epoch_start(self) -> None:
        self._skips_before["train"] = self._skips("train")

    def on_train_epoch_end(self) -> None:
        replaced, _, examples = self._gathered_skips("train", self._skips_before.pop("train", 0))
        if replaced:
            self._warn(
                f"train: {replaced} samples could not be read this epoch and were replaced by the next readable one, "
                f"e.g. {examples}. `mobiletasks data check --config ...` lists every bad file"
            )
        self.log("train/replaced_samples", float(replaced), sync_dist=True, reduce_fx="max")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        bad = first_nonfinite(checkpoint.get("state_dict", {}))
        if bad is not None:
            raise FloatingPointError(
                f"not saving a checkpoint at epoch {self.current_epoch}, step {self.global_step}: weight {bad} holds "
                "NaN or infinity; the previous checkpoints are kept. Lower the learning rate or add warm-up"
            )
        checkpoint["seed"] = self.seed
        checkpoint["mobiletasks"] = self.deploy_record()

    def deploy_record(self) -> dict[str, Any]:
        """What ``mobiletasks export`` and ``infer`` need beyond the weights, saved in every checkpoint as
        ``checkpoint["mobiletasks"]``: the task class and ``kind``, and from the data module (when there is one)
        the class names, COCO category ids, image size and a classifier's ``crop_fraction``."""
        cls = type(self)
        record: dict[str, Any] = {"task_class": f"{cls.__module__}.{cls.__qualname__}", "kind": self.kind}
        trainer = attached_trainer(self)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        for key in ("class_names", "category_ids", "image_size", "crop_fraction"):
            try:
                value = getattr(datamodule, key, None)
            except (OSError, ValueError, NotImplementedError):  # a data module that cannot say
                value = None
            if value is not None:
                record[key] = list(value) if isinstance(value, list | tuple) else value
        return record

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint.get("seed") is not None:
            self.seed = int(checkpoint["seed"])
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        self._loader_states = fit_loop.get("state_dict", {}).get("combined_loader", [])

    def on_train_start(self) -> None:
        """Put the training loader where the checkpoint left it. Lightning does so itself only when it did not
        build the loader before restoring the checkpoint, which ``estimated_stepping_batches`` (the schedule) does;
        the loader reads its sampler at the first batch, which comes after this hook."""
        states, self._loader_states = getattr(self, "_loader_states", []), []
        loaders = self.trainer.train_dataloader
        loaders = loaders if isinstance(loaders, list | tuple) else [loaders]
        resumable = [loader for loader in loaders if isinstance(loader, ResumableDataLoader)]
        if states and len(states) == len(resumable):
            for loader, state in zip(resumable, states, strict=True):
                loader.load_state_dict(state)
