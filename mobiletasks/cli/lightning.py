"""``mobiletasks fit|validate|test|predict``: LightningCLI in subclass mode.

YAML configs name the task and the data module by import path; the data module's ``num_classes`` and
``image_size`` are linked to the task's, so a config never states them twice. A ``--ckpt_path`` is read
before anything runs, so a missing or broken checkpoint is named at once, not after data set-up.

Example:
    mobiletasks fit --config configs/detection/quickstart.yaml --trainer.max_epochs 2
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

# ckpt_path values Lightning resolves itself
_SPECIAL_CHECKPOINTS = ("best", "last", "hpc", "registry")


def check_checkpoint(path: str | Path) -> None:
    """Raise a clear error unless ``path`` is a Lightning checkpoint that loads with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; pass --ckpt_path the .ckpt file of a run "
            "(its checkpoints/ folder holds last.ckpt and the best one)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(
            f"checkpoint {path} cannot be read: it is truncated, corrupt or not a checkpoint saved by mobiletasks "
            f"({type(err).__name__}: {reason}). Pass another one, e.g. the run's last.ckpt"
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(
            f"checkpoint {path} holds no 'state_dict': it is not a Lightning checkpoint. For weights of a bare "
            "model use the task's `pretrained` argument instead of --ckpt_path"
        )


class MobileTasksCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.image_size", "model.init_args.image_size", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads the checkpoint's hyperparameters here, first of all: check the file before
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path is not None and str(path) not in _SPECIAL_CHECKPOINTS:
            check_checkpoint(path)
        super()._parse_ckpt_path()


def main(argv: list[str]) -> int:
    """Run a LightningCLI sub-command; ``argv`` starts with the sub-command (``fit``, ``validate``, ...)."""
    MobileTasksCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        args=argv,
    )
    return 0
