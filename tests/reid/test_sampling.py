"""Frame sampling (restricted random, chunk-first, even, dense) and the P x K batch sampler."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from lstrl_layers.reid import (
    ClipDataset,
    PKBatchSampler,
    Tracklet,
    TrainSettings,
    chunk_bounds,
    chunk_first_indices,
    dense_clip_indices,
    even_indices,
    restricted_random_indices,
)
from lstrl_layers.reid.embed import embed_tracklets
from lstrl_layers.reid.sampling import SAMPLINGS, TEST_SAMPLINGS


def test_chunks_split_the_tracklet_evenly() -> None:
    assert chunk_bounds(10, 4) == [(0, 2), (2, 5), (5, 7), (7, 10)]
    assert chunk_bounds(8, 8) == [(i, i + 1) for i in range(8)]
    assert chunk_first_indices(10, 4) == [0, 2, 5, 7]


def test_short_tracklets_are_padded_in_temporal_order() -> None:
    assert chunk_first_indices(3, 8) == [0, 0, 0, 1, 1, 1, 2, 2]
    assert chunk_first_indices(1, 4) == [0, 0, 0, 0]
    g = torch.Generator().manual_seed(0)
    assert restricted_random_indices(3, 8, g) == [0, 0, 0, 1, 1, 1, 2, 2]


def test_restricted_random_sampling_draws_one_frame_per_chunk() -> None:
    g = torch.Generator().manual_seed(0)
    bounds = chunk_bounds(23, 4)
    seen: list[set[int]] = [set() for _ in bounds]
    for _ in range(300):
        picks = restricted_random_indices(23, 4, g)
        assert picks == sorted(picks)
        for (start, stop), pick, chunk_seen in zip(bounds, picks, seen):
            assert start <= pick < stop
            chunk_seen.add(pick)
    assert [sorted(s) for s in seen] == [list(range(a, b)) for a, b in bounds]  # every frame reachable


def test_dense_clips_cover_every_frame_and_pad_the_last() -> None:
    assert dense_clip_indices(10, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 9, 9]]
    assert dense_clip_indices(8, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert dense_clip_indices(2, 4) == [[0, 0, 1, 1]]
    assert dense_clip_indices(20, 2, max_clips=3) == [[0, 1], [6, 7], [12, 13]]


def test_sampling_takes_the_tracklet_length_then_the_clip_length_by_name() -> None:
    assert chunk_bounds(length=10, num_frames=4) == chunk_bounds(10, 4)
    assert chunk_first_indices(length=3, num_frames=8) == [0, 0, 0, 1, 1, 1, 2, 2]
    assert even_indices(length=10, num_frames=4) == [0, 3, 6, 9]
    assert dense_clip_indices(length=10, num_frames=4, max_clips=1) == [[0, 1, 2, 3]]
    g = torch.Generator().manual_seed(0)
    assert restricted_random_indices(length=3, num_frames=8, generator=g) == [0, 0, 0, 1, 1, 1, 2, 2]


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0, 4), ValueError, r"length \(frames of the tracklet\) must be an int >= 1, got 0"),
        ((-3, 4), ValueError, r"length \(frames of the tracklet\) must be an int >= 1, got -3"),
        ((5, 0), ValueError, r"num_frames \(T, frames per clip\) must be an int >= 1, got 0"),
        ((2.5, 4), TypeError, r"length \(frames of the tracklet\) must be an int >= 1, got 2.5 \(float\)"),
        ((10, 4.0), TypeError, r"num_frames \(T, frames per clip\) must be an int >= 1, got 4.0 \(float\)"),
        ((True, 4), TypeError, r"length \(frames of the tracklet\) must be an int >= 1, got True \(bool\)"),
    ],
)
def test_sampling_rejects_bad_lengths(args: tuple, error: type[Exception], match: str) -> None:
    samplers = (
        chunk_bounds,
        chunk_first_indices,
        dense_clip_indices,
        even_indices,
        restricted_random_indices,
    )
    for sample in samplers:
        with pytest.raises(error, match=match):
            sample(*args)


@pytest.mark.parametrize(
    ("max_clips", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError)]
)
def test_dense_clips_reject_bad_max_clips(max_clips: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=f"max_clips must be an int >= 1, got {max_clips!r}"):
        dense_clip_indices(10, 4, max_clips=max_clips)  # type: ignore[arg-type]


def test_restricted_sampling_rejects_a_generator_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None, got 0 \(int\)"):
        restricted_random_indices(10, 4, generator=0)  # type: ignore[arg-type]


def test_pk_batches_hold_p_identities_with_k_clips_each() -> None:
    pids = [0] * 5 + [1] * 4 + [2] * 2 + [3] * 6 + [4] * 1 + [5] * 4 + [6] * 4
    sampler = PKBatchSampler(pids, P=3, K=4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 7 // 3
    visited = []
    for batch in batches:
        assert len(batch) == 12
        ids = [pids[i] for i in batch]
        assert ids == [ids[0]] * 4 + [ids[4]] * 4 + [ids[8]] * 4  # K consecutive clips of each identity
        assert len(set(ids)) == 3
        for pid in set(ids):
            own = [i for i in batch if pids[i] == pid]
            available = pids.count(pid)
            assert len(set(own)) == min(available, 4)  # no repeats unless the identity has fewer than K
        visited += sorted(set(ids))
    assert len(visited) == len(set(visited))  # each identity at most once per epoch


def test_pk_sampler_order_depends_on_seed_and_epoch_only() -> None:
    pids = [i // 3 for i in range(60)]
    a, b = PKBatchSampler(pids, 4, 2, seed=0), PKBatchSampler(pids, 4, 2, seed=0)
    first = list(a)
    assert list(a) != first  # iterating again moves to the next epoch
    b.set_epoch(0)
    assert list(b) == first
    counts: Counter[int] = Counter()
    for epoch in range(30):
        a.set_epoch(epoch)
        counts.update(i for batch in a for i in batch)
    assert set(counts) == set(range(60))  # every tracklet gets drawn


def test_pk_sampler_needs_p_identities() -> None:
    with pytest.raises(
        ValueError,
        match=r"P \(identities per batch\) must be at most the number of identities in pids \(2\), got 3",
    ):
        PKBatchSampler([0, 0, 1], P=3, K=2)


PIDS = [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(P=2.5), TypeError, r"P \(identities per batch\) must be an int >= 1, got 2.5 \(float\)"),
        (dict(P=True), TypeError, r"P \(identities per batch\) must be an int >= 1, got True \(bool\)"),
        (dict(P=0), ValueError, r"P \(identities per batch\) must be an int >= 1, got 0"),
        (dict(K=0), ValueError, r"K \(tracklets per identity\) must be an int >= 1, got 0"),
        (dict(K=2.0), TypeError, r"K \(tracklets per identity\) must be an int >= 1, got 2.0 \(float\)"),
        (dict(K=None), TypeError, r"K \(tracklets per identity\) must be an int >= 1, got None"),
        (dict(seed=1.5), TypeError, r"seed must be an int, got 1.5 \(float\)"),
        (
            dict(pids=[1.7, 1.2, 2, 2]),
            ValueError,
            "pids must hold integer labels, got the non-integer value 1.7",
        ),
        (dict(pids=["a", "b"]), TypeError, "pids must hold integer labels, got dtype <U1"),
        (dict(pids=[]), ValueError, r"pids must hold the identity of every tracklet, got none"),
        (dict(pids=5), TypeError, r"pids must be a 1-D tensor, array or list of integer labels, got 5"),
        (
            dict(pids=torch.zeros(3, 2, dtype=torch.long)),
            ValueError,
            r"pids must be 1-D .* got shape \(3, 2\)",
        ),
    ],
)
def test_pk_sampler_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    arguments = dict(pids=PIDS, P=2, K=2) | kwargs
    with pytest.raises(error, match=match):
        PKBatchSampler(**arguments)


def test_pk_sampler_labels_from_tensors_and_whole_floats_are_the_same_labels() -> None:
    reference = list(PKBatchSampler(PIDS, 2, 2, seed=3))
    for pids in (
        torch.tensor(PIDS),
        torch.tensor(PIDS, dtype=torch.float64),
        [float(x) for x in PIDS],
    ):
        assert list(PKBatchSampler(pids, 2, 2, seed=3)) == reference


@pytest.mark.parametrize(("epoch", "error"), [(1.5, TypeError), (-1, ValueError), ("1", TypeError)])
def test_pk_sampler_set_epoch_rejects_bad_epochs(epoch: object, error: type[Exception]) -> None:
    sampler = PKBatchSampler(PIDS, 2, 2)
    with pytest.raises(error, match=f"epoch must be an int >= 0, got {epoch!r}"):
        sampler.set_epoch(epoch)  # type: ignore[arg-type]


def test_pk_sampler_missing_p_or_k_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"P \(identities per batch\) must be an int >= 1, got None"):
        PKBatchSampler(PIDS, None, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"K \(tracklets per identity\) must be an int >= 1, got None"):
        PKBatchSampler(PIDS, 2, None)  # type: ignore[arg-type]


def test_every_sampling_name_cuts_clips_and_the_test_ones_are_accepted_everywhere() -> None:
    tracklet = Tracklet(torch.zeros(5, 3, 8, 4, dtype=torch.uint8), 0, 0)
    for name in SAMPLINGS:
        clips, pid, camid = ClipDataset([tracklet], 2, (8, 4), name)[0]
        assert (pid, camid) == (0, 0)
        # a training item is one clip (T, 3, H, W); a test item is the tracklet's clips (N, T, 3, H, W)
        assert clips.shape[-4:] == (2, 3, 8, 4) and clips.ndim == (5 if name in TEST_SAMPLINGS else 4)
    assert set(TEST_SAMPLINGS) == set(SAMPLINGS) - {"rrs"}  # every sampling but the random one
    for name in TEST_SAMPLINGS:
        assert TrainSettings(test_sampling=name).test_sampling == name
    with pytest.raises(ValueError, match=r"test_sampling"):
        TrainSettings(test_sampling="rrs")
    with pytest.raises(
        ValueError, match=r"sampling must be one of \('first', 'even', 'dense'\) .* got 'rrs'"
    ):
        embed_tracklets(lambda clips: clips.flatten(1), [tracklet], 2, size=(8, 4), sampling="rrs")
