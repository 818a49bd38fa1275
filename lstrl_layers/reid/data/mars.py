"""MARS (Zheng et al., ECCV 2016): ``bbox_train/``, ``bbox_test/`` and ``info/``."""

from __future__ import annotations

import re
from pathlib import Path

from ..._checks import check_bool
from .matlab import integers, loadmat, query_indices
from .tracklets import Tracklet, VideoReIDData, checked_split, dataset_root, query_gallery, relabel

__all__ = ["read_mars"]


_MARS_NAME = re.compile(r"(\d{4}|00-1)C(\d)T\d{4}F\d{3}\.\w+")


def _mars_tracklets(root: Path, part: str) -> list[Tracklet]:
    """The tracklets of ``bbox_<part>``, from ``info/<part>_name.txt`` and ``info/tracks_<part>_info.mat``."""
    name_file, mat = root / "info" / f"{part}_name.txt", root / "info" / f"tracks_{part}_info.mat"
    names = name_file.read_text().split()
    if not names:
        raise ValueError(f"{name_file} lists no image")
    where = f"{mat} variable 'track_{part}_info'"
    rows = integers(loadmat(mat, f"track_{part}_info"), where)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] < 4:
        raise ValueError(
            f"{where} must be a (tracklets, 4) matrix of [first, last, identity, camera] rows, "
            f"got shape {rows.shape}"
        )
    folder = root / f"bbox_{part}"
    out = []
    for number, (first, last, pid, camid) in enumerate(rows[:, :4].tolist(), start=1):
        if not 1 <= first <= last <= len(names):
            raise ValueError(
                f"{where}, row {number}: frames [{first}, {last}] must satisfy 1 <= first <= last <= "
                f"{len(names)} (1-based lines of {name_file.name})"
            )
        for name in (names[first - 1], names[last - 1]):
            match = _MARS_NAME.fullmatch(name)
            if match is None:
                raise ValueError(f"{name_file}: {name!r} is not a MARS image name like '0001C1T0001F001.jpg'")
            if (-1 if match[1] == "00-1" else int(match[1]), int(match[2])) != (pid, camid):
                raise ValueError(
                    f"{where}, row {number} says identity {pid}, camera {camid}, but its frames "
                    f"[{first}, {last}] include {name!r}"
                )
        paths = tuple(str(folder / name[:4] / name) for name in names[first - 1 : last])
        if not Path(paths[0]).is_file():
            raise FileNotFoundError(f"{where}, row {number}: frame {paths[0]} not found")
        out.append(Tracklet(paths, pid, camid))
    return out


def read_mars(root: str | Path, query_in_gallery: bool = True) -> VideoReIDData:
    """The MARS release: ``bbox_train/``, ``bbox_test/`` and ``info/`` under ``root``.

    ``info/train_name.txt`` and ``info/test_name.txt`` list the images (``0001C1T0001F001.jpg``: identity
    ``0001``, camera ``1``; stored as ``bbox_*/0001/0001C1T0001F001.jpg``). ``tracks_*_info.mat`` holds one
    row per tracklet, ``[first, last, identity, camera]`` with 1-based, inclusive rows of the name list, and
    ``query_IDX.mat`` the 1-based test tracklets used as queries. Identity ``-1`` is junk, ``0`` distractors.

    ``query_in_gallery=True`` (the official protocol) ranks every query against the whole test set; the
    query itself is then removed by the same identity / same camera rule. ``False``: the gallery is the test
    set without the query tracklets (as some re-implementations do).

    Raises ``FileNotFoundError`` naming a missing file or folder, ``ValueError`` naming the file and row of
    an index that does not fit the name list (frames out of range, identity or camera not those of its
    images, a query index past the test set) or an empty part.
    """
    root = dataset_root(root, "MARS")
    check_bool("query_in_gallery", query_in_gallery)
    info = root / "info"
    needed = [info / f"{part}_name.txt" for part in ("train", "test")]
    needed += [info / f"tracks_{part}_info.mat" for part in ("train", "test")]
    needed += [info / "query_IDX.mat", root / "bbox_train", root / "bbox_test"]
    for path in needed:
        if not path.exists():
            raise FileNotFoundError(
                f"MARS: {path} not found (expected the official release: bbox_train/, bbox_test/, info/)"
            )
    train, num_train_ids = relabel(_mars_tracklets(root, "train"))
    test = _mars_tracklets(root, "test")
    query_file = info / "query_IDX.mat"
    query_rows = query_indices(
        loadmat(query_file, "query_IDX"), len(test), f"{query_file} variable 'query_IDX'"
    )
    query, gallery = query_gallery(test, query_rows, query_in_gallery)
    return checked_split(
        VideoReIDData(train, query, gallery, num_train_ids, junk_ids=(-1,), name="MARS"), root
    )
