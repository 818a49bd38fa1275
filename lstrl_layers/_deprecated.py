"""Everything kept for code and files of earlier versions, in one place, each with the version it goes in.

- Import paths of modules that moved (``lstrl_layers.mae`` is now ``lstrl_layers.blocks.mae``): importing the
  old path gives the new module's names with a ``DeprecationWarning``; the old paths go in :data:`REMOVED_IN`.
- Files of earlier versions: the names that training settings and model files stored under earlier names
  are read under today's (:func:`current_settings`, :func:`current_model_arguments`), with no warning, since a
  file cannot change; these stay.

The argument and attribute names of 0.1 (``ClipDataset(clip_len=)``, ``PKBatchSampler(num_identities=,
num_instances=)``, ``_ClipBlock``, ``lstrl_layers.reid.datasets`` and ``lstrl_layers.reid.synthetic``) were
removed in 0.2 (see the changelog).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MOVED_MODULES", "REMOVED_IN", "current_model_arguments", "current_settings", "install"]

REMOVED_IN = "0.4"

# old import path -> new one (version 0.2 moved the modules into blocks/, surgery/, reid/ and cli/)
MOVED_MODULES = {
    "lstrl_layers.clip_block": "lstrl_layers.blocks.base",
    "lstrl_layers.mae": "lstrl_layers.blocks.mae",
    "lstrl_layers.bme": "lstrl_layers.blocks.bme",
    "lstrl_layers.block": "lstrl_layers.blocks.lstrl",
    "lstrl_layers.inject": "lstrl_layers.surgery.inject",
    "lstrl_layers.reid_net": "lstrl_layers.reid.model",
    "lstrl_layers.argtypes": "lstrl_layers.cli.argtypes",
    "lstrl_layers.reid.settings": "lstrl_layers.reid.engine.settings",
    "lstrl_layers.reid.evaluation": "lstrl_layers.reid.engine.evaluation",
    "lstrl_layers.reid.checkpoint": "lstrl_layers.reid.engine.checkpoint",
    "lstrl_layers.reid.distributed": "lstrl_layers.reid.engine.distributed",
    "lstrl_layers.reid.reporting": "lstrl_layers.reid.engine.reporting",
    "lstrl_layers.reid.runtime": "lstrl_layers.reid.engine.runtime",
    "lstrl_layers.reid.files": "lstrl_layers._files",
}

# training settings stored under an earlier name: old name -> name
_RENAMED_SETTINGS: dict[str, str] = {"model": "backbone"}  # 0.1 and 0.2.0.dev0
# setting values stored under an earlier name: (setting, old value) -> new value
_RENAMED_VALUES = {("test_sampling", "rrs"): "first"}  # 0.1 called the first frame of each chunk "rrs"
# model file arguments stored under an earlier name
_RENAMED_MODEL_ARGUMENTS = {"model_name": "backbone"}  # 0.1


class _MovedModule(types.ModuleType):
    """Stands for a module under its old import path: every attribute is read from the new module."""

    def __init__(self, name: str, target: types.ModuleType) -> None:
        super().__init__(name, target.__doc__)
        self.__target = target

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.__target, attr)

    def __dir__(self) -> list[str]:
        return dir(self.__target)


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path (:data:`MOVED_MODULES`) as its new module, with a ``DeprecationWarning``."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = MOVED_MODULES[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; the old path goes in lstrl_layers {REMOVED_IN} (the package's own "
            f"names, `from lstrl_layers import ...`, stay where they are)",
            DeprecationWarning,
            stacklevel=2,
        )
        return _MovedModule(spec.name, importlib.import_module(new))

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the module's names are the new module's."""


def install() -> None:
    """Let the old module paths import (once per process)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())


def current_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """Training settings stored by any version (a checkpoint's ``settings``), in today's names and values."""
    settings = {_RENAMED_SETTINGS.get(name, name): value for name, value in values.items()}
    for (name, old), new in _RENAMED_VALUES.items():
        if settings.get(name) == old:
            settings[name] = new
    return settings


def current_model_arguments(values: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`~lstrl_layers.VideoReIDNet` arguments of a model file of any version, in today's names."""
    return {_RENAMED_MODEL_ARGUMENTS.get(name, name): value for name, value in values.items()}
