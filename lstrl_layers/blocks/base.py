"""``ClipBlock``: what every LSTRL block shares (layouts, validation, residual, init), written once."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Union, overload

import torch
from einops import rearrange
from torch import Tensor, nn

from .._checks import check_bool, check_int, got

Maps = dict[str, Tensor]
BlockOutput = Union[Tensor, tuple[Tensor, Maps]]

TORCHSCRIPT_UNSUPPORTED = (
    "TorchScript (torch.jit.script) is not supported by the LSTRL blocks: they are written with einops "
    "patterns and run from forward hooks in injected models, which TorchScript cannot compile. Use "
    "torch.compile for speed, and torch.export or torch.onnx.export(..., dynamo=True) to deploy "
    "(torch.jit.trace works too)"
)


# How a 5-D tensor is read (einops axes of each clip layout); 4-D tensors are always frames (B*T, C, H, W)
# with the frames of a clip contiguous.
_PATTERNS = {"BTCHW": "b t c h w", "BCTHW": "b c t h w"}
LAYOUTS = tuple(_PATTERNS)


def check_layout(layout: object) -> str:
    """``layout`` if it is one of :data:`LAYOUTS`."""
    if not isinstance(layout, str):
        raise TypeError(f"layout must be one of {LAYOUTS}, got {got(layout)}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def reduced_channels(channels: int, reduction: int) -> int:
    """``channels // reduction``, the width of a block's reduced projections, validated."""
    check_int("reduction", reduction)
    if channels // reduction < 1:
        raise ValueError(f"reduction must be <= channels ({channels}), got {reduction!r}")
    return channels // reduction


