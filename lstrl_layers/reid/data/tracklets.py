"""The data a run reads: tracklets and a train / query / gallery split, as every reader returns them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from torch import Tensor

__all__ = ["Frames", "Tracklet", "VideoReIDData"]

Frames = Union[tuple[str, ...], Tensor]  # image paths, or uint8 frames (N, 3, H, W)


@dataclass(frozen=True)
class Tracklet:
    """One video of one person in one camera: ``frames`` (paths or a uint8 ``(N, 3, H, W)`` tensor)."""

    frames: Frames
    pid: int
    camid: int

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class VideoReIDData:
    """A train / query / gallery split.

    ``train`` identities are relabelled ``0..num_train_ids - 1``; query and gallery keep the dataset's own
    identities, and ``junk_ids`` lists those the evaluation must ignore (MARS: ``-1``). ``partners`` maps
    test identities to the identity they are paired with (each way), where the data set has such pairs (the
    synthetic motion sets: one appearance, opposite motions); the evaluation then adds
    :func:`~lstrl_layers.reid.metrics.pair_auc`.
    """

    train: list[Tracklet]
    query: list[Tracklet]
    gallery: list[Tracklet]
    num_train_ids: int
    junk_ids: tuple[int, ...] = ()
    name: str = ""
    info: dict[str, object] = field(default_factory=dict)
    partners: dict[int, int] = field(default_factory=dict)

    def summary(self) -> str:
        def line(part: str, tracks: list[Tracklet]) -> str:
            ids = len({t.pid for t in tracks})
            frames = sum(len(t) for t in tracks)
            return f"  {part:<8} {ids:>5} ids {len(tracks):>6} tracklets {frames:>8} frames"

        parts = (("train", self.train), ("query", self.query), ("gallery", self.gallery))
        return "\n".join([f"{self.name}:"] + [line(p, t) for p, t in parts])


def relabel(tracklets: list[Tracklet]) -> tuple[list[Tracklet], int]:
    new_pid = {pid: i for i, pid in enumerate(sorted({t.pid for t in tracklets}))}
    return [Tracklet(t.frames, new_pid[t.pid], t.camid) for t in tracklets], len(new_pid)


def checked_split(data: VideoReIDData, root: Path) -> VideoReIDData:
    """``data`` if every part has tracklets and every tracklet frames, else a ValueError naming the part."""
    for part, tracks in (("train", data.train), ("query", data.query), ("gallery", data.gallery)):
        if not tracks:
            raise ValueError(f"{data.name} under {root}: the {part} set is empty")
        empty = next((i for i, t in enumerate(tracks) if len(t) == 0), None)
        if empty is not None:
            t = tracks[empty]
            raise ValueError(
                f"{data.name} under {root}: {part} tracklet {empty} (identity {t.pid}, camera {t.camid}) "
                "has no frame"
            )
    return data


def dataset_root(root: str | Path, dataset: str) -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, got {root!r}")
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset} root {path} not found (no such folder)")
    return path


def query_gallery(
    test: list[Tracklet], query_rows: list[int], query_in_gallery: bool
) -> tuple[list[Tracklet], list[Tracklet]]:
    query = [test[i] for i in query_rows]
    if query_in_gallery:
        return query, test
    chosen = set(query_rows)
    return query, [t for i, t in enumerate(test) if i not in chosen]
