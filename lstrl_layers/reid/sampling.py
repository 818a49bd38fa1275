"""Frame sampling within a tracklet and P x K identity batches for video ReID.

- Training: restricted random sampling (RRS, the paper's §3 and §4.2): the tracklet is split into ``T`` chunks
  of (almost) equal length and one random frame is drawn from each chunk.
- Test: the same chunks with the first frame of each (:func:`chunk_first_indices`, deterministic RRS), or all
  frames as consecutive ``T``-frame clips whose features are averaged (:func:`dense_clip_indices`).
- Batches: :class:`PKBatchSampler`, ``P`` identities x ``K`` tracklets each (paper: 8 x 4), for the
  batch-hard triplet loss.

Tracklets shorter than ``T`` are padded by repeating frames in temporal order (each of the ``n`` frames about
``T / n`` times), so a clip is always ``T`` frames long and stays ordered in time, which BME relies on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from .._checks import check_int, got, integer_labels

__all__ = [
    "PKBatchSampler",
    "chunk_bounds",
    "chunk_first_indices",
    "dense_clip_indices",
    "restricted_random_indices",
]


def _check(num_frames: int, clip_len: int) -> None:
    check_int("num_frames", num_frames)  # a tracklet has at least one frame
    check_int("clip_len", clip_len)


def chunk_bounds(num_frames: int, clip_len: int) -> list[tuple[int, int]]:
    """Half-open ``[start, stop)`` frame ranges of the ``T`` chunks of a tracklet of ``num_frames`` frames.

    Chunk ``i`` is ``[floor(i n / T), floor((i + 1) n / T))``; lengths differ by at most one. When ``n < T``
    a chunk may be empty; it then holds frame ``floor(i n / T)`` alone (padding by repetition).
    """
    _check(num_frames, clip_len)
    bounds = []
    for i in range(clip_len):
        start, stop = i * num_frames // clip_len, (i + 1) * num_frames // clip_len
        bounds.append((start, max(stop, start + 1)))
    return bounds


def restricted_random_indices(
    num_frames: int, clip_len: int, generator: torch.Generator | None = None
) -> list[int]:
    """Restricted random sampling: one uniformly random frame index from each of the ``T`` chunks.

    Returns ``T`` increasing (non-decreasing when ``num_frames < T``) indices into the tracklet.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {got(generator)}")
    picks = []
    for start, stop in chunk_bounds(num_frames, clip_len):
        picks.append(start + int(torch.randint(stop - start, (1,), generator=generator)))
    return picks


def chunk_first_indices(num_frames: int, clip_len: int) -> list[int]:
    """Deterministic restricted sampling for test: the first frame of each of the ``T`` chunks."""
    return [start for start, _ in chunk_bounds(num_frames, clip_len)]


def dense_clip_indices(num_frames: int, clip_len: int, max_clips: int | None = None) -> list[list[int]]:
    """All frames as consecutive clips ``[0..T-1], [T..2T-1], ...``; the last one padded with the last frame.

    A tracklet shorter than ``T`` gives one clip padded as in :func:`chunk_first_indices`. ``max_clips``
    keeps that many clips spread evenly over the tracklet (``None``: all), to bound test time on very long
    tracklets.
    """
    _check(num_frames, clip_len)
    if max_clips is not None:
        check_int("max_clips", max_clips)
    if num_frames < clip_len:
        return [chunk_first_indices(num_frames, clip_len)]
    clips = []
    for start in range(0, num_frames, clip_len):
        clips.append([min(start + j, num_frames - 1) for j in range(clip_len)])
    if max_clips is not None and len(clips) > max_clips:
        keep = [i * len(clips) // max_clips for i in range(max_clips)]
        clips = [clips[i] for i in keep]
    return clips


class PKBatchSampler(Sampler[list[int]]):
    """Batches of ``P`` identities x ``K`` tracklets each, for ``DataLoader(dataset, batch_sampler=...)``.

    One epoch visits every identity once, in random order, ``P`` identities per batch (the incomplete last
    batch is dropped): ``len(sampler) == num_identities // P``. For each identity, ``K`` of its tracklets are
    drawn without replacement; an identity with fewer than ``K`` gives all of them plus random repeats.
    A batch lists the ``K`` tracklets of its first identity, then those of the second, and so on.

    Args:
        labels: identity label of every tracklet of the dataset (index ``i`` is tracklet ``i``): integers (a
            list, array or tensor; whole-number floats such as ``2.0`` are accepted, ``1.7`` is refused).
        num_identities: ``P``, identities per batch (paper: 8).
        num_instances: ``K``, tracklets per identity (paper: 4).
        seed: base seed. The order of epoch ``e`` depends only on ``seed`` and ``e``; call
            :meth:`set_epoch` before iterating to get a different order each epoch (and the same order
            again after ``--resume``). Without it, every iteration advances the epoch counter by itself.

    Raises:
        TypeError: ``P``, ``K`` or ``seed`` not an int, or labels that are not integers.
        ValueError: ``P`` or ``K`` below 1, no labels, or fewer identities than ``P``.
    """

    def __init__(self, labels: Sequence[int], num_identities: int, num_instances: int, seed: int = 0) -> None:
        self.num_identities = check_int("num_identities (P)", num_identities)
        self.num_instances = check_int("num_instances (K)", num_instances)
        self.seed = check_int("seed", seed, minimum=None)
        label_array = integer_labels("labels", labels)
        if len(label_array) == 0:
            raise ValueError("labels must hold one identity label per tracklet, got none (an empty dataset)")
        by_label: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(label_array.tolist()):
            by_label[label].append(index)
        if len(by_label) < num_identities:
            raise ValueError(
                f"num_identities (P) must be at most the number of identities in labels ({len(by_label)}), "
                f"got {num_identities}"
            )
        self.index_by_label = dict(sorted(by_label.items()))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch whose order the next iteration yields."""
        self.epoch = check_int("epoch", epoch, minimum=0)

    def __len__(self) -> int:
        return len(self.index_by_label) // self.num_identities

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**64)
        self.epoch += 1
        labels = list(self.index_by_label)
        order = torch.randperm(len(labels), generator=generator).tolist()
        batch: list[int] = []
        for position, label_index in enumerate(order[: len(self) * self.num_identities]):
            indices = self.index_by_label[labels[label_index]]
            picks = torch.randperm(len(indices), generator=generator)[: self.num_instances].tolist()
            missing = self.num_instances - len(picks)  # too few tracklets: all of them, then repeats
            picks += torch.randint(len(indices), (missing,), generator=generator).tolist()
            batch.extend(indices[p] for p in picks)
            if (position + 1) % self.num_identities == 0:
                yield batch
                batch = []
