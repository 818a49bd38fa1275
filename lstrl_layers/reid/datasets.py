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
    except (ValueError, MatReadError) as err:
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


def read_mars(root: str | Path, query_in_gallery: bool = True) -> VideoReIDData:
    """The MARS release: ``bbox_train/``, ``bbox_test/`` and ``info/`` under ``root``.

    ``info/train_name.txt`` and ``info/test_name.txt`` list the images (``0001C1T0001F001.jpg``: identity
    ``0001``, camera ``1``; stored as ``bbox_*/0001/0001C1T0001F001.jpg``). ``tracks_*_info.mat`` holds one
    row per tracklet, ``[first, last, identity, camera]`` with 1-based, inclusive rows of the name list, and
    ``query_IDX.mat`` the 1-based test tracklets used as queries. Identity ``-1`` is junk, ``0`` distractors.

    ``query_in_gallery=True`` (the official protocol) ranks every query against the whole test set; the
    query itself is then removed by the same identity / same camera rule. ``False``: the gallery is the test
    set without the query tracklets (as some re-implementations do).
    """
    root = Path(root)
    info = root / "info"

    def tracklets(part: str, key: str) -> list[Tracklet]:
        names = (info / f"{part}_name.txt").read_text().split()
        rows = _loadmat(info / f"tracks_{part}_info.mat", key)
        folder = root / f"bbox_{part}"
        out = []
        for first, last, pid, camid in (tuple(int(v) for v in row[:4]) for row in rows):
            paths = tuple(str(folder / name[:4] / name) for name in names[first - 1 : last])
            out.append(Tracklet(paths, pid, camid))
        return out

    train, num_train_ids = _relabel(tracklets("train", "track_train_info"))
    test = tracklets("test", "track_test_info")
    query_index = [int(i) - 1 for i in _loadmat(info / "query_IDX.mat", "query_IDX").ravel()]
    query = [test[i] for i in query_index]
    if query_in_gallery:
        gallery = test
    else:
        chosen = set(query_index)
        gallery = [t for i, t in enumerate(test) if i not in chosen]
    return VideoReIDData(train, query, gallery, num_train_ids, junk_ids=(-1,), name="MARS")


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
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LS-VID root {root} not found")
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


def read_ilidsvid(
    root: str | Path, split_file: str | Path | None = None, split: int = 0, seed: int = 0
) -> VideoReIDData:
    """iLIDS-VID: ``i-LIDS-VID/sequences/cam1|cam2/personXXX/*.png`` under ``root`` (or ``root`` itself).

    Identities are split in half between training and test. With a split file (``split_file``, or
    ``root/train-test people splits/train_test_splits_ilidsvid.mat`` when present), row ``split`` of its
    ``ls_set`` lists 1-based indices into the sorted person folders: the first half are the test identities,
    the rest training (Wang et al., ECCV 2014). Without one, a random half chosen with ``seed`` is the test
    set. Test queries are the cam1 tracklets, the gallery the cam2 ones; training uses both cameras.
    """
    root = Path(root)
    sequences = root / "sequences" if (root / "sequences").is_dir() else root / "i-LIDS-VID" / "sequences"
    if not sequences.is_dir():
        raise FileNotFoundError(f"no i-LIDS-VID/sequences/ (or sequences/) folder under {root}")
    people = sorted(p.name for p in (sequences / "cam1").iterdir() if p.is_dir())
    if (
        split_file is None
        and (root / "train-test people splits" / "train_test_splits_ilidsvid.mat").is_file()
    ):
        split_file = root / "train-test people splits" / "train_test_splits_ilidsvid.mat"
    if split_file is not None:
        order = [int(i) - 1 for i in _loadmat(Path(split_file), "ls_set")[split]]
    else:
        order = torch.randperm(len(people), generator=torch.Generator().manual_seed(seed)).tolist()
    half = len(order) // 2
    test_people, train_people = sorted(order[:half]), sorted(order[half:])

    def tracklets(indices: list[int], cams: Sequence[int]) -> list[Tracklet]:
        out = []
        for index in indices:
            pid = int(re.sub(r"\D", "", people[index]) or index)
            for cam in cams:
                frames = tuple(
                    str(p) for p in sorted((sequences / f"cam{cam}" / people[index]).glob("*.png"))
                )
                if frames:
                    out.append(Tracklet(frames, pid, cam))
        return out

    train, num_train_ids = _relabel(tracklets(train_people, (1, 2)))
    query, gallery = tracklets(test_people, (1,)), tracklets(test_people, (2,))
    return VideoReIDData(train, query, gallery, num_train_ids, name="iLIDS-VID")


