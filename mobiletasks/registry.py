"""Name -> builder registries for backbones and complete models (timm ``_registry.py`` style)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

F = TypeVar("F", bound=Callable[..., nn.Module])


class Registry:
    """A decorator registry that rejects duplicate names.

    A name may be registered again only by a new definition of the same builder: another object with the same
    module and qualified name, as re-running a notebook cell or reloading a module makes; it replaces the old one.

    Besides plain names it resolves *namespaces*: ``"timm/xception41"`` is handed to the builder registered
    for ``"timm"`` with ``"xception41"`` as its first argument.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., nn.Module]] = {}
        self._namespaces: dict[str, Callable[..., nn.Module]] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: ``@register_backbone("my_net")`` above a class or builder function.

        Args:
            name: the registered name (default: the function's or class's ``__name__``).

        Raises:
            ValueError: the name is taken by another builder (one of another module or qualified name, or the same
                object registered twice); a new definition of the same builder replaces the old one.

        Example:
            >>> widgets = Registry("widget")
            >>> for _ in range(2):  # a notebook cell run twice: a new class each time, the same name
            ...     @widgets.register("tiny")
            ...     class Tiny(nn.Identity): ...
            >>> type(widgets.build("tiny")) is Tiny
            True
        """

        def wrap(fn: F) -> F:
            key = name or fn.__name__
            old = self._builders.get(key)
            if old is not None and not _redefines(fn, old):
                owner = f"{getattr(old, '__module__', '?')}.{getattr(old, '__qualname__', '?')}"
                raise ValueError(f"{self.kind} {key!r} is already registered (by {owner}); pick another name")
            self._builders[key] = fn
            return fn

        return wrap

    def register_namespace(self, prefix: str, builder: Callable[..., nn.Module]) -> None:
        if prefix in self._namespaces:
            raise ValueError(f"{self.kind} namespace {prefix!r} is already registered")
        self._namespaces[prefix] = builder

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: str) -> bool:
        return name in self._builders

    def build(self, name: str, **kwargs: Any) -> nn.Module:
        if name in self._builders:
            return self._builders[name](**kwargs)
        prefix, sep, rest = name.partition("/")
        if sep and prefix in self._namespaces:
            return self._namespaces[prefix](rest, **kwargs)
        if "." in name and not sep:
            return _import(name)(**kwargs)
        namespaces = ", ".join(f"'{p}/<name>'" for p in sorted(self._namespaces))
        raise ValueError(
            f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            + (f"; or {namespaces}" if namespaces else "")
            + "; or an import path such as 'my_package.module.MyClass'"
        )


def _redefines(new: Callable[..., Any], old: Callable[..., Any]) -> bool:
    """Whether ``new`` is a new definition of ``old``: another object of the same module and qualified name."""
    origin = (getattr(new, "__module__", None), getattr(new, "__qualname__", None))
    return (
        new is not old
        and None not in origin
        and origin == (getattr(old, "__module__", None), getattr(old, "__qualname__", None))
    )


def _import(path: str) -> Callable[..., nn.Module]:
    module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import {path!r} ({err}); give a registered name or 'package.module.Class'") from err


BACKBONES = Registry("backbone")
MODELS = Registry("model")

register_backbone = BACKBONES.register
register_model = MODELS.register


def list_backbones() -> list[str]:
    """Registered backbone names (``timm/<name>`` and other namespaces resolve on top of these)."""
    return BACKBONES.names()


def list_models() -> list[str]:
    """Registered complete models (classifiers, detectors, segmenters)."""
    return MODELS.names()
