"""What each stage of a model gives its block: one probe forward, and the channels of each stage's output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .probe import run_probe
from .stages import StageTarget


def probe_stage_outputs(
    model: nn.Module, targets: Mapping[str, StageTarget], inputs: Tensor
) -> dict[str, list[Any]]:
    """Run ``inputs`` through ``model`` and return what each target stage feeds its block, once per call.

    Raises:
        ValueError: the model fails on ``inputs`` (the message says to pass another input).
    """
    captured: dict[str, list[Any]] = {name: [] for name in targets}
    handles = []
    for name, target in targets.items():

        def capture(_module: nn.Module, *args: Any, _name: str = name, _pre: bool = target.pre) -> None:
            captured[_name].append(args[0][0] if _pre else args[1])

        module = target.module
        handles.append(
            module.register_forward_pre_hook(capture) if target.pre else module.register_forward_hook(capture)
        )
    try:
        purpose = "to find the output of each stage (pass example_input= or input_size= for another input)"
        run_probe(model, inputs, purpose)
    finally:
        for hook in handles:
            hook.remove()
    return captured


def stage_channels(model: nn.Module, target: StageTarget, out: Any, layout: str) -> int:
    """The channels of a stage's output ``out``, which must be one feature map in ``layout``.

    Raises:
        ValueError: ``out`` is not one channels-first map of ``layout``'s rank (token sequences,
            channels-last maps, lists); the message says what the stage gives and what the blocks need.
    """
    expected = "(N, C, H, W) feature map" if layout == "BTCHW" else "(B, C, T, H, W) clip feature map"
    ndim = 4 if layout == "BTCHW" else 5
    if not isinstance(out, Tensor) or out.ndim != ndim:
        received = type(out).__name__
        if isinstance(out, Tensor):
            received = f"a {out.ndim}-D tensor {tuple(out.shape)}"
        hint = ""
        if isinstance(out, Tensor) and out.ndim == 5 and layout == "BTCHW":
            hint = "; for a 3D CNN's (B, C, T, H, W) stages pass layout='BCTHW'"
        raise ValueError(
            f"stage {target.name!r} of {type(model).__name__} does not give one {expected} "
            f"(got {received}): temporal blocks need a CNN stage{hint}"
        )
    if target.num_chs is not None:
        widths, source = {target.num_chs}, "in feature_info"
    else:
        widths, source = _token_widths(target.module), "the width of its last Linear / LayerNorm layers"
    if out.shape[1] not in widths and out.shape[-1] in widths:
        listed = out.shape[-1]
        where = "(N, H, W, C)" if layout == "BTCHW" else "(B, T, H, W, C)"
        raise ValueError(
            f"stage {target.name!r} of {type(model).__name__} gives a channels-last {where} map "
            f"{tuple(out.shape)} (C={listed}, {source}): temporal blocks need channels first, {expected}"
        )
    return int(out.shape[1])


def _token_widths(module: nn.Module) -> set[int]:
    """Widths of the ``Linear`` / ``LayerNorm`` layers a module ends with (transformer-style stages).

    Such layers work on the last dimension, so a channels-last output's last size is among them; the search
    stops at the last convolution or batch norm (a CNN stage, whose channels are its output's dim 1).
    """
    widths: set[int] = set()
    for layer in reversed(list(module.modules())):
        if isinstance(layer, nn.Linear):
            widths.add(layer.out_features)
        elif isinstance(layer, nn.LayerNorm):
            widths.add(int(layer.normalized_shape[-1]))
        elif isinstance(layer, (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm)):
            break
    return widths
