"""Bi-direction Motion Estimator (BME), LSTRL paper §3.2, Eq. 4-6."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from einops import rearrange, reduce
from torch import Tensor, nn
from torch.nn import functional as F

from .._checks import check_bool, check_float, got
from .base import ClipBlock, Maps, reduced_channels

_DIRECTIONS = {"forward": ("Mf", 1), "backward": ("Mb", -1)}  # map name, offset of the neighbouring frame
_MODES = ("global", "local")
_EDGES = ("zero", "replicate")
# zero_init: υ's bias at construction. Positive, so that every position starts in ReLU's linear part.
_IDENTITY_BIAS = 1e-6


def _neighbours(seq: Tensor, offset: int, edge: str) -> Tensor:
    """Frame ``t + offset`` for every frame ``t`` of ``seq`` ``(B, T, C, H, W)``, padded at the clip edge.

    ``edge="zero"``: a frame without that neighbour gets zeros; ``"replicate"``: it gets itself. Written as
    one gather of ``T`` indices (no ``T - 1``-frame slices), so ``T`` stays one symbol when exported with a
    dynamic clip length, and ``T = 1`` (no neighbour at all) needs no special case.
    """
    num_frames = seq.shape[1]
    index = torch.arange(num_frames, device=seq.device) + offset  # t + offset, out of [0, T) at an edge
    neighbour = seq.index_select(1, index.clamp(0, num_frames - 1))  # the frame itself at an edge
    if edge == "replicate":
        return neighbour
    inside = rearrange((index >= 0) & (index < num_frames), "t -> 1 t 1 1 1")
    return neighbour * inside  # zeros where the neighbour does not exist


class _Upsilon(nn.Conv2d):
    """υ of Eq. 6, a ``1x1`` convolution over ``[M^f, M^b]``; given ``delta`` (``antisymmetric=True``), with
    the weights ``υ + [δ, -δ]``, so that hooks and MAC counts see one convolution either way."""

    def forward(self, maps: Tensor, delta: Tensor | None = None) -> Tensor:
        if delta is None:
            return super().forward(maps)
        return F.conv2d(maps, self.weight + torch.cat([delta, -delta], dim=1), self.bias)


class BME(ClipBlock):
    r"""Bi-direction Motion Estimator: each frame's global feature times its neighbours' local features.

    With :math:`F_t^g = \mathrm{GAP}(F_t)`, the block computes
    :math:`M^f = \phi(F_t^g) \odot \psi(F_{t+1})` (Eq. 4), :math:`M^b = \phi(F_t^g) \odot \psi(F_{t-1})`
    (Eq. 5), both broadcast over ``H*W``, and :math:`F^m_t = \mathrm{ReLU}(\upsilon([M^f, M^b]))` (Eq. 6), and
    returns ``x + F^m``. :math:`\psi` is applied once per frame and the result shifted in time, which gives
    the same numbers as two :math:`\psi` passes (one on :math:`F_{t+1}`, one on :math:`F_{t-1}`) for half of
    :math:`\psi`'s multiply-adds.

    Args:
        channels: ``C``, channels of the input feature map.
        num_frames: ``T``, frames per clip for ``(B*T, C, H, W)`` inputs (a plain, settable attribute).
        reduction: :math:`\phi` and :math:`\psi` reduce ``C`` to ``C // reduction`` channels (paper: 2).
        directions: ``("forward", "backward")`` (paper) or a single direction (Table 5, "single-direction").
        mode: ``"global"`` (paper, global-to-local: :math:`\phi` on the frame's GAP) or ``"local"``
            (Table 5's local-to-local variant). Our reading of the latter: :math:`\phi` runs on the local
            features :math:`F_t` instead of :math:`F_t^g`, and the product is taken between co-located
            positions, :math:`\phi(F_t)(p) \odot \psi(F_{t\pm1})(p)`, so shapes and parameters are unchanged.
            (An all-pairs ``HW x HW`` correlation is another reading, but the paper gives no way to map it
            back to :math:`\upsilon`'s ``C`` input channels.)
        edge: the missing neighbour at a clip's edge (no ``t-1`` at the first frame, no ``t+1`` at the last):
            ``"zero"`` (default: no neighbour, no motion, like a zero-padded temporal shift, so :math:`M^b` of
            the first frame and :math:`M^f` of the last are zero) or ``"replicate"`` (the frame itself).
        act_layer: activation after :math:`\upsilon`, a module class or any callable that returns a module
            (paper: ReLU), e.g. ``functools.partial(nn.LeakyReLU, 0.1)``.
        zero_init: start as the identity, to within ``1e-6``, and still learn as fast as the paper's block
            (default). :math:`\upsilon`'s weights start at zero and its bias at ``1e-6``, so at construction
            :math:`F^m = \mathrm{ReLU}(10^{-6}) = 10^{-6}` in every channel and position and the block returns
            ``x + 1e-6``. The ReLU after :math:`\upsilon` rules out an exact identity that trains: a
            pre-activation of exactly zero passes no gradient, and a zero scale after the ReLU (LayerScale)
            passes none to :math:`\phi`, :math:`\psi`, :math:`\upsilon` until the scale has grown, which
            in ``benchmarks/ablation.py``-style runs left BME no better than the baseline after 300 steps.
            With the tiny positive bias every position starts in the ReLU's linear part, :math:`\upsilon`
            receives its full gradient from the first step and :math:`\phi`, :math:`\psi` from the second.
            ``False``: PyTorch's default initialization of every convolution (the paper's block, not the
            identity). The parameters are the paper's in both cases.
        ls_init_value: a learnable scale per channel on the branch (LayerScale, as in CaiT and ConvNeXt),
            starting at this value: the block returns :math:`x + \gamma \odot F^m`. ``None`` (default): no
            scale, the paper's block. With a scale the block starts near the identity through
            :math:`\gamma` (:math:`F^m` times ``ls_init_value``) and :math:`\phi`, :math:`\psi`,
            :math:`\upsilon` keep PyTorch's default initialization, so the two directions differ from the
            first step (with :math:`\upsilon` zero they start alike and some runs learn the direction
            late) while what BME adds to the features grows only as far as :math:`\gamma` does. ``zero_init``
            must stay ``True`` (the scale is the start). Adds ``C`` parameters.
        antisymmetric: give the part of :math:`\upsilon` that tells the two directions apart its own
            parameter: :math:`F^m = \mathrm{ReLU}(\upsilon([M^f, M^b]) + \delta(M^f - M^b))`, with
            :math:`\delta` a ``1x1`` convolution ``C // reduction -> C`` without bias that starts at zero.
            The block computes the same family of functions as the paper's (:math:`\delta` adds to
            :math:`\upsilon`'s forward half and subtracts from its backward half, which is how it is
            applied: no extra multiply-add), so at the start it is the block without it; what changes is
            training, where an optimizer can move :math:`\delta` at its own rate
            (``TrainSettings.direction_lr_factor``) without moving the rest of the block faster. Needs both
            directions. Adds ``C * C // reduction`` parameters.
        layout: how a 5-D input is read: ``"BTCHW"`` (default) or ``"BCTHW"`` (3D CNNs, video libraries).
        device: of the parameters (e.g. ``"meta"`` to build without allocating).
        dtype: of the parameters.

    Shape:
        - Input: ``(B*T, C, H, W)`` with the ``T`` frames of each clip contiguous, or clips
          ``(B, T, C, H, W)`` (``layout="BCTHW"``: ``(B, C, T, H, W)``).
        - Output: same shape as the input.
        - Maps (``return_maps=True``): ``"Mf"``, ``"Mb"`` (the selected directions), each
          ``(B, T, C // reduction, H, W)`` whatever the input layout.

    Example:
        >>> bme = BME(channels=64, num_frames=4)
        >>> bme(torch.randn(2, 4, 64, 8, 4)).shape
        torch.Size([2, 4, 64, 8, 4])
    """

    def __init__(
        self,
        channels: int,
        num_frames: int,
        reduction: int = 2,
        directions: Sequence[str] = ("forward", "backward"),
        mode: str = "global",
        edge: str = "zero",
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        zero_init: bool = True,
        ls_init_value: float | None = None,
        antisymmetric: bool = False,
        layout: str = "BTCHW",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, num_frames, layout)
        reduced = reduced_channels(channels, reduction)
        directions = (directions,) if isinstance(directions, str) else tuple(directions)
        if (
            not directions
            or len(set(directions)) != len(directions)
            or not set(directions) <= set(_DIRECTIONS)
        ):
            raise ValueError(
                "directions must be a non-empty subset of ('forward', 'backward') without repeats, "
                f"got {directions!r}"
            )
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if edge not in _EDGES:
            raise ValueError(f"edge must be one of {_EDGES}, got {edge!r}")
        check_bool("zero_init", zero_init)
        if ls_init_value is not None:
            positive = "None or a float > 0"
            ls_init_value = check_float("ls_init_value", ls_init_value, positive, 0.0, low_inclusive=False)
            if not zero_init:
                raise ValueError(
                    f"ls_init_value={ls_init_value!r} sets BME's start (the scale gamma, the convolutions at "
                    "PyTorch's default), so zero_init=False would change nothing: leave zero_init=True, or "
                    "ls_init_value=None for the paper's block"
                )
        check_bool("antisymmetric", antisymmetric)
        if antisymmetric and len(directions) != 2:
            raise ValueError(
                f"antisymmetric=True adds a term on the difference of the two directions, so it needs both: "
                f"directions=('forward', 'backward'), got directions={directions!r}"
            )
        self.directions = tuple(d for d in _DIRECTIONS if d in directions)
        self.mode = mode
        self.edge = edge
        self.zero_init = zero_init
        self.ls_init_value = ls_init_value
        self.phi = nn.Conv2d(channels, reduced, 1, device=device, dtype=dtype)  # φ: C -> C/2
        self.psi = nn.Conv2d(channels, reduced, 1, device=device, dtype=dtype)  # ψ: C -> C/2
        self.upsilon = _Upsilon(len(self.directions) * reduced, channels, 1, device=device, dtype=dtype)  # υ
        if isinstance(act_layer, nn.Module) or not callable(act_layer):
            raise TypeError(
                f"act_layer must be a module class or a callable that returns a module (nn.ReLU, not "
                f"nn.ReLU()), got {got(act_layer)}"
            )
        self.act = act_layer()
        if not isinstance(self.act, nn.Module):
            raise TypeError(f"act_layer() must return an nn.Module, got {got(self.act)}")
        self.gamma: nn.Parameter | None = None  # γ of LayerScale, one per channel
        if ls_init_value is not None:
            self.gamma = nn.Parameter(torch.empty(channels, device=device, dtype=dtype))
        self.antisymmetric = antisymmetric
        self.delta: nn.Parameter | None = None  # δ: the weights on M^f - M^b, C/2 -> C, in υ's layout
        if antisymmetric:
            self.delta = nn.Parameter(torch.empty(channels, reduced, 1, 1, device=device, dtype=dtype))
        self.init_identity()

    def init_identity(self) -> None:
        r"""With ``ls_init_value``, set :math:`\gamma` to it; else, with ``zero_init``, zero
        :math:`\upsilon`'s weights and set its bias to ``1e-6`` (see above). :math:`\delta`
        (``antisymmetric``) starts at zero."""
        if self.delta is not None:
            nn.init.zeros_(self.delta)
        if self.gamma is not None:
            nn.init.constant_(self.gamma, self.ls_init_value)  # type: ignore[arg-type]
        elif self.zero_init:
            nn.init.zeros_(self.upsilon.weight)  # F^m = act(υ bias) at construction
            nn.init.constant_(self.upsilon.bias, _IDENTITY_BIAS)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_frames={self.num_frames}, directions={self.directions}, "
            f"mode={self.mode!r}, edge={self.edge!r}, zero_init={self.zero_init}, "
            f"ls_init_value={self.ls_init_value}, antisymmetric={self.antisymmetric}, layout={self.layout!r}"
        )

    def branch(self, frames: Tensor, num_frames: int, return_maps: bool) -> tuple[Tensor, Maps]:
        """:math:`F^m` of Eq. 4-6, and the motion maps ``"Mf"``, ``"Mb"`` where asked (see the class)."""
        if self.training and torch.is_grad_enabled() and isinstance(num_frames, int) and num_frames == 1:
            warnings.warn(
                "BME is training on clips of T=1 frame, which have no neighbour: its motion is zero, so "
                "phi and psi get no gradient (a 3D CNN's stage that has reduced T to 1, or num_frames=1); "
                "place BME where clips have T >= 2",
                stacklevel=4,
            )
        if self.mode == "global":
            query = self.phi(reduce(frames, "n c h w -> n c 1 1", "mean"))  # φ(F_t^g)
        else:
            query = self.phi(frames)  # φ(F_t), local-to-local variant
        query = rearrange(query, "(b t) c h w -> b t c h w", t=num_frames)
        psi = self.psi(frames)  # ψ(F_t), once per frame; the neighbours below are shifts of it
        local = rearrange(psi, "(b t) c h w -> b t c h w", t=num_frames)
        motions = {  # Mf = φ(F_t^g) ⊙ ψ(F_{t+1}) (Eq. 4), Mb = φ(F_t^g) ⊙ ψ(F_{t-1}) (Eq. 5)
            name: query * _neighbours(local, offset, self.edge)
            for name, offset in (_DIRECTIONS[d] for d in self.directions)
        }
        stacked = rearrange(torch.cat(list(motions.values()), dim=2), "b t c h w -> (b t) c h w")
        # F^m = ReLU(υ([Mf, Mb])), Eq. 6; antisymmetric: ReLU(υ([Mf, Mb]) + δ(Mf - Mb)), δ folded into υ
        motion = self.act(self.upsilon(stacked, self.delta))
        if self.gamma is not None:
            motion = motion * rearrange(self.gamma, "c -> c 1 1")  # γ ⊙ F^m (LayerScale)
        return motion, (motions if return_maps else {})
