"""What the benchmark sections measure: the model's injected stages, and the reference paths its blocks
are compared with (MAE through its attention maps, BME with two ψ passes as Eq. 4-5 are written)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange, reduce
from torch import Tensor, nn

from lstrl_layers import BME, MAE, LSTRLBlock, VideoReIDNet

NUM_CLASSES = 625  # MARS training identities, the classifier of the paper's Table 3
StageShape = tuple[str, int, int, int]  # (stage name, C, H, W) at the input of an injected block


def stage_shapes(model_name: str, stages: Sequence[int | str], size: Sequence[int]) -> list[StageShape]:
    """``(stage name, C, H, W)`` at the input of every injected block, from one frame through the model.

    Raises:
        ValueError, RuntimeError: timm or the library cannot build the model or run a frame of ``size``.
    """
    height, width = size
    model = VideoReIDNet(model_name, NUM_CLASSES, stages=stages, num_frames=1, last_stride=1).eval()
    shapes: list[StageShape] = []
    for name, module in model.named_modules():
        if isinstance(module, LSTRLBlock):
            module.register_forward_pre_hook(
                lambda _m, inputs, name=name: shapes.append((name.rsplit(".", 1)[-1], *inputs[0].shape[-3:]))
            )
    with torch.no_grad():
        model(torch.zeros(1, 1, 3, height, width))
    return shapes


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class MAEWithMaps(nn.Module):
    """MAE through its materializing path (``return_maps=True``, every D^i formed); returns the output."""

    def __init__(self, mae: MAE) -> None:
        super().__init__()
        self.mae = mae

    def forward(self, frames: Tensor) -> Tensor:
        out, _ = self.mae(frames, return_maps=True)
        return out


class TwoPsiBME(nn.Module):
    r"""Reference: BME as Eq. 4-6 are written, with ψ applied to :math:`F_{t+1}` and, separately, to
    :math:`F_{t-1}`, and :math:`\phi(F_t^g)` computed in each equation.

    Shares the parameters and the options of ``bme`` (``directions``, ``mode``, ``edge``), so its output and
    maps equal BME's; only the cost differs. Written from the paper, not from ``lstrl_layers/bme.py`` (which
    runs ψ once per frame and shifts the result): the tests check BME against it. A frame at a clip edge gets
    ψ of a zero frame, masked to zero (``edge="zero"``: no neighbour, no motion), or ψ of itself
    (``"replicate"``), so ψ runs on ``T`` frames per direction and clip, ``2 T`` in the paper's configuration,
    as the paper counts. ``mode="local"`` (Table 5's local-to-local variant) applies φ to :math:`F_t` instead
    of :math:`F_t^g`.

    Shape:
        - Input: ``(B*T, C, H, W)``, ``T = bme.num_frames``.
        - Output: same shape; :meth:`with_maps` also returns ``"Mf"`` / ``"Mb"`` (the directions of ``bme``),
          each ``(B, T, C // reduction, H, W)``, as ``bme(..., return_maps=True)``.
    """

    def __init__(self, bme: BME) -> None:
        super().__init__()
        self.bme = bme

    def forward(self, frames: Tensor) -> Tensor:
        return self.with_maps(frames)[0]

    def with_maps(self, frames: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The output and the motion maps (``Mf`` of Eq. 4, ``Mb`` of Eq. 5)."""
        bme, num_frames = self.bme, self.bme.num_frames
        clips = rearrange(frames, "(b t) c h w -> b t c h w", t=num_frames)
        # F_t^g, or F_t in the local-to-local variant
        query = reduce(frames, "n c h w -> n c 1 1", "mean") if bme.mode == "global" else frames
        maps = {}
        for direction, name, offset in (("forward", "Mf", 1), ("backward", "Mb", -1)):
            if direction not in bme.directions:
                continue
            # Eq. 4: F_{t+1} (forward), Eq. 5: F_{t-1} (backward); the edge frame has no such neighbour
            edge = clips[:, -1:] if offset == 1 else clips[:, :1]
            missing = edge if bme.edge == "replicate" else torch.zeros_like(edge)
            neighbours = torch.cat(
                [clips[:, 1:], missing] if offset == 1 else [missing, clips[:, :-1]], dim=1
            )
            psi = bme.psi(rearrange(neighbours, "b t c h w -> (b t) c h w"))  # a full ψ pass per direction
            psi = rearrange(psi, "(b t) c h w -> b t c h w", t=num_frames)
            if bme.edge == "zero":
                has_neighbour = torch.ones(num_frames, 1, 1, 1, device=frames.device, dtype=frames.dtype)
                has_neighbour[-1 if offset == 1 else 0] = 0
                psi = psi * has_neighbour
            phi = rearrange(bme.phi(query), "(b t) c h w -> b t c h w", t=num_frames)  # φ(F_t^g) or φ(F_t)
            maps[name] = phi * psi
        stacked = rearrange(torch.cat(list(maps.values()), dim=2), "b t c h w -> (b t) c h w")
        motion = bme.act(bme.upsilon(stacked))  # υ([Mf, Mb]) with ReLU, Eq. 6
        return frames + motion, maps
