"""Training with a batch of one image: BatchNorm layers that see one value per channel use their running statistics.

In training mode BatchNorm normalizes with the statistics of the batch, which do not exist for a single value
per channel (one image on a 1x1 map: SSD's last extra layer, DeepLab's image-pooling branch, a classifier at a
small input); PyTorch then raises ``Expected more than 1 value per channel when training``. A split whose size
leaves a remainder of one, or a batch size of one, would end the run there. :func:`guard_single_value_batchnorm`
makes such a layer, for that call only, normalize as in evaluation (with its running statistics, which it
then does not update), and counts it. Every other layer, and every other batch, trains as before.
SyncBatchNorm (which pools the values of all processes) is left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor, nn

log = logging.getLogger(__name__)


class SingleValueGuard:
    """The hooks of :func:`guard_single_value_batchnorm`; ``count`` says how many layer calls they changed."""

    def __init__(self) -> None:
        self.count = 0
        self._active: set[int] = set()  # layers switched to evaluation for the current call

    def before(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        if module.training and isinstance(x, Tensor) and x.ndim >= 2 and x.numel() == x.shape[1]:
            if self.count == 0:
                log.warning(
                    "a training batch gave BatchNorm one value per channel (a batch of one image on a 1x1 map): "
                    "such layers normalize with their running statistics for that batch"
                )
            self.count += 1
            self._active.add(id(module))
            module.training = False

    def after(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if id(module) in self._active:
            self._active.discard(id(module))
            module.training = True


def guard_single_value_batchnorm(model: nn.Module) -> SingleValueGuard:
    """Hook every BatchNorm layer of ``model`` as the module doc says; returns the guard. SyncBatchNorm and
    layers without running statistics are left alone.

    Example:
        >>> import torch
        >>> head = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
        >>> guard = guard_single_value_batchnorm(head)
        >>> head(torch.rand(1, 3, 1, 1)).shape, guard.count, head[1].training
        (torch.Size([1, 4, 1, 1]), 1, True)
    """
    guard = SingleValueGuard()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d) and module.track_running_stats:
            module.register_forward_pre_hook(guard.before)
            module.register_forward_hook(guard.after)
    return guard
