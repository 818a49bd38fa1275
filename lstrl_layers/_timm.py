"""Reading and changing a timm model: ``feature_info``, stage lookup, a dummy forward, the last stride.

Shared by :func:`~lstrl_layers.inject_lstrl` (where to hook a block) and :class:`~lstrl_layers.VideoReIDNet`
(which layers to change for ``last_stride=1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from ._clip_block import _ClipBlock

Stage = Union[int, str]


def feature_dicts(model: nn.Module) -> list[dict[str, Any]]:
    """A timm model's ``feature_info`` (a list, or ``features_only``'s ``FeatureInfo``) as a list of dicts.

    Raises:
        ValueError: the model has no ``feature_info``, or one that is not a list of stage dicts.
    """
    info = getattr(model, "feature_info", None)
    if info is None:
        raise ValueError(
            f"model: LSTRL needs a timm model with `feature_info` (stage names and channels); "
            f"{type(model).__name__} has none"
        )
    dicts = info.info if hasattr(info, "info") else info  # features_only: timm FeatureInfo, all stages
    if not isinstance(dicts, (list, tuple)) or not all(
        isinstance(d, Mapping) and "module" in d for d in dicts
    ):
        raise ValueError(f"{type(model).__name__}.feature_info is not a list of stage dicts: {info!r}")
    return [dict(d) for d in dicts]


def _feature_location(model: nn.Module, index: int, name: str) -> str:
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


def resolve_stage(model: nn.Module, stage: Stage, dicts: list[dict[str, Any]]) -> tuple[str, nn.Module, bool]:
    """Map a stage index or name to (feature_info module name, the module to hook, whether pre-hook).

    Raises:
        TypeError: ``stage`` is neither an int nor a str.
        ValueError: no such stage, or a ``features_only`` model that does not hold it.
    """
    names = [d["module"] for d in dicts]
    valid = ", ".join(f"{i}={n!r}" for i, n in enumerate(names))
    if isinstance(stage, bool) or not isinstance(stage, (int, str)):
        raise TypeError(
            f"stages must hold ints or str, got {stage!r} ({type(stage).__name__}); valid: {valid}"
        )
    if isinstance(stage, int):
        if not 0 <= stage < len(names):
            raise ValueError(f"stage index {stage} does not exist in {type(model).__name__}; valid: {valid}")
        index = stage
    elif stage in names:
        index = names.index(stage)
    else:
        raise ValueError(f"stage {stage!r} does not exist in {type(model).__name__}; valid: {valid}")
    name = names[index]
    location = _feature_location(model, index, name)
    # features_only models flatten the first level of nn.Sequential containers into their own children
    # ("stages.1" -> "stages_1", FeatureListNet) or keep the whole model under ``model`` (FeatureGetterNet)
    for candidate in dict.fromkeys((location, location.replace(".", "_", 1), f"model.{location}")):
        try:
            module = model.get_submodule(candidate)
        except AttributeError:
            continue
        return name, module, dicts[index].get("hook_type", "forward") == "forward_pre"
    raise ValueError(
        f"stage {stage!r} ({name!r}) is listed in feature_info but not present in this "
        f"{type(model).__name__} (a features_only model keeps only the stages up to its last out_index)"
    )


def run_dummy_frame(model: nn.Module, purpose: str) -> None:
    """Run one zero frame of the model's default input size through ``model`` (eval mode, no grad).

    LSTRL blocks already in the model see the frame as a clip of one frame; the model's train / eval mode
    and the blocks' ``num_frames`` are restored afterwards.

    Raises:
        ValueError: the model fails on it; the message says what the run was for (``purpose``).
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    input_size = tuple(cfg.get("input_size", (3, 224, 224)))
    patch_embed_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if patch_embed_size is not None:  # models built for another size (img_size=...) accept only that one
        input_size = (input_size[0], *patch_embed_size)
    param = next(model.parameters(), None)
    device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
    was_training = model.training
    blocks = {m: m.num_frames for m in model.modules() if isinstance(m, _ClipBlock)}  # injected earlier
    try:
        model.eval()  # no BatchNorm statistics updates from the dummy input
        for block in blocks:
            block.num_frames = 1  # one frame is one clip
        with torch.no_grad():
            model(torch.zeros((1, *input_size), device=device, dtype=dtype))
    except Exception as err:
        raise ValueError(
            f"one dummy frame of size {input_size} run through "
            f"{type(model).__name__} {purpose} made the model fail: {type(err).__name__}: {err}"
        ) from err
    finally:
        model.train(was_training)
        for block, num_frames in blocks.items():
            block.num_frames = num_frames


