"""Video ReID data: MARS, LS-VID and iLIDS-VID folder readers and a clip dataset.

A split is a :class:`VideoReIDData`: lists of :class:`Tracklet` (frames, identity, camera) for training,
query and gallery. :class:`ClipDataset` turns a list of tracklets into clips of ``T`` frames with the
samplers of :mod:`lstrl_layers.reid.sampling` and the augmentations of :func:`clip_transforms`
(``torchvision.transforms.v2``: one random crop / flip / erasing per clip, shared by its frames).

Needs the ``examples`` extra: ``torchvision`` (transforms; Pillow reads the images), ``scipy`` (the
``.mat`` files of MARS and iLIDS-VID) and ``h5py`` (LS-VID's MATLAB v7.3 query file), imported only when
reading them.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

import numpy as np
import torch
from einops import rearrange
from torch import Tensor
from torch.utils.data import Dataset

from .sampling import chunk_first_indices, dense_clip_indices, restricted_random_indices

__all__ = [
    "ClipDataset",
    "Tracklet",
    "UnreadableFrame",
    "VideoReIDData",
    "clip_transforms",
    "collate_test_clips",
    "read_ilidsvid",
    "read_lsvid",
    "read_mars",
    "read_rgb",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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
    identities, and ``junk_ids`` lists those the evaluation must ignore (MARS: ``-1``).
    """

    train: list[Tracklet]
    query: list[Tracklet]
    gallery: list[Tracklet]
    num_train_ids: int
    junk_ids: tuple[int, ...] = ()
    name: str = ""
    info: dict[str, object] = field(default_factory=dict)

    def summary(self) -> str:
        def line(part: str, tracks: list[Tracklet]) -> str:
            ids = len({t.pid for t in tracks})
            frames = sum(len(t) for t in tracks)
            return f"  {part:<8} {ids:>5} ids {len(tracks):>6} tracklets {frames:>8} frames"

        parts = (("train", self.train), ("query", self.query), ("gallery", self.gallery))
        return "\n".join([f"{self.name}:"] + [line(p, t) for p, t in parts])


def _relabel(tracklets: list[Tracklet]) -> tuple[list[Tracklet], int]:
    labels = {pid: i for i, pid in enumerate(sorted({t.pid for t in tracklets}))}
    return [Tracklet(t.frames, labels[t.pid], t.camid) for t in tracklets], len(labels)


