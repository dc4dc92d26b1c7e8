"""``mobiletasks fit|validate|test|predict``: LightningCLI in subclass mode.

YAML configs name the task and the data module by import path; the data module's ``num_classes`` and
``image_size`` are linked to the task's, so a config never states them twice. A ``--ckpt_path`` is read
before anything runs, so a missing or broken checkpoint is named at once, not after data set-up; its task
settings fill in what the config and the arguments do not state (see :class:`MobileTasksCLI`). Checkpoints: the
task's :class:`~mobiletasks.tasks.TaskCheckpoint` unless the config has a ``ModelCheckpoint`` of its own, saved
with :class:`~mobiletasks.tasks.AtomicCheckpointIO` unless it names a ``CheckpointIO``.

Example:
    mobiletasks fit --config configs/detection/quickstart.yaml --trainer.max_epochs 2
"""

from __future__ import annotations

import json
from typing import Any

import lightning as L
from lightning.pytorch.accelerators import XLAAccelerator
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins import CheckpointIO
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.utilities import rank_zero_info

from ..compat import CLI_INSTANTIATE_TRAINER, CLI_PARSE_CKPT_PATH, configured_checkpoint_io, overrides_private
from ..tasks.checkpoint import AtomicCheckpointIO, MonitoredTask, TaskCheckpoint, check_checkpoint, checkpoint_model
from ..weights import optional_key

# the task settings that decide the model's weights (``BaseTask.configure_models``)
_ARCHITECTURE = ("model", "num_classes", "model_kwargs", "pretrained_backbone", "loss")
# ckpt_path values Lightning resolves itself
_SPECIAL_CHECKPOINTS = ("best", "last", "hpc", "registry")


def as_list(value: Any) -> list[Any]:
    """A trainer argument that takes one object or a list of them (``callbacks``, ``plugins``), as a list."""
    return [] if value is None else list(value) if isinstance(value, list | tuple) else [value]


def default_checkpoint(model: L.LightningModule, config: dict[str, Any], callbacks: list[Callback]) -> list[Callback]:
    """``[TaskCheckpoint]`` with the task's metric, or ``[]`` where the trainer's settings ``config`` or the
    ``callbacks`` have a ``ModelCheckpoint`` already (the user's, kept as configured), checkpointing is off, or
    the model names no metric (any LightningModule: Lightning's default checkpoint)."""
    callbacks = [*as_list(config.get("callbacks")), *callbacks]
    if config.get("enable_checkpointing") is False or not isinstance(model, MonitoredTask):
        return []
    if any(isinstance(c, ModelCheckpoint) for c in callbacks):
        return []
    return [TaskCheckpoint(monitor=model.monitor, mode=model.mode)]


def atomic_plugins(config: dict[str, Any]) -> Any:
    """The trainer's ``plugins`` with :class:`AtomicCheckpointIO` added, unless they or the strategy have a
    ``CheckpointIO`` already (Lightning refuses both), or the machine has TPUs (whose strategy takes its own
    ``XLACheckpointIO`` only)."""
    plugins = config.get("plugins")
    strategy = config.get("strategy")
    # Lightning's own check of a configured strategy object (lightning 2.6, trainer/connectors/accelerator_connector)
    strategy_io = isinstance(strategy, Strategy) and configured_checkpoint_io(strategy) is not None
    if strategy_io or any(isinstance(p, CheckpointIO) for p in as_list(plugins)) or XLAAccelerator.is_available():
        return plugins
    return [*as_list(plugins), AtomicCheckpointIO()]


