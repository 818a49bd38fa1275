"""Frame sampling within a tracklet and P x K identity batches for video ReID.

- Training: restricted random sampling (RRS, the paper's §3 and §4.2): the tracklet is split into ``T`` chunks
  of (almost) equal length and one random frame is drawn from each chunk.
- Test: the same chunks with the first frame of each (:func:`chunk_first_indices`, deterministic RRS), ``T``
  evenly spaced frames from the first to the last (:func:`even_indices`: a tracklet played backwards gives
  the same clip played backwards), or all frames as consecutive ``T``-frame clips whose features are averaged
  (:func:`dense_clip_indices`).
- Batches: :class:`PKBatchSampler`, ``P`` identities x ``K`` tracklets each (paper: 8 x 4), for the
  batch-hard triplet loss.

The functions take a tracklet's ``length`` (its number of frames, ``n``) and ``num_frames``, the clip length
``T``, as the blocks and ``TrainSettings.num_frames`` call it. Tracklets shorter than ``T`` are padded by
repeating frames in temporal order (each of the ``n`` frames about ``T / n`` times), so a clip is always ``T``
frames long and stays ordered in time, which BME relies on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Literal, get_args

import torch
from torch.utils.data import Sampler

from .._checks import check_int, got, integer_labels

__all__ = [
    "SAMPLINGS",
    "TEST_SAMPLINGS",
    "PKBatchSampler",
    "Sampling",
    "chunk_bounds",
    "chunk_first_indices",
    "dense_clip_indices",
    "even_indices",
    "restricted_random_indices",
]

Sampling = Literal["rrs", "first", "even", "dense"]
SAMPLINGS: tuple[Sampling, ...] = get_args(Sampling)
"""The ways to cut a tracklet into clips, by name: ``"rrs"``, restricted random sampling (training);
``"first"``, the first frame of each of the ``T`` chunks (:func:`chunk_first_indices`); ``"even"``, ``T``
evenly spaced frames, the first and the last included (:func:`even_indices`); ``"dense"``, every frame, as
consecutive ``T``-frame clips (:func:`dense_clip_indices`)."""
TEST_SAMPLINGS: tuple[Sampling, ...] = tuple(name for name in SAMPLINGS if name != "rrs")
"""The samplings of test clips: those of :data:`SAMPLINGS` that draw nothing at random."""


def _check(length: int, num_frames: int) -> None:
    check_int("length (frames of the tracklet)", length)  # a tracklet has at least one frame
    check_int("num_frames (T, frames per clip)", num_frames)


def chunk_bounds(length: int, num_frames: int) -> list[tuple[int, int]]:
    """Half-open ``[start, stop)`` frame ranges of the ``T`` chunks of a tracklet of ``length`` frames.

    With ``n = length`` and ``T = num_frames``, chunk ``i`` is ``[floor(i n / T), floor((i + 1) n / T))``;
    lengths differ by at most one. When ``n < T`` a chunk may be empty; it then holds frame ``floor(i n / T)``
    alone (padding by repetition).
    """
    _check(length, num_frames)
    bounds = []
    for i in range(num_frames):
        start, stop = i * length // num_frames, (i + 1) * length // num_frames
        bounds.append((start, max(stop, start + 1)))
    return bounds


def restricted_random_indices(
    length: int, num_frames: int, generator: torch.Generator | None = None
) -> list[int]:
    """Restricted random sampling: one uniformly random frame index from each of the ``T`` chunks.

    Returns ``T = num_frames`` increasing (non-decreasing when ``length < T``) indices into the tracklet of
    ``length`` frames.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {got(generator)}")
    picks = []
    for start, stop in chunk_bounds(length, num_frames):
        picks.append(start + int(torch.randint(stop - start, (1,), generator=generator)))
    return picks


def chunk_first_indices(length: int, num_frames: int) -> list[int]:
    """Deterministic restricted sampling for test: the first frame of each of the ``T`` chunks."""
    return [start for start, _ in chunk_bounds(length, num_frames)]


