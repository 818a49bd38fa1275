"""Synthetic video ReID identities, generated in memory (no download): smoke runs, tests and benchmarks."""

from __future__ import annotations

import colorsys
import math

import torch
from einops import rearrange, repeat
from torch import Tensor

from .datasets import Tracklet, VideoReIDData

__all__ = ["synthetic_video_reid"]


def _palette_colour(generator: torch.Generator) -> Tensor:
    """A random, fairly saturated and bright RGB colour in [0, 1]."""
    hue, saturation, value = torch.rand(3, generator=generator).tolist()
    return torch.tensor(colorsys.hsv_to_rgb(hue, 0.5 + 0.5 * saturation, 0.4 + 0.6 * value))


def _render_clip(
    person: dict[str, Tensor],
    camera: dict[str, Tensor],
    num_frames: int,
    size: tuple[int, int],
    g: torch.Generator,
) -> Tensor:
    """Frames ``(N, 3, H, W)`` uint8 of one person walking through one camera's view."""
    height, width = size

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=g)

    def cy(v: float) -> Tensor:  # height v of the figure (0: top, 1: feet), per frame
        return (v - 0.5) * scale + 0.5 + rearrange(bob, "n -> n 1 1")

    t = torch.arange(num_frames, dtype=torch.float32)
    direction = 1.0 if float(rand()) < 0.5 else -1.0
    scale = 0.85 + 0.15 * float(rand())
    x0 = 0.5 + 0.1 * (float(rand()) - 0.5) - direction * 0.01 * num_frames / 2
    centre_x = x0 + direction * 0.01 * t  # walking across the view
    phase = person["gait_freq"] * t + 2 * math.pi * float(rand())
    bob = 0.01 * torch.sin(2 * phase)
    ys = repeat(torch.linspace(0, 1, height), "h -> n h w", n=num_frames, w=width)
    xs = repeat(torch.linspace(0, 1, width), "w -> n h w", n=num_frames, h=height)
    dx = xs - rearrange(centre_x, "n -> n 1 1")
    body_w = person["width"] * scale
    head = ((dx / (0.11 * scale)) ** 2 + ((ys - cy(0.12)) / (0.07 * scale)) ** 2) < 1
    torso = (dx.abs() < body_w) & (ys > cy(0.2)) & (ys < cy(0.55))
    swing = rearrange(0.08 * person["stride"] * torch.sin(phase), "n -> n 1 1") * scale
    legs = torch.zeros_like(torso)
    for side in (-1.0, 1.0):  # two legs, swinging in opposite phase
        leg_x = side * 0.09 * scale + side * swing * (ys - cy(0.55)) / (0.4 * scale)
        legs |= ((dx - leg_x).abs() < 0.07 * scale) & (ys >= cy(0.55)) & (ys < cy(0.95))
    stripes = torch.sin(ys * person["stripe_freq"] * 2 * math.pi / scale) > 0
    frames = repeat(camera["background"], "c -> n c h w", n=num_frames, h=height, w=width).clone()
    frames += 0.15 * rearrange(ys, "n h w -> n 1 h w") * rearrange(camera["gradient"], "c -> 1 c 1 1")
    clutter = rand(3)  # a random object in the background of this clip
    cx0, cy0 = float(rand()), float(rand())
    box = ((xs - cx0).abs() < 0.2) & ((ys - cy0).abs() < 0.1)
    frames = torch.where(rearrange(box, "n h w -> n 1 h w"), rearrange(clutter, "c -> 1 c 1 1"), frames)
    torso_colour = torch.where(
        rearrange(stripes & person["striped"].bool(), "n h w -> n 1 h w"),
        rearrange(person["upper2"], "c -> 1 c 1 1"),
        rearrange(person["upper"], "c -> 1 c 1 1"),
    )
    for mask, colour in ((legs, person["lower"]), (torso, torso_colour), (head, person["head"])):
        colour = colour if colour.ndim == 4 else rearrange(colour, "c -> 1 c 1 1")
        frames = torch.where(rearrange(mask, "n h w -> n 1 h w"), colour.expand_as(frames), frames)
    gain = camera["gain"] * (0.85 + 0.3 * rand(3))  # camera colour cast, per-clip illumination
    frames = frames * rearrange(gain, "c -> 1 c 1 1") + 0.04 * torch.randn(frames.shape, generator=g)
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8)


def synthetic_video_reid(
    num_train_ids: int = 32,
    num_test_ids: int = 16,
    num_cams: int = 3,
    tracklets_per_cam: int = 1,
    frames: tuple[int, int] = (8, 24),
    size: tuple[int, int] = (64, 32),
    seed: int = 0,
) -> VideoReIDData:
    """Small synthetic video identities, generated in memory (no download), for smoke runs and tests.

    Each identity is a figure with its own colours (head, upper and lower body), an optional striped top,
    a build and a gait (stride, cadence). It appears in ``num_cams`` cameras, ``tracklets_per_cam``
    tracklets each; a tracklet is ``frames[0]..frames[1]`` frames of the figure walking across the view with
    swinging legs, over the camera's background and colour cast, with per-clip position, scale,
    illumination, a background object and pixel noise. Test identities are disjoint from training ones; the
    query of each is its first tracklet and its other tracklets are the gallery (with
    ``tracklets_per_cam > 1`` some share the query's camera: the evaluation must leave those out).
    """
    g = torch.Generator().manual_seed(seed)
    cameras = [
        {
            "background": 0.2 + 0.6 * torch.rand(3, generator=g),
            "gradient": torch.rand(3, generator=g) - 0.5,
            "gain": 0.8 + 0.4 * torch.rand(3, generator=g),
        }
        for _ in range(num_cams)
    ]

    def person() -> dict[str, Tensor]:
        return {
            "head": _palette_colour(g),
            "upper": _palette_colour(g),
            "upper2": _palette_colour(g),
            "lower": _palette_colour(g),
            "striped": (torch.rand((), generator=g) < 0.5).float(),
            "stripe_freq": 4 + 8 * torch.rand((), generator=g),
            "width": 0.14 + 0.1 * torch.rand((), generator=g),
            "gait_freq": 0.5 + 0.6 * torch.rand((), generator=g),
            "stride": 0.5 + torch.rand((), generator=g),
        }

    def tracklets(pids: range) -> list[list[Tracklet]]:
        out = []
        for pid in pids:
            look, own = person(), []
            for cam in range(num_cams):
                for _ in range(tracklets_per_cam):
                    length = int(torch.randint(frames[0], frames[1] + 1, (), generator=g))
                    own.append(Tracklet(_render_clip(look, cameras[cam], length, size, g), pid, cam))
            out.append(own)
        return out

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors of ~32k elements: intra-op threads cost more than they give
    try:
        train = [t for own in tracklets(range(num_train_ids)) for t in own]
        test = tracklets(range(num_train_ids, num_train_ids + num_test_ids))
    finally:
        torch.set_num_threads(threads)
    query = [own[0] for own in test]
    gallery = [t for own in test for t in own[1:]]
    return VideoReIDData(train, query, gallery, num_train_ids, name="synthetic")
