"""iLIDS-VID (Wang et al., ECCV 2014): ``i-LIDS-VID/sequences/`` and a split file."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from ..._checks import check_int
from .matlab import integers, loadmat
from .tracklets import Tracklet, VideoReIDData, checked_split, dataset_root, relabel

__all__ = ["read_ilidsvid"]


def _ilids_split(split_file: Path, split: int, num_people: int) -> list[int]:
    """0-based person order of row ``split`` of ``ls_set``: a permutation of the ``num_people`` folders."""
    where = f"{split_file} variable 'ls_set'"
    table = integers(loadmat(split_file, "ls_set"), where)
    if table.ndim != 2:
        raise ValueError(f"{where} must be a (splits, people) matrix, got shape {table.shape}")
    if not 0 <= split < len(table):
        raise ValueError(f"split must be in 0..{len(table) - 1} (the rows of {where}), got {split!r}")
    row = table[split].tolist()
    if sorted(row) != list(range(1, num_people + 1)):
        raise ValueError(
            f"{where}, row {split}: expected the 1-based indices 1..{num_people} of the {num_people} person "
            f"folders in cam1 once each, got {len(row)} values from {min(row)} to {max(row)}"
        )
    return [i - 1 for i in row]


def read_ilidsvid(
    root: str | Path, split_file: str | Path | None = None, split: int = 0, seed: int = 0
) -> VideoReIDData:
    """iLIDS-VID: ``i-LIDS-VID/sequences/cam1|cam2/personXXX/*.png`` under ``root`` (or ``root`` itself).

    Identities are split in half between training and test. With a split file (``split_file``, or
    ``root/train-test people splits/train_test_splits_ilidsvid.mat`` when present), row ``split`` of its
    ``ls_set`` lists 1-based indices into the sorted person folders: the first half are the test identities,
    the rest training (Wang et al., ECCV 2014). Without one, a random half chosen with ``seed`` is the test
    set. Test queries are the cam1 tracklets, the gallery the cam2 ones; training uses both cameras.

    Every person folder of ``cam1`` must have its ``cam2`` folder and both must hold ``.png`` frames
    (``FileNotFoundError`` / ``ValueError`` naming the folder otherwise), as in the release.
    """
    root = dataset_root(root, "iLIDS-VID")
    split, seed = check_int("split", split, minimum=0), check_int("seed", seed, minimum=None)
    sequences = root / "sequences" if (root / "sequences").is_dir() else root / "i-LIDS-VID" / "sequences"
    if not sequences.is_dir():
        raise FileNotFoundError(f"no i-LIDS-VID/sequences/ (or sequences/) folder under {root}")
    for cam in (1, 2):
        if not (sequences / f"cam{cam}").is_dir():
            raise FileNotFoundError(f"iLIDS-VID: {sequences / f'cam{cam}'} not found")
    people = sorted(p.name for p in (sequences / "cam1").iterdir() if p.is_dir())
    if len(people) < 2:
        raise ValueError(
            f"iLIDS-VID: {sequences / 'cam1'} must hold person folders for a training and a test half, "
            f"found {len(people)}"
        )
    pids = [int(re.sub(r"\D", "", name) or index) for index, name in enumerate(people)]
    if len(set(pids)) < len(pids):
        raise ValueError(f"iLIDS-VID: person folder names must carry distinct numbers, got {people}")
    default_split_file = root / "train-test people splits" / "train_test_splits_ilidsvid.mat"
    if split_file is None and default_split_file.is_file():
        split_file = default_split_file
    if split_file is not None:
        order = _ilids_split(Path(split_file), split, len(people))
    else:
        order = torch.randperm(len(people), generator=torch.Generator().manual_seed(seed)).tolist()
    half = len(order) // 2
    test_people, train_people = sorted(order[:half]), sorted(order[half:])

    def tracklets(indices: list[int], cams: Sequence[int]) -> list[Tracklet]:
        out = []
        for index in indices:
            for cam in cams:
                folder = sequences / f"cam{cam}" / people[index]
                if not folder.is_dir():
                    raise FileNotFoundError(f"iLIDS-VID: {folder} not found (person {people[index]} in cam1)")
                frames = tuple(str(p) for p in sorted(folder.glob("*.png")))
                if not frames:
                    raise ValueError(f"iLIDS-VID: {folder} holds no .png frame")
                out.append(Tracklet(frames, pids[index], cam))
        return out

    train, num_train_ids = relabel(tracklets(train_people, (1, 2)))
    query, gallery = tracklets(test_people, (1,)), tracklets(test_people, (2,))
    return checked_split(VideoReIDData(train, query, gallery, num_train_ids, name="iLIDS-VID"), root)
