"""Every private API of another library that mobiletasks uses, in one place, each with the version it was written for.

A library may rename or change its private names in any release. Each use is a :class:`PrivateAPI` record: the
library, the version it was written for, the private name and what mobiletasks does with it. ``tests/test_compat.py``
checks every record against the installed libraries (presence, signature, and behaviour where it matters), so an
upgrade that breaks one fails there, naming the library, its installed version and the name. The rest of the
package uses the names below, never the private ones:

- :func:`make_divisible`: torchvision's channel rounding of the MobileNets;
- ``BatchNormBase``, ``NormBase``: torch's base classes of the BatchNorm (and InstanceNorm) layers;
- :func:`configured_checkpoint_io`: the ``CheckpointIO`` a Lightning strategy was configured with;
- :func:`attached_trainer`: a LightningModule's trainer, or None;
- :func:`overrides_private`: a class decorator for a subclass that overrides a library's private methods. It checks
  when the class is created that its base still has them: an override of a renamed method would never run, silently.

This module imports only torch at import time; the other libraries are imported when a record is resolved.

Example:
    >>> make_divisible(32 * 0.75, 8), make_divisible(1280 * 1.4, 8)
    (24, 1792)
    >>> MAKE_DIVISIBLE.qualified_name
    'torchvision.models._utils._make_divisible'
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from torch import nn

if TYPE_CHECKING:
    import lightning as L
    from lightning.fabric.plugins import CheckpointIO

__all__ = [
    "PRIVATE_APIS",
    "BatchNormBase",
    "NormBase",
    "PrivateAPI",
    "PrivateAPIError",
    "attached_trainer",
    "configured_checkpoint_io",
    "make_divisible",
    "overrides_private",
]

Kind = Literal["function", "class", "method", "attribute"]
C = TypeVar("C", bound=type)


class PrivateAPIError(RuntimeError):
    """A library no longer has (or changed) a private API that mobiletasks uses; the message names the library, its
    installed version, the private name and the version mobiletasks was written for."""


@dataclass(frozen=True)
class PrivateAPI:
    """One private name of another library that mobiletasks relies on.

    Attributes:
        library: the distribution, as ``importlib.metadata`` names it (``torchvision``, ``lightning``).
        written_for: the version of ``library`` this use was written and tested against.
        owner: the module (``torchvision.models._utils``) or ``module:Class`` (``lightning.pytorch.cli:LightningCLI``)
            that holds the name.
        name: the private name in ``owner``.
        kind: ``function`` or ``class`` (used as they are), ``method`` (overridden or called by a subclass),
            ``attribute`` (set on instances by ``__init__``: only an instance has it, see :meth:`read`).
        use: what mobiletasks does with it, and where.
        parameters: a callable's parameter names as ``written_for`` has them (None: not checked).
    """

    library: str
    written_for: str
    owner: str
    name: str
    kind: Kind
    use: str
    parameters: tuple[str, ...] | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.owner.replace(':', '.')}.{self.name}"

    def installed_version(self) -> str:
        try:
            return importlib.metadata.version(self.library)
        except importlib.metadata.PackageNotFoundError:
            return "(not installed)"

    def error(self, problem: str) -> PrivateAPIError:
        """The error for ``problem`` (e.g. ``"has no such name"``), naming library, versions, name and use."""
        return PrivateAPIError(
            f"{self.library} {self.installed_version()}: private {self.kind} {self.qualified_name} {problem}. "
            f"mobiletasks was written for {self.library} {self.written_for}, where it {self.use}; adapt "
            "mobiletasks/compat.py (and its user) to this version, or install that one"
        )

    def owner_object(self) -> Any:
        """The module or class named by ``owner``.

        Raises:
            PrivateAPIError: the module or class is gone.
        """
        module_name, _, class_path = self.owner.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in filter(None, class_path.split(".")):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as err:
            raise self.error(f"cannot be looked up: {self.owner.replace(':', '.')} is gone ({err})") from err
        return obj

    def resolve(self) -> Any:
        """The function, class or (unbound) method; an ``attribute`` record has none: use :meth:`read`.

        Raises:
            PrivateAPIError: the name is gone.
        """
        if self.kind == "attribute":
            raise TypeError(f"{self.qualified_name} is an instance attribute: read it from an instance with read()")
        owner = self.owner_object()
        try:
            return inspect.getattr_static(owner, self.name)
        except AttributeError as err:
            raise self.error("does not exist (renamed or removed)") from err

    def read(self, instance: object) -> Any:
        """The ``attribute`` of ``instance``.

        Raises:
            PrivateAPIError: ``instance`` has no such attribute.
        """
        try:
            return getattr(instance, self.name)
        except AttributeError as err:
            raise self.error(f"is not set on this {type(instance).__name__} (renamed or removed)") from err

    def check(self) -> None:
        """Resolve the name and compare its parameters with ``parameters`` (``attribute`` records: the owner only).

        Raises:
            PrivateAPIError: the name is gone or its parameters differ.
        """
        if self.kind == "attribute":
            self.owner_object()
            return
        found = self.resolve()
        if self.parameters is None:
            return
        function = found.__func__ if isinstance(found, staticmethod | classmethod) else found
        names = tuple(inspect.signature(function).parameters)
        if names != self.parameters:
            raise self.error(f"takes {names}, not {self.parameters}")


_TORCH, _TORCHVISION, _LIGHTNING = "2.14", "0.29", "2.6"
_BOXES = "torchvision.models.detection.anchor_utils:DefaultBoxGenerator"
_CHECKPOINT = "lightning.pytorch.callbacks:ModelCheckpoint"

MAKE_DIVISIBLE = PrivateAPI(
    "torchvision",
    _TORCHVISION,
    "torchvision.models._utils",
    "_make_divisible",
    "function",
    "rounds the MobileNets' channels to a multiple of 8, never more than 10% down, as TF-slim (backbones/)",
    ("v", "divisor", "min_value"),
)
BATCH_NORM = PrivateAPI(
    "torch",
    _TORCH,
    "torch.nn.modules.batchnorm",
    "_BatchNorm",
    "class",
    "is the base of BatchNorm1d/2d/3d and SyncBatchNorm, whose statistics freeze_bn fixes (backbones/base.py)",
)
NORM_BASE = PrivateAPI(
    "torch",
    _TORCH,
    "torch.nn.modules.batchnorm",
    "_NormBase",
    "class",
    "is the base of the BatchNorm and InstanceNorm layers, whose scale and shift the papers do not count "
    "(summary.py) and norm_weight_decay applies to (tasks/base.py)",
)
WH_PAIRS = PrivateAPI(
    "torchvision",
    _TORCHVISION,
    _BOXES,
    "_generate_wh_pairs",
    "method",
    "makes each map's box shapes: TFAnchorGenerator (models/detection.py) overrides it with TF's, and __init__ "
    "stores its result in _wh_pairs",
    ("self", "num_outputs", "dtype", "device"),
)
WH_PAIRS_ATTRIBUTE = PrivateAPI(
    "torchvision",
    _TORCHVISION,
    _BOXES,
    "_wh_pairs",
    "attribute",
    "holds the box shapes of each map, [K, 2] each, whose count TFAnchorGenerator.num_anchors_per_location reads",
)
GRID_DEFAULT_BOXES = PrivateAPI(
    "torchvision",
    _TORCHVISION,
    _BOXES,
    "_grid_default_boxes",
    "method",
    "makes the boxes of all maps for forward: TFAnchorGenerator overrides it to make them in at least float32",
    ("self", "grid_sizes", "image_size", "dtype"),
)
CLI_PARSE_CKPT_PATH = PrivateAPI(
    "lightning",
    _LIGHTNING,
    "lightning.pytorch.cli:LightningCLI",
    "_parse_ckpt_path",
    "method",
    "merges a --ckpt_path's hyperparameters into the parsed config: MobileTasksCLI (cli/lightning.py) overrides it to "
    "put them under the user's settings",
    ("self",),
)
CLI_INSTANTIATE_TRAINER = PrivateAPI(
    "lightning",
    _LIGHTNING,
    "lightning.pytorch.cli:LightningCLI",
    "_instantiate_trainer",
    "method",
    "builds the trainer from its config and the CLI's callbacks: MobileTasksCLI overrides it to add the task's "
    "checkpoint callback and the atomic CheckpointIO",
    ("self", "config", "callbacks"),
)
STRATEGY_CHECKPOINT_IO = PrivateAPI(
    "lightning",
    _LIGHTNING,
    "lightning.pytorch.strategies:Strategy",
    "_checkpoint_io",
    "attribute",
    "is the CheckpointIO a strategy was configured with, None without (the public checkpoint_io makes a default "
    "one): cli/lightning.py adds its own only where none is configured",
)
MODULE_TRAINER = PrivateAPI(
    "lightning",
    _LIGHTNING,
    "lightning.pytorch:LightningModule",
    "_trainer",
    "attribute",
    "is the module's trainer or None (the public trainer raises without one): tasks/base.py deploy_record",
)
# ModelCheckpoint's methods that TaskCheckpoint (tasks/checkpoint.py) overrides or calls
CHECKPOINT_FIND_LAST = PrivateAPI(
    "lightning",
    _LIGHTNING,
    _CHECKPOINT,
    "_find_last_checkpoints",
    "method",
    "finds the last.ckpt files for ckpt_path='last': TaskCheckpoint overrides it to look in the experiment's folder",
    ("self", "trainer"),
)
CHECKPOINT_SAVE_ON_EPOCH_END = PrivateAPI(
    "lightning",
    _LIGHTNING,
    _CHECKPOINT,
    "_should_save_on_train_epoch_end",
    "method",
    "says whether checkpoints are saved at the end of training epochs (TaskCheckpoint calls it)",
    ("self", "trainer"),
)
CHECKPOINT_SKIP = PrivateAPI(
    "lightning",
    _LIGHTNING,
    _CHECKPOINT,
    "_should_skip_saving_checkpoint",
    "method",
    "says whether this step is saved already or must not be (TaskCheckpoint calls it)",
    ("self", "trainer"),
)
CHECKPOINT_SAVE_LAST = PrivateAPI(
    "lightning",
    _LIGHTNING,
    _CHECKPOINT,
    "_save_last_checkpoint",
    "method",
    "saves last.ckpt (TaskCheckpoint calls it after every epoch)",
    ("self", "trainer", "monitor_candidates"),
)
CHECKPOINT_MONITOR_CANDIDATES = PrivateAPI(
    "lightning",
    _LIGHTNING,
    _CHECKPOINT,
    "_monitor_candidates",
    "method",
    "collects the logged metrics a checkpoint's name and score come from (TaskCheckpoint calls it)",
    ("self", "trainer"),
)

PRIVATE_APIS: tuple[PrivateAPI, ...] = (
    MAKE_DIVISIBLE,
    BATCH_NORM,
    NORM_BASE,
    WH_PAIRS,
    WH_PAIRS_ATTRIBUTE,
    GRID_DEFAULT_BOXES,
    CLI_PARSE_CKPT_PATH,
    CLI_INSTANTIATE_TRAINER,
    STRATEGY_CHECKPOINT_IO,
    MODULE_TRAINER,
    CHECKPOINT_FIND_LAST,
    CHECKPOINT_SAVE_ON_EPOCH_END,
    CHECKPOINT_SKIP,
    CHECKPOINT_SAVE_LAST,
    CHECKPOINT_MONITOR_CANDIDATES,
)

# torch is imported by every part of mobiletasks: its classes are looked up once, here
BatchNormBase: type[nn.Module] = BATCH_NORM.resolve()
NormBase: type[nn.Module] = NORM_BASE.resolve()


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, at least ``min_value`` (default ``divisor``) and
    never more than 10% below ``value``: torchvision's ``_make_divisible``, after TF-slim's MobileNets.

    Raises:
        PrivateAPIError: torchvision no longer has it.
    """
    rounded: int = MAKE_DIVISIBLE.resolve()(value, divisor, min_value)
    return rounded