def _loadmat(path: Path, key: str) -> np.ndarray:
    """Variable ``key`` of a MATLAB file, in MATLAB's row/column order.

    Versions 4 to 7.2 are read with scipy; version 7.3 files are HDF5 and read with h5py, whose arrays come
    in the reverse axis order (MATLAB is column-major), so they are transposed back.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading .mat files needs scipy: pip install 'lstrl_layers[examples]'") from err
    try:
        contents = loadmat(str(path))
    except NotImplementedError:  # MATLAB v7.3: an HDF5 file
        return _load_hdf5_mat(path, key)
    except (ValueError, IndexError, MatReadError) as err:  # scipy < 1.15: IndexError on a truncated file
        raise ValueError(f"{path} is not a readable MATLAB .mat file: {err}") from err
    if key not in contents:
        found = sorted(k for k in contents if not k.startswith("_"))
        raise ValueError(f"{path} has no variable {key!r} (found {found})")
    return np.asarray(contents[key])


def _load_hdf5_mat(path: Path, key: str) -> np.ndarray:
    try:
        import h5py
    except ImportError as err:
        raise ImportError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which needs h5py: pip install 'lstrl_layers[examples]'"
        ) from err
    with h5py.File(path, "r") as contents:
        if key not in contents or not isinstance(contents[key], h5py.Dataset):
            raise ValueError(f"{path} has no variable {key!r} (found {sorted(contents)})")
        return np.asarray(contents[key][()]).T


def _integers(values: np.ndarray, where: str) -> np.ndarray:
    """``values`` as int64, or a ValueError naming ``where`` and the first value that is not an integer."""
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{where} must hold numbers, got an array of {array.dtype}")
    bad = ~np.isfinite(array) | (array != np.round(array)) if array.dtype.kind == "f" else np.zeros(0, bool)
    if bad.any():
        raise ValueError(f"{where} must hold integers, got {array[bad].flat[0]!r}")
    return array.astype(np.int64)


def _query_rows(indices: np.ndarray, num_test: int, where: str) -> list[int]:
    """0-based test rows from 1-based query indices, each checked against the size of the test set."""
    rows = _integers(indices, where).ravel()
    if rows.size == 0:
        raise ValueError(f"{where} lists no query")
    outside = rows[(rows < 1) | (rows > num_test)]
    if outside.size:
        raise ValueError(
            f"{where} must hold 1-based indices of the {num_test} test tracklets, got {int(outside[0])}"
        )
    return [int(i) - 1 for i in rows]


def _query_gallery(
    test: list[Tracklet], query_rows: list[int], query_in_gallery: bool
) -> tuple[list[Tracklet], list[Tracklet]]:
    query = [test[i] for i in query_rows]
    if query_in_gallery:
        return query, test
    chosen = set(query_rows)
    return query, [t for i, t in enumerate(test) if i not in chosen]


def _checked(data: VideoReIDData, root: Path) -> VideoReIDData:
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


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _int(name: str, value: object, minimum: int | None = None) -> int:
    """``value`` if it is an int (not a bool) and at least ``minimum``; TypeError / ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _size(value: object) -> tuple[int, int]:
    """``(H, W)`` of two ints >= 1."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"size must be (H, W), two ints >= 1, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in value):
        raise ValueError(f"size must be (H, W), two ints >= 1, got {value!r}")
    return int(value[0]), int(value[1])


def _root(root: str | Path, dataset: str) -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, got {root!r}")
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset} root {path} not found (no such folder)")
    return path


_MARS_NAME = re.compile(r"(\d{4}|00-1)C(\d)T\d{4}F\d{3}\.\w+")


def _mars_tracklets(root: Path, part: str) -> list[Tracklet]:
    """The tracklets of ``bbox_<part>``, from ``info/<part>_name.txt`` and ``info/tracks_<part>_info.mat``."""
    name_file, mat = root / "info" / f"{part}_name.txt", root / "info" / f"tracks_{part}_info.mat"
    names = name_file.read_text().split()
    if not names:
        raise ValueError(f"{name_file} lists no image")
    where = f"{mat} variable 'track_{part}_info'"
    rows = _integers(_loadmat(mat, f"track_{part}_info"), where)
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
    root = _root(root, "MARS")
    _bool("query_in_gallery", query_in_gallery)
    info = root / "info"
    needed = [info / f"{part}_name.txt" for part in ("train", "test")]
    needed += [info / f"tracks_{part}_info.mat" for part in ("train", "test")]
    needed += [info / "query_IDX.mat", root / "bbox_train", root / "bbox_test"]
    for path in needed:
        if not path.exists():
            raise FileNotFoundError(
                f"MARS: {path} not found (expected the official release: bbox_train/, bbox_test/, info/)"
            )
    train, num_train_ids = _relabel(_mars_tracklets(root, "train"))
    test = _mars_tracklets(root, "test")
    query_file = info / "query_IDX.mat"
    query_rows = _query_rows(
        _loadmat(query_file, "query_IDX"), len(test), f"{query_file} variable 'query_IDX'"
    )
    query, gallery = _query_gallery(test, query_rows, query_in_gallery)
    return _checked(VideoReIDData(train, query, gallery, num_train_ids, junk_ids=(-1,), name="MARS"), root)


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
    root = _root(root, "LS-VID")
    _bool("query_in_gallery", query_in_gallery)
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
    train, num_train_ids = _relabel(_lsvid_tracklets(root, files[0], index))
    test = _lsvid_tracklets(root, files[1], index)
    query_rows = _query_rows(_loadmat(files[2], "query"), len(test), f"{files[2]} variable 'query'")
    query, gallery = _query_gallery(test, query_rows, query_in_gallery)
    return _checked(VideoReIDData(train, query, gallery, num_train_ids, name="LS-VID"), root)


def _ilids_split(split_file: Path, split: int, num_people: int) -> list[int]:
    """0-based person order of row ``split`` of ``ls_set``: a permutation of the ``num_people`` folders."""
    where = f"{split_file} variable 'ls_set'"
    table = _integers(_loadmat(split_file, "ls_set"), where)
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
    root = _root(root, "iLIDS-VID")
    split, seed = _int("split", split, minimum=0), _int("seed", seed)
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

    train, num_train_ids = _relabel(tracklets(train_people, (1, 2)))
    query, gallery = tracklets(test_people, (1,)), tracklets(test_people, (2,))
    return _checked(VideoReIDData(train, query, gallery, num_train_ids, name="iLIDS-VID"), root)


def clip_transforms(
    size: tuple[int, int], train: bool, padding: int = 10, erasing: float = 0.5
) -> Callable[[Tensor], Tensor]:
    """``torchvision.transforms.v2`` pipeline for a uint8 clip ``(T, 3, H, W)`` already resized to ``size``.

    Train (paper §4.2): random horizontal flip, random crop after ``padding`` pixels of zero padding, then
    ImageNet normalization and random erasing (probability ``erasing``). The parameters of each random
    transform are drawn once per call, so all frames of a clip get the same crop, flip and erased box. Test:
    normalization only.
    """
    size, train = _size(size), _bool("train", train)
    padding = _int("padding", padding, minimum=0)
    if isinstance(erasing, bool) or not isinstance(erasing, (int, float)) or not 0 <= erasing <= 1:
        raise ValueError(f"erasing must be a probability in [0, 1], got {erasing!r}")
    from torchvision.transforms import v2

    steps: list[Callable[[Tensor], Tensor]] = []
    if train:
        steps += [v2.RandomHorizontalFlip(), v2.RandomCrop(size, padding=padding)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train and erasing > 0:
        steps.append(v2.RandomErasing(p=erasing, value=0))
    return v2.Compose(steps)


class UnreadableFrame(OSError):
    """A frame file that cannot be decoded; the message names the data set, tracklet and file."""


def read_rgb(path: str | Path) -> Tensor:
    """An image file as a uint8 ``(3, H, W)`` tensor (Pillow; torchvision's own decoders are deprecated)."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    with Image.open(path) as image:
        return TF.pil_to_tensor(image.convert("RGB"))


Sampling = Literal["rrs", "first", "dense"]


def _checked_tracklet(index: int, tracklet: object) -> Tracklet:
    """``tracklet`` if it is a :class:`Tracklet` with frames a clip can be read from."""
    if not isinstance(tracklet, Tracklet):
        raise TypeError(f"tracklets[{index}] must be a Tracklet, got {type(tracklet).__name__}")
    for name in ("pid", "camid"):
        value = getattr(tracklet, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"tracklets[{index}].{name} must be an int, got {value!r}")
    frames = tracklet.frames
    if isinstance(frames, Tensor) and (
        frames.ndim != 4 or frames.shape[1] != 3 or frames.dtype != torch.uint8
    ):
        raise ValueError(
            f"tracklets[{index}].frames must be a uint8 (N, 3, H, W) tensor, "
            f"got {frames.dtype} of shape {tuple(frames.shape)}"
        )
    if len(tracklet) == 0:
        raise ValueError(
            f"tracklets[{index}] (identity {tracklet.pid}, camera {tracklet.camid}) has no frame"
        )
    return tracklet


class ClipDataset(Dataset):
    """Clips of ``T`` frames from tracklets, with their identity and camera.

    ``sampling``:

    - ``"rrs"`` (training): restricted random sampling; item ``(clip (T, 3, H, W), pid, camid)``.
    - ``"first"`` (test): the first frame of each of the ``T`` chunks; item ``(clips (1, T, 3, H, W), ...)``.
    - ``"dense"`` (test): all frames as consecutive ``T``-frame clips (at most ``max_clips``);
      item ``(clips (N, T, 3, H, W), ...)``. Batch test items with :func:`collate_test_clips`.

    Frames are decoded (Pillow) and resized to ``size`` one by one, then ``transform`` (e.g.
    :func:`clip_transforms`) runs on the whole uint8 clip. A frame that cannot be decoded raises
    :class:`UnreadableFrame`, naming the data set (``name``), the tracklet and the file.
    """

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        clip_len: int,
        size: tuple[int, int],
        sampling: Sampling = "rrs",
        transform: Callable[[Tensor], Tensor] | None = None,
        max_clips: int | None = None,
        seed: int | None = None,
        name: str = "",
    ) -> None:
        if sampling not in ("rrs", "first", "dense"):
            raise ValueError(f"sampling must be 'rrs', 'first' or 'dense', got {sampling!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {transform!r}")
        self.tracklets = [_checked_tracklet(i, t) for i, t in enumerate(tracklets)]
        if not self.tracklets:
            raise ValueError("tracklets is empty: a ClipDataset needs at least one tracklet")
        self.clip_len = _int("clip_len", clip_len, minimum=1)
        self.size = _size(size)
        self.sampling = sampling
        self.transform = transform
        self.max_clips = None if max_clips is None else _int("max_clips", max_clips, minimum=1)
        self.generator = None if seed is None else torch.Generator().manual_seed(_int("seed", seed))
        self.name = name  # the data set's, for messages

    def __len__(self) -> int:
        return len(self.tracklets)

    @property
    def labels(self) -> list[int]:
        """Identity of every item, for :class:`~lstrl_layers.reid.sampling.PKBatchSampler`."""
        return [t.pid for t in self.tracklets]

    def _load(self, index: int, indices: Sequence[int]) -> Tensor:
        from torchvision.transforms.v2 import functional as TF

        frames = self.tracklets[index].frames
        loaded = {}
        for i in sorted(set(indices)):
            image = frames[i] if isinstance(frames, Tensor) else self._read(index, i)
            if tuple(image.shape[-2:]) != self.size:
                image = TF.resize(image, list(self.size), antialias=True)
            loaded[i] = image
        return torch.stack([loaded[i] for i in indices])

    def _read(self, index: int, frame: int) -> Tensor:
        tracklet = self.tracklets[index]
        path = str(tracklet.frames[frame])  # a path: frames given as a tensor are never read
        try:
            return read_rgb(path)
        except Exception as err:  # Pillow: OSError (truncated), UnidentifiedImageError, SyntaxError, ...
            where = f"{self.name}: " if self.name else ""
            raise UnreadableFrame(
                f"{where}frame {frame} of tracklet {index} (identity {tracklet.pid}, camera "
                f"{tracklet.camid}) cannot be decoded: {path}: {type(err).__name__}: {err}"
            ) from err

    def _transform(self, clip: Tensor) -> Tensor:
        return clip if self.transform is None else self.transform(clip)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        tracklet = self.tracklets[index]
        n = len(tracklet)
        if self.sampling == "rrs":
            clip = self._load(index, restricted_random_indices(n, self.clip_len, self.generator))
            return self._transform(clip), tracklet.pid, tracklet.camid
        if self.sampling == "first":
            clips = [chunk_first_indices(n, self.clip_len)]
        else:
            clips = dense_clip_indices(n, self.clip_len, self.max_clips)
        frames = self._load(index, [i for clip in clips for i in clip])
        frames = self._transform(frames)
        return rearrange(frames, "(n t) c h w -> n t c h w", t=self.clip_len), tracklet.pid, tracklet.camid


def collate_test_clips(batch: Sequence[tuple[Tensor, int, int]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Batch test items of different clip counts: ``(clips (sum N, T, 3, H, W), counts, pids, camids)``.

    ``counts[i]`` is the number of clips of tracklet ``i``; average their embeddings with
    ``embeddings.split(counts.tolist())``.
    """
    if len(batch) == 0:
        raise ValueError("batch is empty")
    for i, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != 3 or not isinstance(item[0], Tensor):
            raise TypeError(
                f"batch[{i}] must be a ClipDataset test item (clips, pid, camid), got {item!r:.80}"
            )
        if item[0].ndim != 5 or item[0].shape[1:] != batch[0][0].shape[1:]:
            raise ValueError(
                f"batch[{i}] clips must be (N, T, 3, H, W) like batch[0] {tuple(batch[0][0].shape)}, "
                f"got {tuple(item[0].shape)} (test items come from sampling='first' or 'dense')"
            )
    clips, pids, camids = zip(*batch)
    counts = torch.tensor([len(c) for c in clips])
    return torch.cat(clips), counts, torch.tensor(pids), torch.tensor(camids)
