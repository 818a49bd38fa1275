"""Synthetic data whose answer is known, and the fact the ablation builds on: time reversal is invisible
to a frame-level model with temporal average pooling, with or without MAE, and visible to BME."""

from __future__ import annotations

import pytest
import torch

from lstrl_layers import VideoReIDNet
from lstrl_layers.reid import synthetic_motion_reid, synthetic_occlusion_reid, synthetic_video_reid


def _embeddings(net: VideoReIDNet, clips: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.eval()(clips)


@pytest.mark.parametrize("blocks", [dict(mae=False, bme=False), dict(mae=True, bme=False)])
def test_baseline_and_mae_cannot_tell_a_clip_from_its_reversal(blocks: dict) -> None:
    torch.manual_seed(0)
    net = VideoReIDNet("resnet18", 5, stages=(2, 3), num_frames=4, zero_init=False, **blocks)
    clips = torch.randn(3, 4, 3, 64, 32)
    torch.testing.assert_close(_embeddings(net, clips), _embeddings(net, clips.flip(1)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("zero_init", [False, True])
def test_bme_tells_a_clip_from_its_reversal(zero_init: bool) -> None:
    torch.manual_seed(0)
    net = VideoReIDNet("resnet18", 5, stages=(2, 3), num_frames=4, mae=False, zero_init=zero_init)
    if zero_init:  # as after a few training steps: away from the identity
        with torch.no_grad():
            for p in net.backbone.lstrl.parameters():
                p.add_(0.05 * torch.randn_like(p))
    clips = torch.randn(3, 4, 3, 64, 32)
    forward, backward = _embeddings(net, clips), _embeddings(net, clips.flip(1))
    assert (forward - backward).abs().amax(1).min() > 1e-3 * forward.abs().amax()


def _lowest_figure_row(frames: torch.Tensor) -> torch.Tensor:
    """Per frame, the lowest row where at least 2 pixels differ clearly from the clip's per-pixel median (the
    static background and clutter): the feet of the figure."""
    frames = frames.float()
    foreground = (frames - frames.median(0).values).abs().sum(
        1
    ) > 90  # (N, H, W), noise is about 10 / channel
    rows = foreground.sum(2) >= 2
    height = frames.shape[-2]
    index = torch.arange(height).expand_as(rows)
    return torch.where(rows, index, torch.zeros_like(index)).amax(1)


def test_motion_pairs_move_in_opposite_directions_by_more_than_a_stride_8_cell() -> None:
    data = synthetic_motion_reid(8, 4, num_cams=3, length=(12, 20), size=(64, 32), seed=1)
    assert data.num_train_ids == 8 and {t.pid for t in data.query} == {8, 9, 10, 11}
    tracklets = data.train + data.query + data.gallery
    moves = []
    for t in tracklets:
        feet = _lowest_figure_row(t.frames).float()
        moves.append(float(feet[-3:].mean() - feet[:3].mean()) * (1 if t.pid % 2 == 0 else -1))
    moves_t = torch.tensor(moves)
    # towards the camera: the feet go down; away: up; by more than a cell of a stride-8 map (layer2 at
    # 64 x 32). The detector is crude and underestimates (the median background holds part of the figure,
    # and a figure close to its background's colour hides), so the bound is loose.
    assert (moves_t > 0).float().mean() >= 0.9
    assert moves_t.median() >= 12


def test_an_identity_played_backwards_looks_like_its_partner() -> None:
    """The near frame (the last of a walk towards the camera, the first of one away from it) of a pair's two
    identities in one camera look alike: closer in colour than those of two identities of different pairs."""
    data = synthetic_motion_reid(12, 2, num_cams=2, length=(8, 8), size=(64, 32), seed=3)

    def near_colours(pid: int, cam: int) -> torch.Tensor:
        (tracklet,) = [t for t in data.train if t.pid == pid and t.camid == cam]
        frame = tracklet.frames[-1 if pid % 2 == 0 else 0]
        bins = (frame[0] // 64) * 16 + (frame[1] // 64) * 4 + frame[2] // 64  # 4 levels per channel
        return torch.bincount(bins.flatten().long(), minlength=64).float()

    same, other = [], []
    for cam in range(2):
        colours = [near_colours(pid, cam) for pid in range(12)]
        for i in range(12):
            for j in range(i + 1, 12):
                similarity = float(torch.nn.functional.cosine_similarity(colours[i], colours[j], dim=0))
                (same if i // 2 == j // 2 else other).append(similarity)
    assert sum(same) / len(same) > sum(other) / len(other) + 0.05, (same, other)


def _highest_figure_row(frames: torch.Tensor) -> torch.Tensor:
    """Per frame, the highest row where at least 2 pixels differ clearly from the clip's per-pixel median:
    the top of the figure's head."""
    frames = frames.float()
    rows = ((frames - frames.median(0).values).abs().sum(1) > 90).sum(2) >= 2  # (N, H)
    index = torch.arange(frames.shape[-2]).expand_as(rows)
    return torch.where(rows, index, torch.full_like(index, frames.shape[-2])).amin(1)


def test_squatting_pairs_sink_and_rise_with_their_feet_in_place() -> None:
    data = synthetic_motion_reid(8, 0, num_cams=2, length=(12, 20), size=(64, 32), seed=1, motion="squat")
    sinks, feet_moves = [], []
    for t in data.train:
        head, feet = _highest_figure_row(t.frames).float(), _lowest_figure_row(t.frames).float()
        sign = 1 if t.pid % 2 == 0 else -1  # 2k squats down (the head goes down), 2k + 1 stands up
        sinks.append(float(head[-3:].mean() - head[:3].mean()) * sign)
        feet_moves.append(abs(float(feet[-3:].mean() - feet[:3].mean())))
    assert min(sinks) >= 8  # pixels of 64: most of a stride-8 cell, and more
    assert max(feet_moves) <= 3


@pytest.mark.parametrize("motion", ["approach", "squat"])
def test_partners_play_the_same_videos_backwards(motion: str) -> None:
    data = synthetic_motion_reid(4, 4, num_cams=2, length=(5, 9), size=(32, 16), seed=0, motion=motion)
    assert data.partners == {4: 5, 5: 4, 6: 7, 7: 6} and data.name == f"synthetic-{motion}"
    for part in (data.train, data.query, data.gallery):
        videos = {(t.pid, t.camid): t.frames for t in part}
        for (pid, cam), frames in videos.items():
            assert torch.equal(videos[(pid ^ 1, cam)], frames.flip(0))


def test_occluded_frames_show_the_upper_body_or_the_legs_never_both() -> None:
    data = synthetic_occlusion_reid(6, 0, num_cams=3, length=(9, 15), size=(64, 32), seed=0)
    upper_hidden = []
    for t in data.train:
        frames = t.frames.float()
        # a wall is one colour plus pixel noise (std about 10 of 255); the visible part holds figure and
        # background
        top = frames[:, :, 4:26].flatten(2).std(2).amax(1)  # rows 4-25 of 64: head and torso
        bottom = frames[:, :, 40:60].flatten(2).std(2).amax(1)  # rows 40-59: legs
        assert bool(((top < 15) ^ (bottom < 15)).all()), (top, bottom)
        hidden = (top < 15).tolist()
        assert sum(a != b for a, b in zip(hidden, hidden[1:])) == 1  # one switch, from one part to the other
        upper_hidden.append(hidden[0])
    assert 0 < sum(upper_hidden) < len(upper_hidden)  # which part comes first is drawn per tracklet


def test_motion_set_needs_pairs() -> None:
    with pytest.raises(ValueError, match="num_train_ids must be even"):
        synthetic_motion_reid(5, 2)
    with pytest.raises(ValueError, match=r"motion must be one of \('approach', 'squat'\), got 'jump'"):
        synthetic_motion_reid(4, 2, motion="jump")
    with pytest.raises(
        TypeError, match=r"motion must be one of \('approach', 'squat'\), got None \(NoneType\)"
    ):
        synthetic_motion_reid(4, 2, motion=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"num_test_ids must be an int >= 0, got '2' \(str\)"):
        synthetic_motion_reid(4, "2")  # type: ignore[arg-type]
    assert synthetic_video_reid(3, 2, length=(4, 4), size=(32, 16)).name == "synthetic"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(num_train_ids=0), ValueError, "num_train_ids"),
        (dict(num_train_ids=2.0), TypeError, "num_train_ids"),
        (dict(num_test_ids=-1), ValueError, "num_test_ids"),
        (dict(num_cams=0), ValueError, "num_cams"),
        (dict(length=(5, 3)), ValueError, r"length must be \(shortest, longest\).* got \(5, 3\)"),
        (dict(length=(0, 3)), ValueError, r"length\[0\] must be an int >= 1, got 0"),
        (dict(length=(3, 4.5)), TypeError, r"length\[1\] must be an int >= 1, got 4.5 \(float\)"),
        (dict(length=8), TypeError, r"length must be \(shortest, longest\).* got 8 \(int\)"),
        (dict(length=(3, 4, 5)), TypeError, r"length must be .* got \(3, 4, 5\) \(tuple\)"),
        (dict(size=(64,)), TypeError, r"size must be \(H, W\), two ints >= 1, got \(64,\) \(tuple\)"),
        (dict(size=(64, 0)), ValueError, r"size\[1\] must be an int >= 1, got 0"),
        (dict(seed="0"), TypeError, r"seed must be an int, got '0' \(str\)"),
    ],
)
def test_synthetic_sets_refuse_bad_arguments(kwargs: dict, error: type, message: str) -> None:
    for generate in (synthetic_video_reid, synthetic_motion_reid, synthetic_occlusion_reid):
        with pytest.raises(error, match=message):
            generate(**{"num_train_ids": 2, "num_test_ids": 2, **kwargs})
