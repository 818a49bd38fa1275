"""Frame sampling (restricted random, chunk-first, dense) and the P x K batch sampler."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from lstrl_layers.reid import (
    PKBatchSampler,
    chunk_bounds,
    chunk_first_indices,
    dense_clip_indices,
    restricted_random_indices,
)


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


@pytest.mark.parametrize("bad", [(0, 4), (5, 0)])
def test_sampling_rejects_empty_tracklets_and_clips(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        chunk_bounds(*bad)


def test_pk_batches_hold_p_identities_with_k_clips_each() -> None:
    labels = [0] * 5 + [1] * 4 + [2] * 2 + [3] * 6 + [4] * 1 + [5] * 4 + [6] * 4
    sampler = PKBatchSampler(labels, num_identities=3, num_instances=4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 7 // 3
    visited = []
    for batch in batches:
        assert len(batch) == 12
        ids = [labels[i] for i in batch]
        assert ids == [ids[0]] * 4 + [ids[4]] * 4 + [ids[8]] * 4  # K consecutive clips of each identity
        assert len(set(ids)) == 3
        for pid in set(ids):
            own = [i for i in batch if labels[i] == pid]
            available = labels.count(pid)
            assert len(set(own)) == min(available, 4)  # no repeats unless the identity has fewer than K
        visited += sorted(set(ids))
    assert len(visited) == len(set(visited))  # each identity at most once per epoch


def test_pk_sampler_order_depends_on_seed_and_epoch_only() -> None:
    labels = [i // 3 for i in range(60)]
    a, b = PKBatchSampler(labels, 4, 2, seed=0), PKBatchSampler(labels, 4, 2, seed=0)
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
    with pytest.raises(ValueError, match="identities"):
        PKBatchSampler([0, 0, 1], num_identities=3, num_instances=2)
