"""The paper's equations written out as literally as the code allows, sharing no code with the blocks: what
the tests check MAE (Eq. 1-3) and BME (Eq. 4-6) against. ``benchmarks/flops.py`` measures ``TwoPsiBME`` too,
the cost of BME as the paper writes it."""

from __future__ import annotations

import torch
from einops import rearrange, reduce
from torch import Tensor, nn

from lstrl_layers import BME, MAE

__all__ = ["TwoPsiBME", "naive_mae"]


def naive_mae(mae: MAE, clip: torch.Tensor) -> torch.Tensor:
    """One clip (T, C, H, W) through Eq. 1-3, position by position, no shared code with the module."""
    num_frames, _, height, width = clip.shape
    w1, b1 = mae.omega1.weight[:, :, 0, 0], mae.omega1.bias
    w2, b2 = mae.omega2.weight[:, :, 0, 0], mae.omega2.bias
    positions = [(t, h, w) for t in range(num_frames) for h in range(height) for w in range(width)]
    x1 = torch.stack([w1 @ clip[t, :, h, w] + b1 for t, h, w in positions])  # (THW, C/4), rows (t h w)
    spatial = [(h, w) for h in range(height) for w in range(width)]
    x2 = torch.stack(
        [x1[[positions.index((t, h, w)) for t in range(num_frames)]].mean(0) for h, w in spatial]
    )
    x3 = torch.stack(
        [x1[[positions.index((t, h, w)) for h, w in spatial]].mean(0) for t in range(num_frames)]
    )
    x4 = x1.mean(0, keepdim=True)
    rows = {}
    for i, x_i in zip((1, 2, 3, 4), (x1, x2, x3, x4)):
        rows[i] = torch.softmax(mae.scale * x_i @ x1.T, dim=1) @ x1  # D^i X1
    out = torch.empty_like(clip)
    for n, (t, h, w) in enumerate(positions):
        extended = {1: rows[1][n], 2: rows[2][spatial.index((h, w))], 3: rows[3][t], 4: rows[4][0]}  # E(.)
        features = torch.cat([extended[i] for i in mae.granularities])
        out[t, :, h, w] = clip[t, :, h, w] + w2 @ features + b2
    return out


class TwoPsiBME(nn.Module):
    r"""Reference: BME as Eq. 4-6 are written, with ψ applied to :math:`F_{t+1}` and, separately, to
    :math:`F_{t-1}`, and :math:`\phi(F_t^g)` computed in each equation.

    Shares the parameters and the options of ``bme`` (``directions``, ``mode``, ``edge``), so its output and
    maps equal BME's; only the cost differs. Written from the paper, not from :class:`BME`'s code (which
    runs ψ once per frame and shifts the result): the tests check BME against it. A frame at a clip edge gets
    ψ of a zero frame, masked to zero (``edge="zero"``: no neighbour, no motion), or ψ of itself
    (``"replicate"``), so ψ runs on ``T`` frames per direction and clip, ``2 T`` in the paper's configuration,
    as the paper counts. ``mode="local"`` (Table 5's local-to-local variant) applies φ to :math:`F_t` instead
    of :math:`F_t^g`. ``antisymmetric=True`` adds :math:`\delta(M^f - M^b)` before the activation, as its own
    convolution on the difference of the maps.

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
        before_act = bme.upsilon(stacked)  # υ([Mf, Mb]), Eq. 6
        if bme.delta is not None:  # antisymmetric=True: + δ(Mf - Mb), a convolution of its own
            difference = rearrange(maps["Mf"] - maps["Mb"], "b t c h w -> (b t) c h w")
            before_act = before_act + nn.functional.conv2d(difference, bme.delta)
        return frames + bme.act(before_act), maps
