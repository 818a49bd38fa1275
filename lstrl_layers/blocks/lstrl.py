"""LSTRL block: MAE and BME side by side on the same input (paper Fig. 2), and its arguments."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._checks import check_bool, check_optional_mapping, got
from .base import ClipBlock, Maps, check_layout
from .bme import BME
from .mae import MAE

# arguments LSTRLBlock gives both branches itself
_SHARED = ("channels", "num_frames", "zero_init", "layout", "device", "dtype")
_BRANCHES = {"mae": MAE, "bme": BME}


@dataclass(frozen=True)
class LSTRLArgs:
    """The arguments of LSTRL blocks, checked once, where they are given.

    One description for :class:`LSTRLBlock`, :func:`~lstrl_layers.inject_lstrl`,
    :class:`~lstrl_layers.VideoReIDNet` and the training settings. ``mae=False, bme=False`` describes no
    block (a ``VideoReIDNet`` baseline); building a block from it is refused (:meth:`require_branch`).

    Args:
        mae: include the :class:`MAE` branch.
        bme: include the :class:`BME` branch.
        zero_init: blocks start as the identity (passed to both branches).
        mae_kwargs: further :class:`MAE` arguments (``reduction``, ``granularities``, ``scale``); stored as a
            copy, ``{}`` for none. Given only with ``mae=True``.
        bme_kwargs: further :class:`BME` arguments (``reduction``, ``directions``, ``mode``, ``edge``,
            ``act_layer``, ``ls_init_value``); stored as a copy, ``{}`` for none. Given only with
            ``bme=True``.
        layout: how a 5-D input is read: ``"BTCHW"`` (default) or ``"BCTHW"`` (3D CNNs, video libraries).

    Raises:
        TypeError: a flag that is not a bool, keyword arguments that are not a dict with str keys, a layout
            that is not a str.
        ValueError: keyword arguments for a branch that is off, or naming what :class:`LSTRLBlock` passes
            itself (``channels``, ``num_frames``, ``zero_init``, ``layout``, ``device``, ``dtype``) or an
            argument the branch does not have; an unknown layout.

    Example:
        >>> args = LSTRLArgs(bme=False, mae_kwargs=dict(granularities=(1, 4)))
        >>> args.build(channels=64, num_frames=4).mae.granularities
        (1, 4)
    """

    mae: bool = True
    bme: bool = True
    zero_init: bool = True
    mae_kwargs: Mapping[str, Any] | None = None
    bme_kwargs: Mapping[str, Any] | None = None
    layout: str = "BTCHW"

    def __post_init__(self) -> None:
        for name in ("mae", "bme", "zero_init"):
            check_bool(name, getattr(self, name))
        for name, branch in _BRANCHES.items():
            given = check_optional_mapping(f"{name}_kwargs", getattr(self, f"{name}_kwargs"))
            kwargs = dict(given or {})
            if not all(isinstance(key, str) for key in kwargs):
                raise TypeError(f"{name}_kwargs must have argument names (str) as keys, got {got(given)}")
            if kwargs and not getattr(self, name):
                raise ValueError(f"{name}_kwargs={kwargs!r} given but {name}=False")
            reserved = sorted(set(kwargs) & set(_SHARED))
            if reserved:
                raise ValueError(
                    f"{name}_kwargs must not set {reserved} (LSTRLBlock passes {', '.join(_SHARED)} to both "
                    f"branches), got {kwargs!r}"
                )
            known = set(inspect.signature(branch).parameters) - set(_SHARED)
            unknown = sorted(set(kwargs) - known)
            if unknown:
                raise ValueError(
                    f"{name}_kwargs must hold {branch.__name__} arguments ({', '.join(sorted(known))}), got "
                    f"{unknown} in {kwargs!r}"
                )
            object.__setattr__(self, f"{name}_kwargs", kwargs)  # a copy: later changes to `given` stay out
        check_layout(self.layout)

    def require_branch(self, owner: str) -> LSTRLArgs:
        """``self`` if it has a branch to build (``owner`` names the caller in the message).

        Raises:
            ValueError: ``mae=False`` and ``bme=False``.
        """
        if not (self.mae or self.bme):
            raise ValueError(f"{owner} needs at least one branch, got mae=False and bme=False")
        return self

    def build(
        self,
        channels: int,
        num_frames: int,
        layout: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> LSTRLBlock:
        """An :class:`LSTRLBlock` with these arguments: a ``block`` for :func:`~lstrl_layers.inject_blocks`.

        Args:
            channels: ``C``, channels of the input feature map.
            num_frames: ``T``, frames per clip for ``(B*T, C, H, W)`` inputs.
            layout: the block's layout; ``None``: :attr:`layout`.
            device: of the parameters.
            dtype: of the parameters.
        """
        return LSTRLBlock(
            channels, num_frames, mae=self.mae, bme=self.bme, zero_init=self.zero_init,
            mae_kwargs=self.mae_kwargs, bme_kwargs=self.bme_kwargs, layout=self.layout if layout is None
            else layout, device=device, dtype=dtype,
        )  # fmt: skip


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
            ``edge``, ``act_layer``, ``ls_init_value``).

    Shape:
        - Input: ``(B*T, C, H, W)`` with the ``T`` frames of each clip contiguous, or clips
          ``(B, T, C, H, W)`` (``layout="BCTHW"``: ``(B, C, T, H, W)``).
        - Output: same shape as the input.
        - Maps (``return_maps=True``): those of the enabled branches (``"D1".."D4"``, ``"Mf"``, ``"Mb"``).

    Raises:
        TypeError, ValueError: arguments :class:`LSTRLArgs` refuses, or no branch (``mae=bme=False``).
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
        args = LSTRLArgs(mae, bme, zero_init, mae_kwargs, bme_kwargs, layout).require_branch("LSTRLBlock")
        super().__init__(channels, num_frames, layout)
        shared: dict[str, Any] = dict(zero_init=zero_init, layout=layout, device=device, dtype=dtype)
        self.mae = MAE(channels, num_frames, **shared, **(args.mae_kwargs or {})) if mae else None
        self.bme = BME(channels, num_frames, **shared, **(args.bme_kwargs or {})) if bme else None

    @ClipBlock.num_frames.setter  # type: ignore[attr-defined]
    def num_frames(self, value: int) -> None:
        ClipBlock.num_frames.fset(self, value)  # type: ignore[attr-defined]
        for branch in (getattr(self, "mae", None), getattr(self, "bme", None)):
            if branch is not None:
                branch.num_frames = value

    def branch(self, frames: Tensor, num_frames: int, return_maps: bool) -> tuple[Tensor, Maps]:
        """:math:`F^a + F^m`, both read from the same frames, and the maps of both branches where asked."""
        results = [b.branch(frames, num_frames, return_maps) for b in (self.mae, self.bme) if b is not None]
        branch = results[0][0]
        for other, _ in results[1:]:
            branch = branch + other  # F^a + F^m: both branches read the same x
        return branch, {name: m for _, maps in results for name, m in maps.items()}