def even_indices(length: int, num_frames: int) -> list[int]:
    """``T`` evenly spaced frames from the first to the last, rounded towards the middle of the tracklet.

    With ``n = length`` and ``T = num_frames``, position ``t`` is ``x_t = t (n - 1) / (T - 1)``, rounded to
    the nearest frame with halves towards the middle, so the indices of a tracklet played backwards are those
    of the tracklet, mirrored: ``even_indices(n, T)[T - 1 - t] == n - 1 - even_indices(n, T)[t]``. (With
    ``T`` odd and ``n`` even the middle position falls between two frames and takes the later one; every
    other case mirrors exactly.) ``T = 1`` takes the middle frame; ``n < T`` repeats frames, in order.

    Example:
        >>> even_indices(10, 4)
        [0, 3, 6, 9]
        >>> even_indices(8, 4)  # positions 0, 2.33, 4.67, 7
        [0, 2, 5, 7]
    """
    _check(length, num_frames)
    last = length - 1
    if num_frames == 1:
        return [last // 2]
    span = num_frames - 1

    def nearest(t: int) -> int:  # round(x_t) with halves rounding up, in integers: x_t = t * last / span
        return (2 * t * last + span) // (2 * span)

    # first half (middle included) as they are; the second half mirrors the first, so halves round down
    return [nearest(t) if 2 * t <= span else last - nearest(span - t) for t in range(num_frames)]


def dense_clip_indices(length: int, num_frames: int, max_clips: int | None = None) -> list[list[int]]:
    """All frames as consecutive clips ``[0..T-1], [T..2T-1], ...``; the last one padded with the last frame.

    A tracklet shorter than ``T = num_frames`` gives one clip padded as in :func:`chunk_first_indices`.
    ``max_clips`` keeps that many clips spread evenly over the tracklet (``None``: all), to bound test time on
    very long tracklets.
    """
    _check(length, num_frames)
    if max_clips is not None:
        check_int("max_clips", max_clips)
    if length < num_frames:
        return [chunk_first_indices(length, num_frames)]
    clips = []
    for start in range(0, length, num_frames):
        clips.append([min(start + j, length - 1) for j in range(num_frames)])
    if max_clips is not None and len(clips) > max_clips:
        keep = [i * len(clips) // max_clips for i in range(max_clips)]
        clips = [clips[i] for i in keep]
    return clips


class PKBatchSampler(Sampler[list[int]]):
    """Batches of ``P`` identities x ``K`` tracklets each, for ``DataLoader(dataset, batch_sampler=...)``.

    One epoch visits every identity once, in random order, ``P`` identities per batch (the incomplete last
    batch is dropped): ``len(sampler)`` is the number of identities in ``pids`` over ``P``, rounded down.
    For each identity, ``K`` of its tracklets are drawn without replacement; an identity with fewer than ``K``
    gives all of them plus random repeats. A batch lists the ``K`` tracklets of its first identity, then those
    of the second, and so on.

    Args:
        pids: the identity of every tracklet of the dataset (index ``i`` is tracklet ``i``, e.g.
            :attr:`ClipDataset.pids <lstrl_layers.reid.ClipDataset.pids>`): integers (a list, array or tensor;
            whole-number floats such as ``2.0`` are accepted, ``1.7`` is refused).
        P: identities per batch (paper: 8), as ``TrainSettings.P`` and ``-P``.
        K: tracklets per identity (paper: 4), as ``TrainSettings.K`` and ``-K``.
        seed: base seed. The order of epoch ``e`` depends only on ``seed`` and ``e``; call
            :meth:`set_epoch` before iterating to get a different order each epoch (and the same order
            again after ``--resume``). Without it, every iteration advances the epoch counter by itself.

    Raises:
        TypeError: ``P``, ``K`` or ``seed`` not an int, identities that are not integers.
        ValueError: ``P`` or ``K`` below 1, no identities, or fewer identities than ``P``.
    """

    def __init__(
        self,
        pids: Sequence[int],
        P: int,
        K: int,
        seed: int = 0,
    ) -> None:
        self.P = check_int("P (identities per batch)", P)
        self.K = check_int("K (tracklets per identity)", K)
        self.seed = check_int("seed", seed, minimum=None)
        pid_array = integer_labels("pids", pids)
        if len(pid_array) == 0:
            raise ValueError("pids must hold the identity of every tracklet, got none (an empty dataset)")
        by_pid: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pid_array.tolist()):
            by_pid[pid].append(index)
        if len(by_pid) < self.P:
            raise ValueError(
                f"P (identities per batch) must be at most the number of identities in pids "
                f"({len(by_pid)}), got {self.P}"
            )
        self.index_by_pid = dict(sorted(by_pid.items()))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch whose order the next iteration yields."""
        self.epoch = check_int("epoch", epoch, minimum=0)

    def __len__(self) -> int:
        return len(self.index_by_pid) // self.P

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**64)
        self.epoch += 1
        pids = list(self.index_by_pid)
        order = torch.randperm(len(pids), generator=generator).tolist()
        batch: list[int] = []
        for position, pid_index in enumerate(order[: len(self) * self.P]):
            indices = self.index_by_pid[pids[pid_index]]
            picks = torch.randperm(len(indices), generator=generator)[: self.K].tolist()
            missing = self.K - len(picks)  # too few tracklets: all of them, then repeats
            picks += torch.randint(len(indices), (missing,), generator=generator).tolist()
            batch.extend(indices[p] for p in picks)
            if (position + 1) % self.P == 0:
                yield batch
                batch = []