class ClipBlock(nn.Module):
    """Base of the residual blocks: validates the input, handles the clip layouts, adds the residual.

    Inputs are frames ``(B*T, C, H, W)`` (the ``T = num_frames`` frames of each clip contiguous, as a 2D CNN
    sees them) or clips, 5-D, read as ``layout`` says: ``"BTCHW"`` (``(B, T, C, H, W)``, default) or
    ``"BCTHW"`` (``(B, C, T, H, W)``, the layout of 3D CNNs and video libraries). A 5-D input carries its own
    ``T``; the output has the input's shape and layout.

    It is the type of "any temporal block" (``isinstance(m, ClipBlock)`` finds :class:`MAE`, :class:`BME`,
    :class:`LSTRLBlock` and blocks of your own in a model), and the base of a block of your own: implement
    :meth:`branch`, and :meth:`init_identity` if the block should start as the identity (and
    :meth:`reset_parameters` keep it so); the output is ``x + branch``, in the input's layout.
    :func:`~lstrl_layers.inject_blocks` puts such a block after stages of any CNN.

    Args:
        channels: ``C``, channels of the input feature map.
        num_frames: ``T``, frames per clip of ``(B*T, C, H, W)`` inputs (a plain, settable attribute).
        layout: how a 5-D input is read: ``"BTCHW"`` (default) or ``"BCTHW"``.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> ClipBlock:
        if getattr(cls.branch, "__isabstractmethod__", False):
            raise TypeError(
                f"{cls.__name__} must implement branch(frames, num_frames, return_maps) -> (branch, maps) "
                f"to be a ClipBlock: it receives the frames (B*T, C, H, W) of B clips and returns the "
                f"residual branch of the same shape and a dict of maps (empty unless return_maps)"
            )
        return super().__new__(cls)

    def __init__(self, channels: int, num_frames: int, layout: str = "BTCHW") -> None:
        super().__init__()
        self.channels = check_int("channels", channels)
        self.num_frames = num_frames
        self.layout = check_layout(layout)

    @property
    def num_frames(self) -> int:
        """Frames per clip used for ``(B*T, C, H, W)`` inputs (5-D inputs carry their own ``T``)."""
        return self._num_frames

    @num_frames.setter
    def num_frames(self, value: int) -> None:
        self._num_frames = check_int("num_frames", value)

    @abstractmethod
    def branch(self, frames: Tensor, num_frames: int, return_maps: bool) -> tuple[Tensor, Maps]:
        """The residual branch: what the block adds to its input (every block implements it).

        Args:
            frames: the frames of ``B`` clips, validated, with the ``T`` frames of each clip contiguous.
            num_frames: ``T``, frames per clip of ``frames`` (read from a 5-D input, else the block's own).
            return_maps: also return the block's intermediate maps (for visualization).

        Returns:
            The branch output, of ``frames``' shape, and a dict of named maps (empty unless ``return_maps``).

        Shape:
            - frames: ``(B*T, C, H, W)``.
            - Output: ``(B*T, C, H, W)``.
        """

    def init_identity(self) -> None:
        """Make the block start as the identity, where it asks for that (e.g. ``zero_init``).

        Called by :meth:`reset_parameters` after the children are initialized again; a block of your own
        zeroes its last layer here (and calls it at the end of its ``__init__``). Does nothing by default.
        """

    def reset_parameters(self) -> None:
        """Initialize the parameters again, as at construction (e.g. after building on ``device="meta"``)."""
        for child in self.children():
            reset = getattr(child, "reset_parameters", None)
            if callable(reset):
                reset()
        self.init_identity()

    def _expected(self) -> str:
        """What the block takes, in words, for error messages (built only when one is raised)."""
        clips = "(B, C={c}, T, H, W)" if self.layout == "BCTHW" else "(B, T, C={c}, H, W)"
        return (
            f"{type(self).__name__} expects frames (B*T, C={self.channels}, H, W) with the frames of each "
            f"clip contiguous (T = num_frames = {self.num_frames}), or clips {clips.format(c=self.channels)} "
            f"(layout={self.layout!r})"
        )

    def _split_layout(self, x: Tensor) -> tuple[Tensor, int]:
        """Validate ``x`` and return it as frames ``(B*T, C, H, W)`` together with ``T``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{self._expected()}; got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(
                f"{self._expected()} in a floating-point dtype; got {x.dtype} (shape {tuple(x.shape)})"
            )
        if x.ndim not in (4, 5):
            raise ValueError(f"{self._expected()}; got a {x.ndim}-D tensor of shape {tuple(x.shape)}")
        param = next(self.parameters(), None)
        if param is not None and x.device != param.device:
            raise ValueError(
                f"{type(self).__name__}'s parameters are on {param.device}, got an input on {x.device}: move "
                f"one to the other's device (block.to(x.device))"
            )
        if param is not None and x.dtype != param.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(
                f"{type(self).__name__}'s parameters are {param.dtype}, got an input of {x.dtype}: convert "
                f"one to the other (block.to({x.dtype}), x.to({param.dtype})), or run under torch.autocast"
            )
        channel_dim = 1 if x.ndim == 4 or self.layout == "BCTHW" else 2
        if x.shape[channel_dim] != self.channels:
            raise ValueError(
                f"{self._expected()}; got {x.shape[channel_dim]} channels in shape {tuple(x.shape)}"
            )
        if x.shape[-2] < 1 or x.shape[-1] < 1:
            empty = f"got an empty map in shape {tuple(x.shape)}"
            raise ValueError(f"{self._expected()} with H, W >= 1; {empty}")
        if x.ndim == 5:
            num_frames = x.shape[3 - channel_dim]
            if num_frames < 1:
                raise ValueError(f"{self._expected()}; got T = 0 frames in shape {tuple(x.shape)}")
            return rearrange(x, f"{_PATTERNS[self.layout]} -> (b t) c h w"), num_frames
        if x.shape[0] % self.num_frames != 0:
            raise ValueError(
                f"{self._expected()}; got a batch of {x.shape[0]} frames, which is not divisible by "
                f"num_frames={self.num_frames} (shape {tuple(x.shape)})"
            )
        return x, self.num_frames

    @overload
    def forward(self, x: Tensor) -> Tensor: ...

    @overload
    def forward(self, x: Tensor, return_maps: bool) -> BlockOutput: ...

    def forward(self, x: Tensor, return_maps: bool = False) -> BlockOutput:
        if torch.jit.is_tracing() and isinstance(return_maps, Tensor) and return_maps.dtype == torch.bool:
            return_maps = bool(return_maps)  # the legacy ONNX exporter traces defaults
        check_bool("return_maps", return_maps)
        frames, num_frames = self._split_layout(x)
        branch, maps = self.branch(frames, num_frames, return_maps)
        out = frames + branch
        if x.ndim == 5:
            out = rearrange(out, f"(b t) c h w -> {_PATTERNS[self.layout]}", t=num_frames)
        return (out, maps) if return_maps else out

    def __prepare_scriptable__(self) -> nn.Module:
        """Called by ``torch.jit.script`` before compiling: refuse with the alternatives."""
        raise NotImplementedError(f"{type(self).__name__}: {TORCHSCRIPT_UNSUPPORTED}")
