"""What the training loop and the evaluation share: progress bars and mixed precision."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import torch

from .distributed import World
from .settings import TrainSettings

__all__ = ["autocast", "progress"]

T_co = TypeVar("T_co")


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
    device_type = "cuda" if world.device.startswith("cuda") else "cpu"
    return torch.autocast(device_type, torch.bfloat16, enabled=settings.amp)
