"""LSTRL block: MAE and BME side by side on the same input (paper Fig. 2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._checks import check_branches
from .base import ClipBlock, Maps
from .bme import BME
from .mae import MAE

# arguments LSTRLBlock gives both branches itself
_SHARED = ("channels", "num_frames", "zero_init", "layout", "device", "dtype")


class LSTRLBlock(ClipBlock):
    r"""Long short-term block of the paper's Fig. 2: ``x + F^a(x) + F^m(x)``.

    :math:`F^a` is the :class:`MAE` branch (long-term appearance) and :math:`F^m` the :class:`BME` branch
    (short-term motion); both read the same ``x`` and their outputs are added to it.

    Args:
        channels: ``C``, channels of the input feature map.
        num_frames: ``T``, frames per clip for ``(B*T, C, H, W)`` inputs. Setting it also sets it on the
            branches.
        mae: include the MAE branch.
        bme: include the BME branch.
        zero_init: identity at construction (passed to both branches).
        layout: how a 5-D input is read: ``"BTCHW"`` (default) or ``"BCTHW"`` (3D CNNs, video libraries).
        device: of the parameters (e.g. ``"meta"`` to build without allocating).
        dtype: of the parameters.
        mae_kwargs: further keyword arguments of :class:`MAE` (``reduction``, ``granularities``, ``scale``).
        bme_kwargs: further keyword arguments of :class:`BME` (``reduction``, ``directions``, ``mode``,
            ``edge``, ``act_layer``).

    Shape:
        - Input: ``(B*T, C, H, W)`` with the ``T`` frames of each clip contiguous, or clips
          ``(B, T, C, H, W)`` (``layout="BCTHW"``: ``(B, C, T, H, W)``).
        - Output: same shape as the input.
        - Maps (``return_maps=True``): those of the enabled branches (``"D1".."D4"``, ``"Mf"``, ``"Mb"``).
    """

    def __init__(
        self,
        channels: int,
        num_frames: int,
        mae: bool = True,
        bme: bool = True,
        zero_init: bool = True,
        mae_kwargs: Mapping[str, Any] | None = None,
        bme_kwargs: Mapping[str, Any] | None = None,
        layout: str = "BTCHW",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_branches("LSTRLBlock", mae, bme, zero_init, mae_kwargs, bme_kwargs)
        for name, kwargs in (("mae", mae_kwargs), ("bme", bme_kwargs)):
            reserved = sorted(set(kwargs or {}) & set(_SHARED))
            if reserved:
                raise ValueError(
                    f"{name}_kwargs must not set {reserved} (LSTRLBlock passes {', '.join(_SHARED)} to both "
                    f"branches), got {dict(kwargs or {})!r}"
                )
        super().__init__(channels, num_frames, layout)
        shared: dict[str, Any] = dict(zero_init=zero_init, layout=layout, device=device, dtype=dtype)
        self.mae = MAE(channels, num_frames, **shared, **(mae_kwargs or {})) if mae else None
        self.bme = BME(channels, num_frames, **shared, **(bme_kwargs or {})) if bme else None

    @ClipBlock.num_frames.setter  # type: ignore[attr-defined]
    def num_frames(self, value: int) -> None:
        ClipBlock.num_frames.fset(self, value)  # type: ignore[attr-defined]
        for branch in (getattr(self, "mae", None), getattr(self, "bme", None)):
            if branch is not None:
                branch.num_frames = value

    def _branch(self, frames: Tensor, num_frames: int, return_maps: bool) -> tuple[Tensor, Maps]:
        results = [b._branch(frames, num_frames, return_maps) for b in (self.mae, self.bme) if b is not None]
        branch = results[0][0]
        for other, _ in results[1:]:
            branch = branch + other  # F^a + F^m: both branches read the same x
        return branch, {name: m for _, maps in results for name, m in maps.items()}
