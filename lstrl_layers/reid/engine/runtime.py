"""What the training loop and the evaluation share: progress bars, mixed precision and memory format."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import torch
from torch import nn

from .distributed import World
from .settings import TrainSettings

__all__ = ["autocast", "in_memory_format", "progress"]

T_co = TypeVar("T_co")
M = TypeVar("M", bound=nn.Module)


def progress(items: Iterable[T_co], enabled: bool, **kwargs: Any) -> Iterator[T_co]:
    """tqdm if installed and ``enabled``, else the items unchanged."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return iter(tqdm(items, leave=False, dynamic_ncols=True, **kwargs))
    return iter(items)


def autocast(settings: TrainSettings, world: World) -> torch.autocast:
    """bfloat16 autocast on the run's device (CUDA or CPU) when ``settings.amp``, else a no-op."""
    return torch.autocast(torch.device(world.device).type, torch.bfloat16, enabled=settings.amp)


def in_memory_format(model: M, settings: TrainSettings) -> M:
    """``model`` in the channels-last memory format when ``settings.channels_last``, else unchanged."""
    return model.to(memory_format=torch.channels_last) if settings.channels_last else model
