"""Reading a timm model's ``feature_info``: its stages, their names, channels and where timm takes them.

Shared by :func:`~lstrl_layers.inject_lstrl` (where to hook a block) and :class:`~lstrl_layers.VideoReIDNet`
(which layers to change for ``last_stride=1``). Models without ``feature_info`` are reached by module names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, overload

from torch import nn


@overload
def feature_dicts(model: nn.Module, required: Literal[True] = ...) -> list[dict[str, Any]]: ...


@overload
def feature_dicts(model: nn.Module, required: bool) -> list[dict[str, Any]] | None: ...


def feature_dicts(model: nn.Module, required: bool = True) -> list[dict[str, Any]] | None:
    """A timm model's ``feature_info`` (a list, or ``features_only``'s ``FeatureInfo``) as a list of dicts.

    ``None`` for a model without ``feature_info`` unless ``required``.

    Raises:
        ValueError: ``required`` and the model has no ``feature_info``, or one that is not a list of stage
            dicts.
    """
    info = getattr(model, "feature_info", None)
    if info is None:
        if not required:
            return None
        raise ValueError(
            f"{type(model).__name__} has no `feature_info` (timm's list of stages with names and channels)"
        )
    dicts = info.info if hasattr(info, "info") else info  # features_only: timm FeatureInfo, all stages
    if not isinstance(dicts, (list, tuple)) or not all(
        isinstance(d, Mapping) and "module" in d for d in dicts
    ):
        raise ValueError(f"{type(model).__name__}.feature_info is not a list of stage dicts: {info!r}")
    return [dict(d) for d in dicts]


def feature_location(model: nn.Module, index: int, name: str) -> str:
    """The module whose output is feature ``index``, where timm's ``feature_info`` names no real module.

    timm's HRNet lists ``"stem"``, ``"stage1"``.. but takes its features after ``act1`` and, for the later
    ones, from each final branch after the head's channel-increase module (``incre_modules``): the maps with
    ``feature_info``'s channel counts that a ``features_only`` HRNet returns.
    """
    if type(model).__name__ in ("HighResolutionNet", "HighResolutionNetFeatures"):
        if index == 0:
            return "act1"
        if getattr(model, "incre_modules", None) is not None:
            return f"incre_modules.{index - 1}"
    return name
