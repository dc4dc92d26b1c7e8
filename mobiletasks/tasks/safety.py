"""What keeps a long training run sound: non-finite losses caught with the batch that caused them, checkpoints
that never hold a non-finite model, and random draws (dropout, ...) that depend on the step alone, so a resumed
run draws what an uninterrupted one would (:class:`~mobiletasks.tasks.base.BaseTask` uses these).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

NonFinitePolicy = Literal["stop", "skip"]


def batch_files(batch: Any) -> list[str]:
    """The file names of a batch's images, as the collate functions give them: a list of target dicts with
    ``file_name`` (detection, segmentation) or one dict with a ``file_name`` list (classification)."""
    targets = batch[1] if isinstance(batch, tuple | list) and len(batch) > 1 else None
    if isinstance(targets, Mapping):
        return [str(f) for f in targets.get("file_name", [])]
    if isinstance(targets, list | tuple):
        return [str(t["file_name"]) for t in targets if isinstance(t, Mapping) and "file_name" in t]
    return []


def nonfinite_message(
    loss: Tensor, terms: Mapping[str, Tensor], batch: Any, epoch: int, step: int, batch_idx: int, here: bool
) -> str:
    """One line naming the step, the loss and its terms, and the batch's images (``here``: this process's loss is
    the non-finite one; else another process's is)."""
    where = f"epoch {epoch}, step {step} (batch {batch_idx} of the epoch)"
    if not here:
        return f"non-finite training loss on another process at {where}"
    values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
    files = batch_files(batch)
    shown = ", ".join(files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
    return (
        f"non-finite training loss {float(loss.detach())} at {where}"
        + (f"; terms: {values}" if values else "")
        + (f"; images: {shown}" if shown else "")
    )


def first_nonfinite(state_dict: Mapping[str, Any]) -> str | None:
    """The name of the first floating-point tensor of ``state_dict`` holding NaN or infinity, else None."""
    for name, value in state_dict.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def step_seed(seed: int, epoch: int, batch_idx: int, rank: int) -> int:
    """A seed for the global RNGs of one training step of one process, from the run's seed and the step alone."""
    return (((seed * 1_000_003 + epoch) * 1_000_033 + batch_idx) * 1_009 + rank) % 2**63
