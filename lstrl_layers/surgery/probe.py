"""One probe forward through a model: what input it takes, and running it without side effects.

Shared by the injection (which tensor each stage gives, hence the blocks' channels) and the last-stride
surgery (which layers downsample last, and whether the model still runs once changed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_int, got
from ..blocks.base import ClipBlock

# Probe frame / clip sizes assumed from a model's first layer when the model says nothing (ImageNet sizes, and
# 8 frames of 112x112 for 3D CNNs, as torchvision's video models are trained).
_FRAME_SIZE = (224, 224)
_CLIP_SIZE = (8, 112, 112)


def probe_input(
    model: nn.Module, example_input: Tensor | None = None, input_size: Sequence[int] | None = None
) -> Tensor:
    """A batch of one zero frame (or clip) that ``model`` takes, on its parameters' device and dtype.

    In order: ``example_input`` as given; ``(1, *input_size)`` zeros; timm's ``pretrained_cfg["input_size"]``
    (the size a timm model was built for); the first layer's input channels at 224x224 for a ``Conv2d``, or
    ``(C, 8, 112, 112)`` for a ``Conv3d``.

    Raises:
        TypeError: ``example_input`` not a tensor, ``input_size`` not a sequence of ints.
        ValueError: none of the above tells the input (the message says to pass one of the two).
    """
    param = next(model.parameters(), None)
    device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
    if example_input is not None:
        if not isinstance(example_input, Tensor):
            raise TypeError(f"example_input must be a tensor the model takes, got {got(example_input)}")
        if example_input.is_floating_point():
            return example_input.to(device=device, dtype=dtype)
        return example_input.to(device=device)
    if input_size is not None:
        if isinstance(input_size, (str, bytes)) or not isinstance(input_size, Sequence):
            raise TypeError(
                f"input_size must be the size of one input without the batch, e.g. (3, 256, 128), "
                f"got {got(input_size)}"
            )
        size = tuple(check_int("input_size", s) for s in input_size)
        return torch.zeros((1, *size), device=device, dtype=dtype)
    return torch.zeros((1, *_inferred_size(model)), device=device, dtype=dtype)


def _inferred_size(model: nn.Module) -> tuple[int, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    first = next((m for m in model.modules() if next(m.parameters(recurse=False), None) is not None), None)
    if "input_size" in cfg:  # timm
        size = tuple(cfg["input_size"])
        patch_embed_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
        if patch_embed_size is not None:  # models built for another size (img_size=...) accept only that one
            size = (size[0], *patch_embed_size)
        if isinstance(first, nn.Conv2d):  # built with in_chans=..., which the config does not follow
            size = (first.in_channels, *size[1:])
        return size
    if isinstance(first, nn.Conv2d):
        return (first.in_channels, *_FRAME_SIZE)
    if isinstance(first, nn.Conv3d):
        return (first.in_channels, *_CLIP_SIZE)
    raise ValueError(
        f"cannot tell what input {type(model).__name__} takes (its first layer is "
        f"{type(first).__name__ if first is not None else 'none'}, not a Conv2d or Conv3d): pass "
        f"input_size= (one input without the batch, e.g. (3, 256, 128)) or, to the injection, example_input= "
        f"(a batch the model takes, e.g. torch.zeros(1, 3, 256, 128))"
    )


def run_probe(model: nn.Module, inputs: Tensor, purpose: str) -> Any:
    """``model(inputs)`` in eval mode, without gradients, and return the output.

    Blocks (``ClipBlock``) already in the model are skipped: they keep the shape of what they are given, and a
    probe only needs shapes (a block attending over a large early map at the probe's size could need
    gigabytes).
    The model's train / eval mode is restored afterwards.

    Raises:
        ValueError: the model fails on it; the message says what the run was for (``purpose``).
    """
    was_training = model.training
    blocks = [m for m in model.modules() if isinstance(m, ClipBlock)]  # injected earlier
    try:
        model.eval()  # no BatchNorm statistics updates from the probe
        for block in blocks:
            block.forward = _skip  # type: ignore[method-assign]  # an instance attribute, removed below
        with torch.no_grad():
            return model(inputs)
    except Exception as err:
        raise ValueError(
            f"an input of shape {tuple(inputs.shape)} run through {type(model).__name__} {purpose} made the "
            f"model fail: {type(err).__name__}: {err}"
        ) from err
    finally:
        model.train(was_training)
        for block in blocks:
            del block.forward


def _skip(x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    return x