def configured_checkpoint_io(strategy: object) -> CheckpointIO | None:
    """The ``CheckpointIO`` a Lightning ``Strategy`` was configured with, or None where it has none yet (its public
    ``checkpoint_io`` would make a default one).

    Raises:
        PrivateAPIError: Lightning no longer stores it where it did.
    """
    io: CheckpointIO | None = STRATEGY_CHECKPOINT_IO.read(strategy)
    return io


def attached_trainer(module: object) -> L.Trainer | None:
    """The trainer a ``LightningModule`` is attached to, or None (its public ``trainer`` raises without one).

    Raises:
        PrivateAPIError: Lightning no longer stores it where it did.
    """
    trainer: L.Trainer | None = MODULE_TRAINER.read(module)
    return trainer


def overrides_private(*methods: PrivateAPI) -> Callable[[C], C]:
    """Class decorator: the class overrides these private ``methods`` of its base. At class creation each must still
    exist on the base (an override of a renamed method would never be called) and be defined by the class.

    Raises:
        PrivateAPIError: the base no longer has one of them.
        TypeError: a record that is no method of a base of the class, or a method the class does not define.
    """

    def check(cls: C) -> C:
        for record in methods:
            base = record.owner_object()
            if record.kind != "method" or not (isinstance(base, type) and issubclass(cls, base)):
                raise TypeError(f"{cls.__name__} cannot override {record.qualified_name}: not a method of its bases")
            record.resolve()
            if record.name not in vars(cls):
                raise TypeError(f"{cls.__name__} lists {record.qualified_name} as overridden but does not define it")
        return cls

    return check
