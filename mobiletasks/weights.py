"""Pretrained weights from a local file or the torch hub cache; nothing is ever downloaded.

Files are read with ``torch.load(..., weights_only=True)`` (or safetensors). What a model states about its weights
is the model contract of :mod:`mobiletasks.contracts`: ``convert_state_dict`` to accept other layouts (MobileNetV1
takes timm's keys), ``hub_files``, glob patterns of the files ``pretrained=True`` looks for in
``torch.hub.get_dir()``, ``class_head_prefix`` and ``features_only``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from mobiletasks.common import PathLike
from mobiletasks.contracts import ConvertsStateDict, HasClassHead, HasFeaturesOnly, HasHubFiles

_CONTAINERS = ("state_dict", "model", "module", "state_dict_ema")
_SHOW = 8  # keys named in an error


def read_state_dict(path: PathLike) -> dict[str, Tensor]:
    """A flat ``{key: tensor}`` dict from a .pth/.pt/.bin/.safetensors file or a Lightning checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path} does not exist; pass the path of a state dict saved with torch.save"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"cannot read weights file {path}: {type(err).__name__}: {str(err).strip().splitlines()[0]}. "
            "It must be a state dict saved "
            "with torch.save(model.state_dict(), path) (tensors only; pickled objects are refused) "
            "or a Lightning checkpoint"
        ) from err
    for key in _CONTAINERS:  # unwrap {"state_dict": ...} and the like
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"weights file {path} holds a {type(obj).__name__}, not a state dict of tensors")
    return dict(obj)


def find_hub_file(patterns: tuple[str, ...], name: str) -> Path:
    """The newest file in ``<torch hub dir>/checkpoints`` matching one of ``patterns``."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted((p for pattern in patterns for p in folder.glob(pattern)), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(
            f"pretrained=True for {name!r} looks for {' or '.join(patterns)} in {folder} and found none; "
            "mobiletasks never downloads: copy the file there, or pass pretrained='path/to/weights.pth'"
        )
    return found[-1]


def load_pretrained(model: nn.Module, pretrained: bool | PathLike | None, name: str = "") -> nn.Module:
    """Load ``pretrained`` (a path, or True for the hub cache) into ``model`` and return it.

    A file may lack BatchNorm's ``num_batches_tracked`` buffers, as PyTorch's strict loading allows. A model
    whose number of classes differs from the file's keeps its fresh class head (with a warning), as
    fine-tuning wants: ``classifier.`` for classifiers, the model's ``class_head_prefix`` otherwise
    (:class:`~mobiletasks.contracts.HasClassHead`). Feature extractors (``features_only``) ignore the keys of layers
    they do not build.

    Raises:
        ValueError: ``pretrained=True`` for a model without ``hub_files``, an unreadable file, or a file that does not
            fit (naming the file and the keys).
        FileNotFoundError: no such file, or no file matching ``hub_files`` in the hub cache.
    """
    if pretrained is None or pretrained is False:
        return model
    if pretrained is True:
        patterns = model.hub_files if isinstance(model, HasHubFiles) else ()
        if not patterns:
            raise ValueError(f"{name or type(model).__name__} has no known hub weights; pass a file path")
        path = find_hub_file(patterns, name or type(model).__name__)
    else:
        path = Path(pretrained)
    state = read_state_dict(path)
    if isinstance(model, ConvertsStateDict):
        state = model.convert_state_dict(state)
    own = model.state_dict()
    state = _strip_prefix(state, own)
    missing = [k for k in own if k not in state and not optional_key(k)]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    # the layers whose shape follows num_classes: "classifier." unless the model names its own
    head = model.class_head_prefix if isinstance(model, HasClassHead) else "classifier."
    fresh = [k for k in missing + wrong if k.startswith(head)]
    if fresh and not [k for k in missing if not k.startswith(head)]:
        warnings.warn(f"{path}: class head weights not loaded ({_keys(fresh)}): shapes differ", stacklevel=2)
        missing = [k for k in missing if k not in fresh]
        wrong = [k for k in wrong if k not in fresh]
        unexpected = [k for k in unexpected if not k.startswith(head)]
    if isinstance(model, HasFeaturesOnly) and model.features_only:
        unexpected = []
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys ({_keys(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_keys(unexpected)})")
    if wrong:
        shapes = ", ".join(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:_SHOW])
        problems.append(f"{len(wrong)} shape mismatches ({shapes})")
    if problems:
        raise ValueError(
            f"weights file {path} does not fit {name or type(model).__name__}: {'; '.join(problems)}. "
            "Check that the file is for this architecture and these arguments (width_mult, num_classes)"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in fresh}, strict=False)
    return model


def optional_key(key: str) -> bool:
    """Keys a state dict may lack: BatchNorm's ``num_batches_tracked``, which converters from TF or Caffe and
    PyTorch before 0.4.1 do not write, and which PyTorch's own strict ``load_state_dict`` fills in."""
    return key.rpartition(".")[2] == "num_batches_tracked"


def _strip_prefix(state: dict[str, Tensor], own: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keys under a prefix (a Lightning task's ``model.``, DataParallel's ``module.``, a detector's
    ``model.backbone.``) lose it when the model's own first key appears only below it."""
    first = next(iter(own), None)
    if first is None or first in state:
        return state
    prefix = next((k[: -len(first)] for k in state if k.endswith("." + first)), None)
    if prefix is None:
        return state
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _keys(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOW]) + (", ..." if len(keys) > _SHOW else "")
