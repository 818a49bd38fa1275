"""What builds the block of a stage: a ``ClipBlock`` subclass or a function, checked before and after."""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

from torch import Tensor, nn

from .._checks import got
from ..blocks.base import ClipBlock

# called as block(channels=C, num_frames=T, layout=layout) for each stage
BlockFactory = Union[type[ClipBlock], Callable[..., ClipBlock]]


def check_block_factory(block: object) -> None:
    """Refuse a ``block`` that cannot build one ``ClipBlock`` per stage, before anything else runs.

    Raises:
        TypeError: a module instance (one block per stage is needed), a class other than a ``ClipBlock``
            subclass, or something not callable.
    """
    expected = (
        "a ClipBlock subclass or a callable block(channels=C, num_frames=T, layout=...) that returns a "
        "ClipBlock"
    )
    if isinstance(block, nn.Module):
        raise TypeError(
            f"block must be {expected}, one new block per stage, got the module {got(block)}: pass its class "
            f"or a function that builds it"
        )
    if isinstance(block, type) and not issubclass(block, ClipBlock):
        raise TypeError(f"block must be {expected}, got the class {block.__name__}, which is not a ClipBlock")
    if not callable(block):
        raise TypeError(f"block must be {expected}, got {got(block)}")


def build_block(
    block: BlockFactory, stage: str, channels: int, num_frames: int, layout: str, out: Tensor
) -> ClipBlock:
    """``block(channels=..., num_frames=..., layout=...)``, checked, on the device and dtype of the stage
    output ``out``.

    Raises:
        TypeError: the call returns something other than a ``ClipBlock``.
        ValueError: the block has other ``channels``, ``num_frames`` or ``layout`` than asked.
    """
    call = f"block(channels={channels}, num_frames={num_frames}, layout={layout!r}) for stage {stage!r}"
    built = block(channels=channels, num_frames=num_frames, layout=layout)
    if not isinstance(built, ClipBlock):
        raise TypeError(f"{call} must return a ClipBlock (see lstrl_layers.ClipBlock), got {got(built)}")
    asked = {"channels": channels, "num_frames": num_frames, "layout": layout}
    differing = [
        f"{key}={getattr(built, key)!r}" for key, value in asked.items() if getattr(built, key) != value
    ]
    if differing:
        raise ValueError(
            f"{call} returned a {type(built).__name__} with {', '.join(differing)}: a block must take the "
            f"channels, num_frames and layout it is built with"
        )
    return built.to(device=out.device, dtype=out.dtype if out.is_floating_point() else None)
