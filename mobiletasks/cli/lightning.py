"""``mobiletasks fit|validate|test|predict``: LightningCLI in subclass mode.

YAML configs name the task and the data module by import path; the data module's ``num_classes`` and
``image_size`` are linked to the task's, so a config never states them twice.

Example:
    mobiletasks fit --config configs/detection/quickstart.yaml --trainer.max_epochs 2
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI


class MobileTasksCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.image_size", "model.init_args.image_size", apply_on="instantiate")


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
