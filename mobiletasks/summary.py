"""Parameters and multiply-accumulates of a model, counted by ``torch.utils.flop_counter``."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .compat import NormBase

_NORMS = (NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class ModelSummary:
    """``params``: every learnable parameter (as torchvision and timm count); ``params_no_norm``: without
    the normalization layers' scale and shift, as the papers and TF-slim count (MobileNetV2 1.0:
    3.47M against torchvision's 3.50M); ``macs``: multiply-accumulates (one MAC = one multiply-add, the
    papers' MAdds) of one forward pass of a single image of ``input_size``."""

    params: int
    params_no_norm: int
    trainable_params: int
    macs: int
    input_size: tuple[int, int]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def resized_to(model: nn.Module) -> tuple[int, int] | None:
    """(H, W) that a model resizes every input to before its network (torchvision's detection transform with a
    ``fixed_size``, as the SSD detectors have), or None when the network sees the input as it is."""
    fixed = getattr(getattr(model, "transform", None), "fixed_size", None)
    return (int(fixed[0]), int(fixed[1])) if fixed is not None else None


def model_summary(model: nn.Module, input_size: int | tuple[int, int] = 224) -> ModelSummary:
    """Count ``model``'s parameters and its MACs for one ``3 x H x W`` image in eval mode.

    Raises:
        ValueError: a bad ``input_size``, or a model that resizes its input to another size (a detector built
            for 320 counted at 640): the count would not be that of ``input_size``.

    Example:
        >>> from mobiletasks import create_model
        >>> s = model_summary(create_model("mobilenet_v2"), 224)
        >>> round(s.params / 1e6, 2), round(s.macs / 1e6)
        (3.5, 301)
    """
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"input_size must be N or (H, W) with positive sides, got {input_size!r}")
    fixed = resized_to(model)
    if fixed is not None and fixed != size:
        raise ValueError(
            f"{type(model).__name__} resizes every image to {fixed[1]}x{fixed[0]} (its size), so its MACs at "
            f"{size[1]}x{size[0]} would be those of {fixed[1]}x{fixed[0]}: build it for that input "
            f"(create_model(..., size={size[0]})) or count at {fixed[0]}"
        )
    params = list(model.parameters())
    norm = {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)}
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, 3, *size))
    finally:
        model.train(was_training)
    return ModelSummary(
        params=sum(p.numel() for p in params),
        params_no_norm=sum(p.numel() for p in params if id(p) not in norm),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        macs=counter.get_total_flops() // 2,
        input_size=(int(size[0]), int(size[1])),
    )
