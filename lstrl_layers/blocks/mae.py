"""Multi-granularity Appearance Extractor (MAE), LSTRL paper §3.1, Eq. 1-3."""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import Tensor, nn

from .._checks import check_bool, check_float, got
from .base import ClipBlock, Maps, reduced_channels

# E(.) of Eq. 2: extend D^i X1 (rows of granularity i) back to every position of the clip, frames layout.
_EXTEND = {
    1: "b (t h w) c -> (b t) c h w",  # A1: already one row per position
    2: "b (h w) c -> (b t) c h w",  # A2: one row per spatial position, replicated over the T frames
    3: "b t c -> (b t) c h w",  # A3: one row per frame, replicated over its H*W positions
    4: "b 1 c -> (b t) c h w",  # A4: one row per clip, replicated everywhere
}


def _check_granularities(granularities: object) -> tuple[int, ...]:
    """A non-empty subset of ``(1, 2, 3, 4)`` without repeats, sorted."""
    expected = "a non-empty subset of (1, 2, 3, 4) without repeats"
    if isinstance(granularities, (str, bytes)) or not isinstance(granularities, Iterable):
        raise TypeError(f"granularities must be {expected}, got {got(granularities)}")
    values = tuple(granularities)
    if not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in values):
        raise TypeError(f"granularities must be {expected} (ints), got {values!r}")
    values = tuple(int(i) for i in values)
    if not values or len(set(values)) != len(values) or not set(values) <= set(_EXTEND):
        raise ValueError(f"granularities must be {expected}, got {values!r}")
    return tuple(sorted(values))


