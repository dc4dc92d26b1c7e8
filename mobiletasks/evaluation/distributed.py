"""Evaluator states gathered across the processes of a ``torch.distributed`` run (Lightning's DDP).

Every evaluator of the package accumulates what its own process scored; ``compute()`` first gathers the states
of all processes (when ``torch.distributed`` is initialized with more than one process), so each process
computes the metric of the whole split. Every process must therefore call ``compute()``, as with torchmetrics.
States travel as pickled CPU objects (``all_gather_object``), which works with any backend (gloo, NCCL) and
states of different sizes per process.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


def world_size() -> int:
    """The number of processes of the initialized default group (1 without ``torch.distributed``)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather(obj: T, group: Any = None) -> list[T]:
    """``obj`` of every process, in rank order (``[obj]`` in one process). Tensors in ``obj`` should be on the CPU."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, obj, group=group)
    return out


def gather_tensors(tensor: Tensor, group: Any = None) -> list[Tensor]:
    """A torchmetrics ``dist_sync_fn``: ``tensor`` of every process, on ``tensor``'s device. Unlike torchmetrics'
    default it takes CPU states under NCCL and tensors of any shape."""
    return [t.to(tensor.device) for t in gather(tensor.detach().cpu(), group)]


def total(value: int | Tensor) -> Any:
    """The sum over the processes of a count (an int or a CPU tensor)."""
    if isinstance(value, Tensor):
        return torch.stack(gather(value)).sum(0)
    return sum(gather(value))
