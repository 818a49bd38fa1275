"""Synthetic video ReID identities, generated in memory (no download): smoke runs, tests and benchmarks.

Three kinds of data set, each built so that what tells identities apart is known in advance:

- :func:`synthetic_video_reid`: identities differ in appearance (colours, build, gait); motion tells nothing.
- :func:`synthetic_motion_reid`: identities in pairs that share one appearance and whose tracklets are the
  same videos played in opposite time order (walking towards / away from the camera, or squatting down /
  standing up): only the order of the frames tells the two apart.
- :func:`synthetic_occlusion_reid`: identities are combinations of an upper and a lower look that other
  identities share, and every frame shows only one of the two: no single frame tells who it is, the clip does.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable

import torch
from einops import rearrange, repeat
from torch import Tensor

from ..._checks import check_int, check_size, got
from .tracklets import Tracklet, VideoReIDData

__all__ = ["MOTIONS", "synthetic_motion_reid", "synthetic_occlusion_reid", "synthetic_video_reid"]

MOTIONS = ("approach", "squat")  # the motions of synthetic_motion_reid


def _palette_colour(generator: torch.Generator) -> Tensor:
    """A random, fairly saturated and bright RGB colour in [0, 1]."""
    hue, saturation, value = torch.rand(3, generator=generator).tolist()
    return torch.tensor(colorsys.hsv_to_rgb(hue, 0.5 + 0.5 * saturation, 0.4 + 0.6 * value))


# Walking towards the camera ("approach"): the figure's scale and the height of its feet at the first and
# last frame of a tracklet (fractions of the frame height). Far: 0.4 of the height, feet at 0.5; near: 0.95,
# feet at 0.98. The feet move 0.48 H down over a tracklet, the centre 0.23 H.
_APPROACH_SCALE = (0.4, 0.95)
_APPROACH_FEET = (0.5, 0.98)
# Squatting ("squat"): at a constant distance, the figure's height above its feet shrinks from 1 to 0.5 of
# its standing height over the tracklet (head and torso sink, legs fold); the feet stay where they are.
_SQUAT_HEIGHT = (1.0, 0.5)
_FEET = 0.95  # height of the feet in figure coordinates (0: top of the head, 1: bottom)
_WAIST = 0.55  # the border between upper body (head, torso) and legs, in figure coordinates


def _person(g: torch.Generator) -> dict[str, Tensor]:
    """The appearance and gait of one identity: colours, stripes, build, cadence and stride."""
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


def _render_clip(
    person: dict[str, Tensor],
    camera: dict[str, Tensor],
    num_frames: int,
    size: tuple[int, int],
    g: torch.Generator,
    motion: str = "across",
    occlusion: bool = False,
) -> Tensor:
    """Frames ``(N, 3, H, W)`` uint8 of one person walking through one camera's view.

    ``motion``: ``"across"``, walking across the view (left or right at random, a fraction of a pixel per
    frame at 32 px wide) at a constant distance; ``"approach"``, towards the camera, from far to near over the
    tracklet (``_APPROACH_SCALE``, ``_APPROACH_FEET``), drifting slowly left or right; ``"squat"``, across
    the view while squatting down (``_SQUAT_HEIGHT``). ``occlusion``: a wall in front of the figure hides its
    upper body (head and torso) in one part of the tracklet and its legs in the other (which first, and where
    the wall moves, at random).
    """
    height, width = size

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=g)

    def cy(v: float) -> Tensor:  # height v of the figure (0: top, 1: feet), per frame
        return (v - _FEET) * scale_y + feet + rearrange(bob, "n -> n 1 1")

    t = torch.arange(num_frames, dtype=torch.float32)
    progress = t / max(num_frames - 1, 1)  # 0 at the first frame, 1 at the last
    direction = 1.0 if float(rand()) < 0.5 else -1.0
    scale_draw = 0.85 + 0.15 * float(rand())
    x0 = 0.5 + 0.1 * (float(rand()) - 0.5) - direction * 0.01 * num_frames / 2
    centre_x = x0 + direction * 0.01 * t  # walking across the view (approach: drifting sideways)
    scale, squash = torch.full((num_frames,), scale_draw), torch.ones(num_frames)
    if motion == "approach":
        scale = torch.lerp(torch.tensor(_APPROACH_SCALE[0]), torch.tensor(_APPROACH_SCALE[1]), progress)
        feet = torch.lerp(torch.tensor(_APPROACH_FEET[0]), torch.tensor(_APPROACH_FEET[1]), progress)
    else:
        feet = 0.5 + (_FEET - 0.5) * scale  # the figure centred in the frame when standing
        if motion == "squat":
            squash = torch.lerp(torch.tensor(_SQUAT_HEIGHT[0]), torch.tensor(_SQUAT_HEIGHT[1]), progress)
    scale, feet = rearrange(scale, "n -> n 1 1"), rearrange(feet, "n -> n 1 1")
    scale_y = scale * rearrange(squash, "n -> n 1 1")  # vertical extent; widths keep `scale`
    phase = person["gait_freq"] * t + 2 * math.pi * float(rand())
    bob = 0.01 * torch.sin(2 * phase)
    ys = repeat(torch.linspace(0, 1, height), "h -> n h w", n=num_frames, w=width)
    xs = repeat(torch.linspace(0, 1, width), "w -> n h w", n=num_frames, h=height)
    dx = xs - rearrange(centre_x, "n -> n 1 1")
    body_w = person["width"] * scale
    head = ((dx / (0.11 * scale)) ** 2 + ((ys - cy(0.12)) / (0.07 * scale)) ** 2) < 1
    torso = (dx.abs() < body_w) & (ys > cy(0.2)) & (ys < cy(_WAIST))
    swing = rearrange(0.08 * person["stride"] * torch.sin(phase), "n -> n 1 1") * scale
    legs = torch.zeros_like(torso)
    for side in (-1.0, 1.0):  # two legs, swinging in opposite phase
        leg_x = side * 0.09 * scale + side * swing * (ys - cy(_WAIST)) / (0.4 * scale_y)
        legs |= ((dx - leg_x).abs() < 0.07 * scale) & (ys >= cy(_WAIST)) & (ys < cy(_FEET))
    stripes = torch.sin(ys * person["stripe_freq"] * 2 * math.pi / scale_y) > 0
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
    if occlusion:
        frames = _occlude(frames, cy(_WAIST), ys, rand)
    gain = camera["gain"] * (0.85 + 0.3 * rand(3))  # camera colour cast, per-clip illumination
    frames = frames * rearrange(gain, "c -> 1 c 1 1") + 0.04 * torch.randn(frames.shape, generator=g)
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8)


def _occlude(frames: Tensor, waist: Tensor, ys: Tensor, rand: Callable[..., Tensor]) -> Tensor:
    """A wall of one colour over the upper body (above ``waist``) in some frames and over the legs in the
    others: the upper body is hidden up to a random frame in the middle third of the tracklet and the legs
    after it, or the other way round."""
    num_frames = len(frames)
    switch = int(num_frames / 3 + float(rand()) * num_frames / 3)  # the first frame of the second part
    upper_first = float(rand()) < 0.5
    hide_upper = (torch.arange(num_frames) < switch) == upper_first  # (N,)
    above = ys < waist  # (N, H, W)
    hidden = torch.where(rearrange(hide_upper, "n -> n 1 1"), above, ~above)
    wall = 0.3 + 0.4 * rand(3)
    return torch.where(rearrange(hidden, "n h w -> n 1 h w"), rearrange(wall, "c -> 1 c 1 1"), frames)


def synthetic_video_reid(
    num_train_ids: int = 32,
    num_test_ids: int = 16,
    num_cams: int = 3,
    tracklets_per_cam: int = 1,
    length: tuple[int, int] = (8, 24),
    size: tuple[int, int] = (64, 32),
    seed: int = 0,
) -> VideoReIDData:
    """Small synthetic video identities, generated in memory (no download), for smoke runs and tests.

    Each identity is a figure with its own colours (head, upper and lower body), an optional striped top,
    a build and a gait (stride, cadence). It appears in ``num_cams`` cameras, ``tracklets_per_cam``
    tracklets each; a tracklet is ``length[0]..length[1]`` frames of the figure walking across the view with
    swinging legs, over the camera's background and colour cast, with per-clip position, scale,
    illumination, a background object and pixel noise. Test identities are disjoint from training ones; the
    query of each is its first tracklet and its other tracklets are the gallery (with
    ``tracklets_per_cam > 1`` some share the query's camera: the evaluation must leave those out).

    Identities differ in appearance; the direction of walking is drawn per tracklet, so motion tells nothing
    about identity. :func:`synthetic_motion_reid` is the opposite case.

    Example:
        >>> data = synthetic_video_reid(4, 2, num_cams=2, length=(6, 8), size=(32, 16))
        >>> len(data.train), len(data.query), len(data.gallery), tuple(data.train[0].frames.shape[1:])
        (8, 2, 2, (3, 32, 16))
    """
    _check_arguments(num_train_ids, num_test_ids, num_cams, tracklets_per_cam, length, size, seed)
    g = torch.Generator().manual_seed(seed)
    cameras = _cameras(num_cams, g)

    def tracklets(pid: int) -> list[Tracklet]:
        look = _person(g)
        return [
            Tracklet(_render_clip(look, cameras[cam], _length(length, g), size, g), pid, cam)
            for cam in range(num_cams)
            for _ in range(tracklets_per_cam)
        ]

    return _split(tracklets, num_train_ids, num_test_ids, "synthetic")


def synthetic_motion_reid(
    num_train_ids: int = 32,
    num_test_ids: int = 16,
    num_cams: int = 3,
    tracklets_per_cam: int = 1,
    length: tuple[int, int] = (8, 24),
    size: tuple[int, int] = (64, 32),
    seed: int = 0,
    motion: str = "approach",
) -> VideoReIDData:
    """Synthetic identities that differ in motion only: pairs with one appearance and opposite motions.

    Identities come in pairs ``(2k, 2k + 1)`` that share every appearance attribute (colours, stripes,
    build, gait) and differ only in the temporal order of what happens. Every tracklet of ``2k + 1`` is a
    tracklet of ``2k`` played backwards, frame for frame (legs, noise and clutter included), in the same
    camera. ``motion``:

    - ``"approach"``: ``2k`` walks towards the camera (far and small at the first frame, near and large at the
      last), ``2k + 1`` walks away from it. The feet move 0.48 of the frame height (31 px at the default
      64 x 32) down over a tracklet and the figure grows from 0.4 to 0.95 of the height.
    - ``"squat"``: ``2k`` squats down while walking across the view (its height above the feet shrinks to a
      half: the head sinks about 0.35 of the frame height, the legs fold), ``2k + 1`` stands up. Size and
      position of the feet do not change: the motion is a deformation of the figure, not a change of scale.

    Cameras, noise, clutter and per-clip variation are those of :func:`synthetic_video_reid`, and a random
    horizontal flip cannot turn one identity into its partner. ``partners`` of the result maps every test
    identity to its partner (the evaluation then reports :func:`~lstrl_layers.reid.metrics.pair_auc`).

    A model that gives a clip and its time reversal the same embedding (per-frame CNN + temporal average
    pooling, with or without MAE) cannot tell the two identities of a pair apart, whatever it is trained on:
    with test clips that are reversed when their tracklets are (test sampling ``"even"``), its pair AUC is
    exactly 0.5. With ``T = 4`` frames, consecutive frames of a clip are about a quarter of a tracklet apart:
    the feet move about 8 px (approach), the head about 5 px (squat), most of a cell of a stride-8 feature map
    (ResNet's ``layer2`` at 64 x 32 gives 8 x 4).

    ``num_train_ids`` and ``num_test_ids`` (identities in each part) must be even numbers (pairs); the other
    arguments are those of :func:`synthetic_video_reid`.

    Example:
        >>> data = synthetic_motion_reid(4, 2, num_cams=2, length=(6, 8), size=(32, 16), motion="squat")
        >>> data.partners, bool((data.query[1].frames == data.query[0].frames.flip(0)).all())
        ({4: 5, 5: 4}, True)
    """
    _check_arguments(num_train_ids, num_test_ids, num_cams, tracklets_per_cam, length, size, seed)
    for name, value in (("num_train_ids", num_train_ids), ("num_test_ids", num_test_ids)):
        if value % 2:
            raise ValueError(f"{name} must be even (identities come in pairs), got {value!r}")
    if not isinstance(motion, str):
        raise TypeError(f"motion must be one of {MOTIONS}, got {got(motion)}")
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    g = torch.Generator().manual_seed(seed)
    cameras = _cameras(num_cams, g)
    rendered: list[Tensor] = []

    def tracklets(pid: int) -> list[Tracklet]:
        if pid % 2 == 0:  # render the pair's videos once; the partner plays them backwards
            look = _person(g)
            rendered[:] = [
                _render_clip(look, cameras[cam], _length(length, g), size, g, motion=motion)
                for cam in range(num_cams)
                for _ in range(tracklets_per_cam)
            ]
        videos = rendered if pid % 2 == 0 else [video.flip(0) for video in rendered]
        return [Tracklet(video, pid, i // tracklets_per_cam) for i, video in enumerate(videos)]

    data = _split(tracklets, num_train_ids, num_test_ids, f"synthetic-{motion}")
    test_ids = range(num_train_ids, num_train_ids + num_test_ids)
    data.partners = {pid: pid ^ 1 for pid in test_ids}  # pairs (2k, 2k + 1): ids of one pair differ in bit 0
    return data


def synthetic_occlusion_reid(
    num_train_ids: int = 32,
    num_test_ids: int = 16,
    num_cams: int = 3,
    tracklets_per_cam: int = 1,
    length: tuple[int, int] = (8, 24),
    size: tuple[int, int] = (64, 32),
    seed: int = 0,
) -> VideoReIDData:
    """Synthetic identities seen in parts: no single frame tells who it is, the whole clip does.

    An identity is a combination of an upper look (head colour, top colours and stripes, width) and a lower
    look (trouser colour, stride, cadence), drawn without repeats from ``n`` upper and ``n`` lower looks with
    ``n = ceil(sqrt(identities)) + 1``: each look is shared by several identities, the combination by none.
    In every tracklet a wall hides the upper body in one part of the tracklet and the legs in the other
    (which first, and where the wall moves, at random), so each frame shows one look and a clip of frames
    from both parts shows the identity. The figure walks across the view, as in :func:`synthetic_video_reid`
    (cameras, noise, clutter, per-clip variation).

    This is the situation MAE is meant for (the paper's §3.1: frames that see different parts of a person);
    a frame-level model with temporal average pooling can also combine the looks of its frames, so the data
    set measures how much attention over all frames adds, rather than deciding it by construction.

    Example:
        >>> data = synthetic_occlusion_reid(4, 2, num_cams=2, length=(6, 8), size=(32, 16))
        >>> len(data.train), data.name
        (8, 'synthetic-occlusion')
    """
    _check_arguments(num_train_ids, num_test_ids, num_cams, tracklets_per_cam, length, size, seed)
    g = torch.Generator().manual_seed(seed)
    cameras = _cameras(num_cams, g)
    total = num_train_ids + num_test_ids
    looks = math.isqrt(total - 1) + 2  # ceil(sqrt(total)) + 1
    uppers, lowers = [_person(g) for _ in range(looks)], [_person(g) for _ in range(looks)]
    combinations = torch.randperm(looks * looks, generator=g)[:total].tolist()

    def tracklets(pid: int) -> list[Tracklet]:
        upper, lower = uppers[combinations[pid] // looks], lowers[combinations[pid] % looks]
        look = {**upper, **{k: lower[k] for k in ("lower", "stride", "gait_freq")}}
        return [
            Tracklet(_render_clip(look, cameras[cam], _length(length, g), size, g, occlusion=True), pid, cam)
            for cam in range(num_cams)
            for _ in range(tracklets_per_cam)
        ]

    return _split(tracklets, num_train_ids, num_test_ids, "synthetic-occlusion")


def _check_arguments(
    num_train_ids: int,
    num_test_ids: int,
    num_cams: int,
    tracklets_per_cam: int,
    length: tuple[int, int],
    size: tuple[int, int],
    seed: int,
) -> None:
    check_int("num_train_ids", num_train_ids)
    check_int("num_test_ids", num_test_ids, minimum=0)
    check_int("num_cams", num_cams)
    check_int("tracklets_per_cam", tracklets_per_cam)
    check_int("seed", seed, minimum=None)
    check_size("size", size)
    expected = "(shortest, longest), the range of tracklet lengths in frames: two ints >= 1"
    if isinstance(length, (str, bytes)) or not isinstance(length, (tuple, list)) or len(length) != 2:
        raise TypeError(f"length must be {expected}, got {got(length)}")
    shortest, longest = (check_int(f"length[{i}]", value) for i, value in enumerate(length))
    if shortest > longest:
        raise ValueError(f"length must be {expected} with shortest <= longest, got {length!r}")


def _cameras(num_cams: int, g: torch.Generator) -> list[dict[str, Tensor]]:
    """Each camera's background colour, vertical gradient and colour cast."""
    return [
        {
            "background": 0.2 + 0.6 * torch.rand(3, generator=g),
            "gradient": torch.rand(3, generator=g) - 0.5,
            "gain": 0.8 + 0.4 * torch.rand(3, generator=g),
        }
        for _ in range(num_cams)
    ]


def _length(length: tuple[int, int], g: torch.Generator) -> int:
    """A tracklet length drawn from ``length[0]..length[1]``."""
    return int(torch.randint(length[0], length[1] + 1, (), generator=g))


def _split(
    tracklets: Callable[[int], list[Tracklet]], num_train_ids: int, num_test_ids: int, name: str
) -> VideoReIDData:
    """Train identities ``0..num_train_ids - 1`` and test identities after them, ``tracklets(pid)`` each in
    that order; the first tracklet of a test identity is its query, the others are the gallery."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors of ~32k elements: intra-op threads cost more than they give
    try:
        train = [t for pid in range(num_train_ids) for t in tracklets(pid)]
        test = [tracklets(pid) for pid in range(num_train_ids, num_train_ids + num_test_ids)]
    finally:
        torch.set_num_threads(threads)
    query = [own[0] for own in test]
    gallery = [t for own in test for t in own[1:]]
    return VideoReIDData(train, query, gallery, num_train_ids, name=name)