class MAE(ClipBlock):
    r"""Multi-granularity Appearance Extractor: attention over all frames of a clip at four granularities.

    With :math:`X_1 = \omega_1(F)` reshaped to ``(T*H*W, C/4)`` and its averages :math:`X_2` (over time,
    ``H*W`` rows), :math:`X_3` (over space, ``T`` rows) and :math:`X_4` (over both, one row), the block
    computes :math:`D^i = \mathrm{softmax}(X_i X_1^\top)` (Eq. 1), :math:`A_i = E(D^i X_1)` (Eq. 2) and
    :math:`F^a = \omega_2([A_1, A_2, A_3, A_4])` (Eq. 3), and returns ``x + F^a``.

    The default path never materializes the ``(T*H*W) x (T*H*W)`` matrix :math:`D^1`: the four query sets
    share keys and values (:math:`X_1`), so they are concatenated and attended in one
    :func:`torch.nn.functional.scaled_dot_product_attention` call (flash / memory-efficient kernels); on the
    CPU, half-precision inputs (autocast) attend in float32, whose backward pass is faster there.
    ``return_maps=True`` takes the paper-literal path instead, which materializes each :math:`D^i` in float32
    (autocast disabled) and returns them; both paths agree to float32 round-off.

    Args:
        channels: ``C``, channels of the input feature map.
        num_frames: ``T``, frames per clip for ``(B*T, C, H, W)`` inputs. A plain attribute: it may be changed
            between calls (e.g. longer clips at test time). 5-D inputs carry their own ``T``.
        reduction: :math:`\omega_1` reduces ``C`` to ``C // reduction`` channels (paper: 4).
        granularities: which of :math:`A_1..A_4` to compute and concatenate (paper: all four;
            Table 4 drops one).
            :math:`\omega_2` maps ``len(granularities) * (C // reduction)`` channels back to ``C``.
        scale: factor applied to the logits :math:`X_i X_1^\top` before the softmax. The paper has no scaling
            (``1.0``, the default); ``(C // reduction) ** -0.5`` gives the usual scaled dot product.
        zero_init: zero :math:`\omega_2` (weight and bias) so the block is the identity at construction, as in
            non-local blocks; gradients still reach :math:`\omega_2` through :math:`[A_1..A_4]`.
        layout: how a 5-D input is read: ``"BTCHW"`` (default) or ``"BCTHW"`` (3D CNNs, video libraries).
        device: of the parameters (e.g. ``"meta"`` to build without allocating).
        dtype: of the parameters.

    Shape:
        - Input: ``(B*T, C, H, W)`` with the ``T`` frames of each clip contiguous, or clips
          ``(B, T, C, H, W)`` (``layout="BCTHW"``: ``(B, C, T, H, W)``).
        - Output: same shape as the input.
        - Maps (``return_maps=True``): ``"D1"`` ``(B, T*H*W, T*H*W)``, ``"D2"`` ``(B, H*W, T*H*W)``,
          ``"D3"`` ``(B, T, T*H*W)``, ``"D4"`` ``(B, 1, T*H*W)`` (only the selected granularities). Columns
          (keys) are ordered ``(t h w)``; rows of ``D2`` are ``(h w)``. Always float32.

    Example:
        >>> mae = MAE(channels=64, num_frames=4)
        >>> mae(torch.randn(2 * 4, 64, 8, 4)).shape
        torch.Size([8, 64, 8, 4])
    """

    def __init__(
        self,
        channels: int,
        num_frames: int,
        reduction: int = 4,
        granularities: Sequence[int] = (1, 2, 3, 4),
        scale: float = 1.0,
        zero_init: bool = True,
        layout: str = "BTCHW",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, num_frames, layout)
        reduced = reduced_channels(channels, reduction)
        self.granularities = _check_granularities(granularities)
        self.scale = check_float("scale", scale, "a positive, finite float", low=0.0, low_inclusive=False)
        self.zero_init = check_bool("zero_init", zero_init)
        self.omega1 = nn.Conv2d(channels, reduced, 1, device=device, dtype=dtype)  # ω1: C -> C/4
        self.omega2 = nn.Conv2d(  # ω2: [A_1..A_4] -> C
            len(self.granularities) * reduced, channels, 1, device=device, dtype=dtype
        )
        self.init_identity()

    def init_identity(self) -> None:
        r"""With ``zero_init``, zero :math:`\omega_2` (weight and bias): :math:`F^a = 0`."""
        if self.zero_init:
            for param in self.omega2.parameters():  # weight and bias: F^a = 0 at construction
                nn.init.zeros_(param)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_frames={self.num_frames}, granularities={self.granularities}, "
            f"scale={self.scale}, layout={self.layout!r}"
        )

    def branch(self, frames: Tensor, num_frames: int, return_maps: bool) -> tuple[Tensor, Maps]:
        """:math:`F^a` of Eq. 1-3, and the maps :math:`D^i` where asked (see the class)."""
        height, width = frames.shape[-2:]
        sizes = dict(t=num_frames, h=height, w=width)
        x1 = rearrange(self.omega1(frames), "(b t) c h w -> b (t h w) c", t=num_frames)  # X1: (B, THW, C/4)
        queries = {
            1: x1,
            2: reduce(x1, "b (t h w) c -> b (h w) c", "mean", **sizes),  # X2: temporal average, HW rows
            3: reduce(x1, "b (t h w) c -> b t c", "mean", **sizes),  # X3: spatial average, T rows
            4: reduce(x1, "b (t h w) c -> b 1 c", "mean", **sizes),  # X4: global average, one row
        }
        queries = {i: queries[i] for i in self.granularities}
        if return_maps:
            attended, maps = self._attend_materialized(queries, x1)
        else:
            attended, maps = self._attend_fused(queries, x1), {}
        # A_i = E(D^i X1), Eq. 2
        appearances = [repeat(attended[i], _EXTEND[i], **sizes) for i in self.granularities]
        return self.omega2(torch.cat(appearances, dim=1)), maps  # F^a = ω2([A1, A2, A3, A4])

    def _attend_fused(self, queries: dict[int, Tensor], x1: Tensor) -> dict[int, Tensor]:
        """D^i X1 for all i with one attention call; never materializes D^i.

        Half-precision inputs on the CPU attend in float32 (autocast off for the call): PyTorch's CPU
        attention runs its backward pass several times slower in bfloat16 than in float32.
        """
        lengths = [q.shape[1] for q in queries.values()]
        query = rearrange(torch.cat(list(queries.values()), dim=1), "b n c -> b 1 n c")
        key_value = rearrange(x1, "b n c -> b 1 n c")
        in_float32 = x1.device.type == "cpu" and x1.dtype in (torch.float16, torch.bfloat16)
        with torch.autocast("cpu", enabled=False) if in_float32 else contextlib.nullcontext():
            dtype = torch.float32 if in_float32 else x1.dtype
            out = F.scaled_dot_product_attention(
                query.to(dtype), key_value.to(dtype), key_value.to(dtype), scale=self.scale
            )
        out = rearrange(out.to(x1.dtype), "b 1 n c -> b n c")
        return dict(zip(queries, out.split(lengths, dim=1)))

    def _attend_materialized(self, queries: dict[int, Tensor], x1: Tensor) -> tuple[dict[int, Tensor], Maps]:
        """Paper-literal Eq. 1-2 in float32: D^i = softmax(X_i X1^T), then D^i X1."""
        attended, maps = {}, {}
        with torch.autocast(device_type=x1.device.type, enabled=False):
            keys = x1.float() if x1.dtype in (torch.float16, torch.bfloat16) else x1
            for i, x_i in queries.items():
                logits = torch.einsum("bqc,bkc->bqk", x_i.to(keys.dtype), keys)  # X_i X1^T
                if self.scale != 1.0:
                    logits = logits * self.scale
                maps[f"D{i}"] = logits.softmax(dim=-1)  # D^i, Eq. 1
                attended[i] = (maps[f"D{i}"] @ keys).to(x1.dtype)  # D^i X1, Eq. 2 before E
        return attended, maps