def clip_transforms(
    size: tuple[int, int], train: bool, padding: int = 10, erasing: float = 0.5
) -> Callable[[Tensor], Tensor]:
    """``torchvision.transforms.v2`` pipeline for a uint8 clip ``(T, 3, H, W)`` already resized to ``size``.

    Train (paper §4.2): random horizontal flip, random crop after ``padding`` pixels of zero padding, then
    ImageNet normalization and random erasing (probability ``erasing``). The parameters of each random
    transform are drawn once per call, so all frames of a clip get the same crop, flip and erased box. Test:
    normalization only.
    """
    from torchvision.transforms import v2

    steps: list[Callable[[Tensor], Tensor]] = []
    if train:
        steps += [v2.RandomHorizontalFlip(), v2.RandomCrop(size, padding=padding)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train and erasing > 0:
        steps.append(v2.RandomErasing(p=erasing, value=0))
    return v2.Compose(steps)


def read_rgb(path: str | Path) -> Tensor:
    """An image file as a uint8 ``(3, H, W)`` tensor (Pillow; torchvision's own decoders are deprecated)."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    with Image.open(path) as image:
        return TF.pil_to_tensor(image.convert("RGB"))


Sampling = Literal["rrs", "first", "dense"]


class ClipDataset(Dataset):
    """Clips of ``T`` frames from tracklets, with their identity and camera.

    ``sampling``:

    - ``"rrs"`` (training): restricted random sampling; item ``(clip (T, 3, H, W), pid, camid)``.
    - ``"first"`` (test): the first frame of each of the ``T`` chunks; item ``(clips (1, T, 3, H, W), ...)``.
    - ``"dense"`` (test): all frames as consecutive ``T``-frame clips (at most ``max_clips``);
      item ``(clips (N, T, 3, H, W), ...)``. Batch test items with :func:`collate_test_clips`.

    Frames are decoded (Pillow) and resized to ``size`` one by one, then ``transform`` (e.g.
    :func:`clip_transforms`) runs on the whole uint8 clip.
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
    ) -> None:
        if sampling not in ("rrs", "first", "dense"):
            raise ValueError(f"sampling must be 'rrs', 'first' or 'dense', got {sampling!r}")
        self.tracklets = list(tracklets)
        self.clip_len = clip_len
        self.size = tuple(size)
        self.sampling = sampling
        self.transform = transform
        self.max_clips = max_clips
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.tracklets)

    @property
    def labels(self) -> list[int]:
        """Identity of every item, for :class:`~lstrl_layers.reid.sampling.PKBatchSampler`."""
        return [t.pid for t in self.tracklets]

    def _load(self, frames: Frames, indices: Sequence[int]) -> Tensor:
        from torchvision.transforms.v2 import functional as TF

        loaded = {}
        for i in sorted(set(indices)):
            image = frames[i] if isinstance(frames, Tensor) else read_rgb(frames[i])
            if tuple(image.shape[-2:]) != self.size:
                image = TF.resize(image, list(self.size), antialias=True)
            loaded[i] = image
        return torch.stack([loaded[i] for i in indices])

    def _transform(self, clip: Tensor) -> Tensor:
        return clip if self.transform is None else self.transform(clip)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        tracklet = self.tracklets[index]
        n = len(tracklet)
        if self.sampling == "rrs":
            clip = self._load(tracklet.frames, restricted_random_indices(n, self.clip_len, self.generator))
            return self._transform(clip), tracklet.pid, tracklet.camid
        if self.sampling == "first":
            clips = [chunk_first_indices(n, self.clip_len)]
        else:
            clips = dense_clip_indices(n, self.clip_len, self.max_clips)
        frames = self._load(tracklet.frames, [i for clip in clips for i in clip])
        frames = self._transform(frames)
        return rearrange(frames, "(n t) c h w -> n t c h w", t=self.clip_len), tracklet.pid, tracklet.camid


def collate_test_clips(batch: Sequence[tuple[Tensor, int, int]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Batch test items of different clip counts: ``(clips (sum N, T, 3, H, W), counts, pids, camids)``.

    ``counts[i]`` is the number of clips of tracklet ``i``; average their embeddings with
    ``embeddings.split(counts.tolist())``.
    """
    clips, pids, camids = zip(*batch)
    counts = torch.tensor([len(c) for c in clips])
    return torch.cat(clips), counts, torch.tensor(pids), torch.tensor(camids)
