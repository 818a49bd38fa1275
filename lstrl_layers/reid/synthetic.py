"""Synthetic video ReID identities, generated in memory (no download): smoke runs, tests and benchmarks."""

from __future__ import annotations

import colorsys
import math

import torch
from einops import rearrange, repeat
from torch import Tensor

from .._checks import check_int
from .data import Tracklet, VideoReIDData

__all__ = ["synthetic_motion_reid", "synthetic_video_reid"]


def _palette_colour(generator: torch.Generator) -> Tensor:
    """A random, fairly saturated and bright RGB colour in [0, 1]."""
    hue, saturation, value = torch.rand(3, generator=generator).tolist()
    return torch.tensor(colorsys.hsv_to_rgb(hue, 0.5 + 0.5 * saturation, 0.4 + 0.6 * value))


# Walking towards the camera (motion set): the figure's scale and the height of its feet at the first and
# last frame of a tracklet (fractions of the frame height). Far: 0.4 of the height, feet at 0.5; near: 0.95,
# feet at 0.98. The feet move 0.48 H down over a tracklet, the centre 0.23 H.
_APPROACH_SCALE = (0.4, 0.95)
_APPROACH_FEET = (0.5, 0.98)
_FEET = 0.95  # height of the feet in figure coordinates (0: top of the head, 1: bottom)


def _render_clip(
    person: dict[str, Tensor],
    camera: dict[str, Tensor],
    num_frames: int,
    size: tuple[int, int],
    g: torch.Generator,
    approach: bool = False,
) -> Tensor:
    """Frames ``(N, 3, H, W)`` uint8 of one person walking through one camera's view.

    ``approach=False``: across the view (left or right at random, a fraction of a pixel per frame at 32 px
    wide) at a constant distance. ``True``: towards the camera, from far to near over the tracklet
    (``_APPROACH_SCALE``, ``_APPROACH_FEET``), drifting slowly left or right.
    """
    height, width = size

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=g)

    def cy(v: float) -> Tensor:  # height v of the figure (0: top, 1: feet), per frame
        return (v - 0.5) * scale + centre_y + rearrange(bob, "n -> n 1 1")

    t = torch.arange(num_frames, dtype=torch.float32)
    direction = 1.0 if float(rand()) < 0.5 else -1.0
    scale_draw = 0.85 + 0.15 * float(rand())
    x0 = 0.5 + 0.1 * (float(rand()) - 0.5) - direction * 0.01 * num_frames / 2
    centre_x = x0 + direction * 0.01 * t  # walking across the view (approach: drifting sideways)
    if approach:
        progress = t / max(num_frames - 1, 1)  # 0 at the first frame, 1 at the last
        scale = torch.lerp(torch.tensor(_APPROACH_SCALE[0]), torch.tensor(_APPROACH_SCALE[1]), progress)
        feet = torch.lerp(torch.tensor(_APPROACH_FEET[0]), torch.tensor(_APPROACH_FEET[1]), progress)
        centre_y = rearrange(feet - (_FEET - 0.5) * scale, "n -> n 1 1")
        scale = rearrange(scale, "n -> n 1 1")
    else:
        scale, centre_y = torch.full((num_frames, 1, 1), scale_draw), torch.full((num_frames, 1, 1), 0.5)
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
        legs |= ((dx - leg_x).abs() < 0.07 * scale) & (ys >= cy(0.55)) & (ys < cy(_FEET))
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

    Identities differ in appearance; the direction of walking is drawn per tracklet, so motion tells nothing
    about identity. :func:`synthetic_motion_reid` is the opposite case.
    """
    return _synthesize(
        num_train_ids, num_test_ids, num_cams, tracklets_per_cam, frames, size, seed, paired=False
    )


def synthetic_motion_reid(
    num_train_ids: int = 32,
    num_test_ids: int = 16,
    num_cams: int = 3,
    tracklets_per_cam: int = 1,
    frames: tuple[int, int] = (8, 24),
    size: tuple[int, int] = (64, 32),
    seed: int = 0,
) -> VideoReIDData:
    """Synthetic identities that differ in motion only: pairs with one appearance and opposite motions.

    Identities come in pairs ``(2k, 2k + 1)`` that share every appearance attribute (colours, stripes,
    build, gait) and differ only in the temporal order of what happens: identity ``2k`` walks towards the
    camera (far and small at the first frame, near and large at the last), identity ``2k + 1`` walks away from
    it, and each of its tracklets is rendered exactly as one of ``2k``'s and then played backwards (legs
    included). Cameras, noise, clutter and per-clip variation are those of :func:`synthetic_video_reid`, and
    a random horizontal flip cannot turn one identity into its partner.

    A model that gives a clip and its time reversal the same embedding (per-frame CNN + temporal average
    pooling, with or without MAE) cannot tell the two identities of a pair apart, whatever it is trained on.

    The motion is visible at the resolution of the stages where the blocks usually sit: the feet move 0.48 of
    the frame height (31 px at the default 64 x 32) down over a tracklet and the figure grows from 0.4 to 0.95
    of the height, whatever the tracklet's length. With ``T = 4`` frames sampled by RRS, consecutive frames
    of a clip are about a quarter of a tracklet apart: the feet move about 8 px, one cell of a stride-8
    feature map (ResNet's ``layer2`` at 64 x 32 gives 8 x 4) and half a cell at stride 16 (``layer3``).
    ``tests/test_synthetic.py`` finds the figure's feet in the frames and checks the direction of each
    identity's motion and that the feet move by more than a stride-8 cell over a tracklet.

    ``num_train_ids`` and ``num_test_ids`` (identities in each part) must be even numbers (pairs); the other
    arguments are those of :func:`synthetic_video_reid`.
    """
    for name, value in (("num_train_ids", num_train_ids), ("num_test_ids", num_test_ids)):
        if isinstance(value, int) and not isinstance(value, bool) and value % 2:
            raise ValueError(f"{name} must be even (identities come in pairs), got {value!r}")
    return _synthesize(
        num_train_ids, num_test_ids, num_cams, tracklets_per_cam, frames, size, seed, paired=True
    )


def _synthesize(
    num_train_ids: int,
    num_test_ids: int,
    num_cams: int,
    tracklets_per_cam: int,
    frames: tuple[int, int],
    size: tuple[int, int],
    seed: int,
    paired: bool,
) -> VideoReIDData:
    check_int("num_train_ids", num_train_ids)
    check_int("num_test_ids", num_test_ids, minimum=0)
    check_int("num_cams", num_cams)
    check_int("tracklets_per_cam", tracklets_per_cam)
    check_int("seed", seed, minimum=None)
    for name, pair in (("frames", frames), ("size", size)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{name} must be a pair of ints, got {pair!r}")
        for value in pair:
            check_int(name, value)
    if frames[0] > frames[1]:
        raise ValueError(f"frames must be (shortest, longest) with shortest <= longest, got {frames!r}")
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
        out, look = [], {}
        for pid in pids:
            if not paired or pid % 2 == 0:
                look = person()  # paired: the odd identity keeps its partner's look
            reverse = paired and pid % 2 == 1
            own = []
            for cam in range(num_cams):
                for _ in range(tracklets_per_cam):
                    length = int(torch.randint(frames[0], frames[1] + 1, (), generator=g))
                    clip = _render_clip(look, cameras[cam], length, size, g, approach=paired)
                    own.append(Tracklet(clip.flip(0) if reverse else clip, pid, cam))
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
    name = "synthetic-motion" if paired else "synthetic"
    return VideoReIDData(train, query, gallery, num_train_ids, name=name)
