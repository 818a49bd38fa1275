"""LS-VID (Li et al., ICCV 2019): ``list_sequence/``, the frame folders and the MATLAB v7.3 query file."""

from __future__ import annotations

import bisect
import os
import re
from pathlib import Path

from ..._checks import check_bool
from .matlab import loadmat, query_indices
from .tracklets import Tracklet, VideoReIDData, checked_split, dataset_root, query_gallery, relabel

__all__ = ["read_lsvid"]


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class _FolderIndex:
    """Sorted image names per folder, listed once, to find the frames that start with a prefix."""

    def __init__(self) -> None:
        self._names: dict[Path, list[str]] = {}

    def frames(self, folder: Path, prefix: str) -> list[str]:
        if folder not in self._names:
            with os.scandir(folder) as entries:
                self._names[folder] = sorted(
                    e.name for e in entries if e.is_file() and e.name.lower().endswith(_IMAGE_SUFFIXES)
                )
        names = self._names[folder]
        start = bisect.bisect_left(names, prefix)
        stop = start
        while stop < len(names) and names[stop].startswith(prefix):
            stop += 1
        return names[start:stop]


def _read_sequence_list(path: Path) -> list[tuple[int, str, int]]:
    """``(line number, frame path prefix, identity)`` of each line of an LS-VID sequence list."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not re.fullmatch(r"-?\d+", fields[1]):
            raise ValueError(
                f"{path}, line {number}: expected '<frame path prefix> <identity>', got {line!r}"
            )
        entries.append((number, fields[0], int(fields[1])))
    if not entries:
        raise ValueError(f"{path} lists no tracklet")
    return entries


def _lsvid_tracklets(root: Path, list_file: Path, index: _FolderIndex) -> list[Tracklet]:
    out = []
    for number, prefix, pid in _read_sequence_list(list_file):
        where = f"{list_file}, line {number}"
        folder_part, _, name_prefix = prefix.rpartition("/")
        folder = root / folder_part
        if not folder.is_dir():
            raise FileNotFoundError(f"{where}: folder {folder} of tracklet {prefix!r} not found")
        names = index.frames(folder, name_prefix)
        if not names:
            raise FileNotFoundError(f"{where}: no image in {folder} whose name starts with {name_prefix!r}")
        cams = {name.split("_")[2] if name.count("_") >= 3 else "" for name in names}
        if len(cams) != 1 or not next(iter(cams)).isdigit():
            raise ValueError(
                f"{where}: frames must be named '<identity>_<tracklet>_<camera>_<frame>' with one camera "
                f"per tracklet, got {names[0]!r} .. {names[-1]!r}"
            )
        out.append(Tracklet(tuple(str(folder / name) for name in names), pid, int(cams.pop())))
    return out


def read_lsvid(root: str | Path, query_in_gallery: bool = True) -> VideoReIDData:
    """LS-VID (Li et al., ICCV 2019), the official release under ``root`` (or ``root/LS-VID``).

    The layout read is the one the release ships and the public LS-VID loaders read (e.g. BiCnet-TKS's
    ``data_manager/lsvid.py``):

    - ``list_sequence/list_seq_train.txt``, ``list_sequence/list_seq_test.txt``: one tracklet per line,
      ``<frame path prefix> <identity>``, the prefix relative to ``root`` (``tracklet_train/...``,
      ``tracklet_test/...``). The tracklet's frames are the images of that folder whose names start with
      the prefix, in name order; a name is ``<identity>_<tracklet>_<camera>_<frame>`` and the camera
      (1..15) is its third ``_``-separated field.
    - ``test/data/info_test.mat`` (MATLAB v7.3, i.e. HDF5, read with h5py; older .mat versions with scipy):
      variable ``query``, the 1-based lines of ``list_seq_test.txt`` that are queries.

    ``query_in_gallery=True`` is the official protocol (the release's evaluation script): every query is
    ranked against the whole test set, and the query itself is removed by the same identity / same camera
    rule. ``False``: the gallery is the test set without the queries (as some re-implementations do). No
    identity is junk. Training identities are relabelled ``0..N-1`` in sorted order.
    """
    root = dataset_root(root, "LS-VID")
    check_bool("query_in_gallery", query_in_gallery)
    if not (root / "list_sequence").is_dir() and (root / "LS-VID" / "list_sequence").is_dir():
        root = root / "LS-VID"
    files = [root / "list_sequence" / f"list_seq_{part}.txt" for part in ("train", "test")]
    files.append(root / "test" / "data" / "info_test.mat")
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(
                f"LS-VID: {path} not found (expected the official release: list_sequence/, test/data/, "
                "tracklet_train/, tracklet_test/)"
            )
    index = _FolderIndex()
    train, num_train_ids = relabel(_lsvid_tracklets(root, files[0], index))
    test = _lsvid_tracklets(root, files[1], index)
    query_rows = query_indices(loadmat(files[2], "query"), len(test), f"{files[2]} variable 'query'")
    query, gallery = query_gallery(test, query_rows, query_in_gallery)
    return checked_split(VideoReIDData(train, query, gallery, num_train_ids, name="LS-VID"), root)