@overrides_private(CLI_PARSE_CKPT_PATH, CLI_INSTANTIATE_TRAINER)  # LightningCLI's private hooks: mobiletasks.compat
class MobileTasksCLI(LightningCLI):
    """LightningCLI where ``--ckpt_path`` fills in the task's settings *under* what the user states.

    Lightning's own CLI puts the checkpoint's hyperparameters over the parsed config, so
    ``predict --ckpt_path last.ckpt --model.init_args.score_thresh 0.5`` would still run with the threshold the
    run was trained with. Here the checkpoint's task settings come first and the config files and arguments are
    parsed over them: the checkpoint fills in only what the user did not state. Settings that would build a
    model the weights do not fit (another backbone, ``width_mult``, ``num_classes``) are refused before anything
    runs, naming the setting and both values.

    The trainer gets the task's :class:`~mobiletasks.tasks.TaskCheckpoint` where the config has no
    ``ModelCheckpoint`` (a configured one is kept exactly as written) and checkpointing is on, and saves through
    :class:`~mobiletasks.tasks.AtomicCheckpointIO` where no ``CheckpointIO`` is configured.
    """

    checkpoint: dict[str, Any] | None = None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.image_size", "model.init_args.image_size", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        if isinstance(args, list | tuple):  # the mobiletasks command passes its own argv: parse it as given
            self.args = list(args)
            self.config = parser.parse_args(self.args)
        else:
            super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        # LightningCLI's private hook (compat.CLI_PARSE_CKPT_PATH): the checkpoint's settings under the user's
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path is None or str(path) in _SPECIAL_CHECKPOINTS:
            return
        self.checkpoint = check_checkpoint(path)
        stated = self.config[subcommand].get("model")
        model = checkpoint_model(self.checkpoint, getattr(stated, "class_path", None))
        args = getattr(self, "args", None)
        if model is None or args is None or subcommand not in args:
            super()._parse_ckpt_path()
            return
        # the checkpoint's settings right after the sub-command, so that --config and every argument override them
        at = args.index(subcommand) + 1
        self.config = self.parser.parse_args([*args[:at], "--model", json.dumps(model), *args[at:]])

    def check_weights_fit(self) -> None:
        """Refuse a checkpoint whose weights do not fit the model this run built, naming the settings that differ."""
        if self.checkpoint is None:
            return
        saved: dict[str, Any] = self.checkpoint["state_dict"]
        own = self.model.state_dict()
        shapes = [k for k in own if k in saved and tuple(saved[k].shape) != tuple(own[k].shape)]
        missing = [k for k in own if k not in saved and not optional_key(k)]
        extra = [k for k in saved if k not in own]
        hparams = {k: v for k, v in (self.checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")}
        ours = dict(getattr(self.model, "hparams", {}))
        differ = [f"{k}={ours[k]!r} (the checkpoint: {v!r})" for k, v in hparams.items() if k in ours and ours[k] != v]
        if differ:
            rank_zero_info("settings that differ from the checkpoint's: " + ", ".join(differ))
        if not (shapes or missing or extra):
            return
        path = self.config[self.config["subcommand"]]["ckpt_path"]
        found = [f"{len(shapes)} weights of another shape, e.g. {shapes[0]}"] if shapes else []
        found += [f"{len(missing)} weights missing, e.g. {missing[0]}"] if missing else []
        found += [f"{len(extra)} weights the model lacks, e.g. {extra[0]}"] if extra else []
        # the settings that shape the weights, where they are among those that differ
        shaping = [d for d in differ if d.split("=")[0] in _ARCHITECTURE] or differ
        saved_class = (self.checkpoint.get("hyper_parameters") or {}).get("_class_path")
        this_class = f"{type(self.model).__module__}.{type(self.model).__name__}"
        reason = (
            f"it was saved from {saved_class}, this run builds {this_class}"
            if saved_class and not this_class.endswith(saved_class.rpartition(".")[2])
            else "this run sets " + (", ".join(shaping) if shaping else "other settings")
        )
        raise ValueError(
            f"checkpoint {path} does not fit the model this run builds ({'; '.join(found)}): {reason}. "
            "Leave those settings out (the checkpoint's are used), set them back in the config or on the command "
            "line (num_classes and image_size come from the data module), or pass a checkpoint trained with them"
        )

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> L.Trainer:
        # LightningCLI's private hook (compat.CLI_INSTANTIATE_TRAINER) with the trainer's settings and the callbacks
        # of the CLI's own arguments; self.model is built before it (LightningCLI.instantiate_classes)
        defaults = as_list(self.trainer_defaults.get("callbacks"))
        callbacks = [*callbacks, *default_checkpoint(self.model, config, [*callbacks, *defaults])]
        config["plugins"] = atomic_plugins(config)  # trainer_defaults' plugins are among config's already
        return super()._instantiate_trainer(config, callbacks)

    def before_fit(self) -> None:
        self.check_weights_fit()

    def before_validate(self) -> None:
        self.check_weights_fit()

    def before_test(self) -> None:
        self.check_weights_fit()

    def before_predict(self) -> None:
        self.check_weights_fit()


def build_cli(argv: list[str], run: bool = True) -> MobileTasksCLI:
    """The CLI of ``argv``; ``run=False``: only the task, data module and trainer of a config, nothing run."""
    return MobileTasksCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        args=argv,
        run=run,
    )


def main(argv: list[str]) -> int:
    """Run a LightningCLI sub-command; ``argv`` starts with the sub-command (``fit``, ``validate``, ...)."""
    build_cli(argv)
    return 0
