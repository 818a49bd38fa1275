"""Finding where a block goes: timm ``feature_info`` stages, or module names in any ``nn.Module``.

A stage is an index into timm's ``feature_info`` (timm's ``out_indices``), a name ``feature_info`` lists, or
the name of any submodule (``"layer3"``, ``"layer3.1"``): the block runs on that module's output.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from torch import nn

from .._checks import check_int, got
from .feature_info import feature_dicts, feature_location

Stage = Union[int, str]

_LISTED = 12  # names listed in a message before "..."


@dataclass(frozen=True)
class StageTarget:
    """Where one block goes: the stage's name, the module to hook, and how."""

    name: str  # as feature_info lists it, or the module's name
    module: nn.Module
    pre: bool  # a forward-pre hook (the module's input), where feature_info says hook_type="forward_pre"
    num_chs: int | None  # channels feature_info lists, if any


def _candidates(name: str) -> tuple[str, ...]:
    # timm's features_only models flatten the first level of nn.Sequential containers into their own
    # children ("stages.1" -> "stages_1", FeatureListNet) or keep the whole model under ``model``
    # (FeatureGetterNet)
    return tuple(dict.fromkeys((name, name.replace(".", "_", 1), f"model.{name}")))


def _find_module(model: nn.Module, name: str) -> tuple[str, nn.Module] | None:
    for candidate in _candidates(name):
        try:
            return candidate, model.get_submodule(candidate)
        except AttributeError:
            continue
    return None


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _LISTED else "")


def _nearby(model: nn.Module, name: str) -> str:
    """The modules near a missing name: close spellings, and the children of its nearest parent."""
    parts = name.split(".")
    parent, parent_module = "", model
    for depth in range(len(parts) - 1, 0, -1):
        found = _find_module(model, ".".join(parts[:depth]))
        if found is not None:
            parent, parent_module = found
            break
    children = [f"{parent}.{child}" if parent else child for child, _ in parent_module.named_children()]
    same_depth = [n for n, _ in model.named_modules() if n and n.count(".") == name.count(".")]
    close = difflib.get_close_matches(name, same_depth, n=3)
    where = f"the modules in {parent!r}" if parent else "its top-level modules"
    text = f"{where}: {_listed(children)}" if children else f"{parent!r} has no submodules"
    return (f"did you mean {_listed(close)}? " if close else "") + text


def _feature_info_names(dicts: list[dict[str, Any]]) -> str:
    return ", ".join(f"{i}={d['module']!r}" for i, d in enumerate(dicts))


def resolve_stage(model: nn.Module, stage: object, dicts: list[dict[str, Any]] | None) -> StageTarget:
    """Map a stage index or name to the module to hook (``dicts``: the model's ``feature_info``, if any).

    Raises:
        TypeError: ``stage`` is neither an int nor a str.
        ValueError: no such stage (the message lists the valid names nearby), an index on a model without
            ``feature_info``, or a ``features_only`` model that does not hold the stage.
    """
    model_name = type(model).__name__
    valid = f"valid: {_feature_info_names(dicts)}" if dicts else ""
    if isinstance(stage, bool) or not isinstance(stage, (int, str)):
        raise TypeError(
            f"stages must hold ints or str (feature_info indices or module names), got {got(stage)}"
            + (f"; {valid}" if valid else "")
        )
    if isinstance(stage, int):
        if dicts is None:
            raise ValueError(
                f"stage index {stage}: integer stages index timm's feature_info, which {model_name} does not "
                f"have; name the modules instead, {_nearby(model, '')}"
            )
        if not 0 <= stage < len(dicts):
            raise ValueError(f"stage index {stage} does not exist in {model_name}; {valid}")
        return _feature_info_target(model, stage, dicts)
    names = [d["module"] for d in dicts or []]
    if stage in names:
        return _feature_info_target(model, names.index(stage), dicts or [])
    found = _find_module(model, stage) if stage else None
    if found is None:
        listed = f"{valid}, or a module name; " if valid else ""
        raise ValueError(f"stage {stage!r} does not exist in {model_name}; {listed}{_nearby(model, stage)}")
    return StageTarget(found[0], found[1], pre=False, num_chs=None)


def _feature_info_target(model: nn.Module, index: int, dicts: list[dict[str, Any]]) -> StageTarget:
    name = dicts[index]["module"]
    found = _find_module(model, feature_location(model, index, name))
    if found is None:
        raise ValueError(
            f"stage {index} ({name!r}) is listed in feature_info but not present in this "
            f"{type(model).__name__} (a features_only model keeps only the stages up to its last out_index)"
        )
    pre = dicts[index].get("hook_type", "forward") == "forward_pre"
    return StageTarget(name, found[1], pre=pre, num_chs=dicts[index].get("num_chs"))


def blocks_of(model: nn.Module, stage: Stage, every: int = 1, start: int = 0) -> list[str]:
    """Names of the blocks of one stage, every ``every``-th from ``start``: per-block placement.

    The blocks are the children of the stage's module, or of its ``blocks`` container where it has one (timm's
    ConvNeXt-style stages hold a downsampling layer and ``blocks``). Pass the result as ``stages`` to
    :func:`~lstrl_layers.inject_blocks` or :func:`~lstrl_layers.inject_lstrl` to run a block after each of
    them, as non-local blocks are placed after every other residual block of a stage.

    Args:
        model: any ``nn.Module``.
        stage: a module name (``"layer3"``), or a ``feature_info`` index or name on timm models.
        every: take every ``every``-th block (``2``: every other).
        start: the first block taken (``0``: the first).

    Returns:
        Module names, e.g. ``["layer3.0", "layer3.2", "layer3.4"]`` for a ResNet-50's ``layer3``, ``every=2``.

    Raises:
        TypeError: ``model`` not a module, ``every`` / ``start`` not ints.
        ValueError: no such stage (nearby names listed), a stage without children, ``every < 1``, or
            ``start`` past the last block.

    Example:
        >>> blocks_of(torchvision.models.resnet50(), "layer3", every=2)
        ['layer3.0', 'layer3.2', 'layer3.4']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {got(model)}")
    check_int("every", every)
    check_int("start", start, minimum=0)
    target = resolve_stage(model, stage, feature_dicts(model, required=False))
    name = next(n for n, m in model.named_modules() if m is target.module)
    container = getattr(target.module, "blocks", None)
    if isinstance(container, (nn.Sequential, nn.ModuleList)) and len(container):
        name, children = f"{name}.blocks", list(container.named_children())
    else:
        children = list(target.module.named_children())
    if not children:
        raise ValueError(f"stage {stage!r} ({name!r}) of {type(model).__name__} has no blocks (submodules)")
    if start >= len(children):
        raise ValueError(f"start must be < {len(children)}, the number of blocks in {name!r}, got {start!r}")
    return [f"{name}.{child}" for child, _ in children[start::every]]
