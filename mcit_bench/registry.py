"""Method plugin registry: built-ins by decorator, third-party methods by entry point.

Register a built-in (or any imported class) with ``@register_method("my-method", "alias")``.
A third-party package exposes its Strategy subclass under the entry-point group
``mcit_bench.methods`` (``my-method = my_package.module:MyStrategy``).
Names are case-insensitive and ``_`` equals ``-`` (``fwd_prompt`` = ``fwd-prompt``).
Default hyper-parameters: the class's ``defaults`` dict, overridden by ``<module>.yaml`` beside the
module file when it exists.
"""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Any, Callable

from .errors import UserError

ENTRY_POINT_GROUP = "mcit_bench.methods"
_METHODS: dict[str, type] = {}
_ALIASES: dict[str, str] = {}
_loaded = False


def normalize(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_method(name: str, *aliases: str) -> Callable[[type], type]:
    """Class decorator registering a Strategy subclass under ``name`` and ``aliases``."""

    def decorate(cls: type) -> type:
        canonical = normalize(name)
        cls.name = canonical
        _METHODS[canonical] = cls
        for alias in (canonical, *aliases):
            _ALIASES[normalize(alias)] = canonical
        return cls

    return decorate


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import mcit_bench.methods as builtin

    for info in pkgutil.iter_modules(builtin.__path__):
        importlib.import_module(f"{builtin.__name__}.{info.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if normalize(ep.name) in _ALIASES:
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not hide the others
            raise UserError(f"method plugin {ep.name!r} ({ep.value}) failed to import: {exc}") from exc
        register_method(ep.name)(cls)


def get_method(name: str) -> type:
    _load_all()
    key = normalize(name)
    if key not in _ALIASES:
        raise UserError(f"unknown method {name!r}; known: {', '.join(list_methods())}")
    return _METHODS[_ALIASES[key]]


def list_methods() -> list[str]:
    _load_all()
    return sorted(_METHODS)


def aliases_of(canonical: str) -> list[str]:
    _load_all()
    return sorted(a for a, c in _ALIASES.items() if c == canonical and a != canonical)


def method_defaults(cls: type) -> dict[str, Any]:
    """Class ``defaults`` merged with the YAML file beside the class's module (YAML wins).

    The YAML's ``search_space`` section is the method's tuning range (``search_space.py``), never a
    hyper-parameter.
    """
    from .tuning.search_space import SECTION, read_method_yaml, yaml_path

    merged = dict(getattr(cls, "defaults", {}) or {})
    path = yaml_path(cls)
    if path and path.is_file():
        merged.update({k: v for k, v in read_method_yaml(path).items() if k != SECTION})
    return merged