def set_last_stride_one(model: nn.Module) -> None:
    """Make the last ``feature_info`` stage keep its input resolution (the ReID "last stride = 1").

    The layers that run after the previous ``feature_info`` point and up to the end of the last stage are
    searched (in registration order, which is execution order in timm's CNNs). Stride-2 convolutions and
    pooling among them whose padding keeps the size at stride 1 get stride 1 (no dilation, as in BoT's and
    LSTRL's ResNet-50); stride-2 pooling that only downsamples (kernel == stride == 2, e.g. ResNet-D
    shortcuts, DenseNet transitions) becomes an identity. Patchify convolutions (kernel == stride == 2,
    ConvNeXt) cannot keep their receptive field at stride 1 and are refused.

    Raises:
        ValueError: a stride-2 layer it cannot change, none found, or a model that fails once changed.
    """
    dicts = feature_dicts(model)
    if len(dicts) < 2 or dicts[-1].get("reduction") == dicts[-2].get("reduction"):
        return  # the last stage does not downsample
    last_name, last_stage, _ = resolve_stage(model, len(dicts) - 1, dicts)
    _, previous_stage, _ = resolve_stage(model, len(dicts) - 2, dicts)
    named = list(model.named_modules())
    previous_end, last_end = (_last_index_within(named, stage) for stage in (previous_stage, last_stage))
    changed = []
    for sub_name, module in named[previous_end + 1 : last_end + 1]:
        stride = getattr(module, "stride", None)
        if stride not in (2, (2, 2)) or next(module.children(), None) is not None:
            continue  # blocks store their stride too: only the layers that apply it are changed
        kernel = getattr(module, "kernel_size", None)
        if isinstance(module, (nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d)) and _keeps_size_at_stride_one(module):
            module.stride = (1, 1) if isinstance(module, nn.Conv2d) else 1
        elif isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)) and kernel in (2, (2, 2)):
            parent_name, _, child = sub_name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, nn.Identity())
        else:
            raise ValueError(
                f"last_stride=1 does not know how to remove the stride of {sub_name} "
                f"({type(module).__name__}, kernel {kernel}); use last_stride=2 for this model"
            )
        changed.append(sub_name)
    if not changed:
        raise ValueError(
            f"last_stride=1: found no stride-2 layer up to the last stage {last_name!r}; use last_stride=2"
        )
    run_dummy_frame(model, f"after last_stride=1 removed the stride of {changed} (use last_stride=2)")


def _last_index_within(named: list[tuple[str, nn.Module]], stage: nn.Module) -> int:
    """Index in ``named`` of the last module that is ``stage`` or one of its submodules."""
    members = {id(m) for m in stage.modules()}
    return max(i for i, (_, m) in enumerate(named) if id(m) in members)


def _keeps_size_at_stride_one(module: nn.Module) -> bool:
    """Whether a conv / pool gives an output of its input's size once its stride is 1."""
    if "Same" in type(module).__name__:  # timm's Conv2dSame / AvgPool2dSame pad for any stride at run time
        return True
    pairs = (getattr(module, "kernel_size", 1), getattr(module, "padding", 0), getattr(module, "dilation", 1))
    kernel, padding, dilation = (v if isinstance(v, tuple) else (v, v) for v in pairs)
    if any(isinstance(p, str) for p in padding):
        return False
    return all(2 * p == d * (k - 1) for k, p, d in zip(kernel, padding, dilation))
