"""MARS, LS-VID and iLIDS-VID folder readers (on tiny folders written here), synthetic data, clip dataset."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from lstrl_layers.reid import (
    ClipDataset,
    Tracklet,
    clip_transforms,
    collate_test_clips,
    read_ilidsvid,
    read_lsvid,
    read_mars,
    synthetic_video_reid,
)

io = pytest.importorskip("scipy.io")
h5py = pytest.importorskip("h5py")
Image = pytest.importorskip("PIL.Image")

from _datasets import mars_release as _mars  # noqa: E402
from _datasets import write_image as _write_image  # noqa: E402


def test_read_mars(tmp_path: Path) -> None:
    _mars(tmp_path)
    data = read_mars(tmp_path)
    assert data.num_train_ids == 2 and data.junk_ids == (-1,)
    assert [(t.pid, t.camid, len(t)) for t in data.train] == [(0, 1, 3), (0, 2, 2), (1, 1, 2)]
    assert (
        Path(data.train[1].frames[0]).relative_to(tmp_path).as_posix()
        == "bbox_train/0005/0005C2T0002F001.jpg"
    )
    assert all(Path(f).is_file() for t in data.train + data.gallery for f in t.frames)
    assert [(t.pid, t.camid) for t in data.query] == [(5, 1)]
    assert [(t.pid, t.camid) for t in data.gallery] == [(5, 1), (5, 1), (5, 3), (-1, 2), (0, 1)]
    assert Path(data.gallery[3].frames[0]).parent.name == "00-1"
    assert len(read_mars(tmp_path, query_in_gallery=False).gallery) == 4
    assert "train" in data.summary()


def _set_rows(root: Path, part: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """Rewrite ``tracks_<part>_info.mat`` of a MARS tree with ``change(rows)``."""
    path = root / "info" / f"tracks_{part}_info.mat"
    rows = io.loadmat(str(path))[f"track_{part}_info"].astype(float)
    io.savemat(str(path), {f"track_{part}_info": change(rows)})


def _set_cell(part: str, row: int, col: int, value: float) -> Callable[[Path], None]:
    def change(rows: np.ndarray) -> np.ndarray:
        rows[row, col] = value
        return rows

    return lambda root: _set_rows(root, part, change)


MARS_BREAKS = {  # what is wrong -> (change to the release, error, words the message must hold)
    "missing query index": (
        lambda r: (r / "info" / "query_IDX.mat").unlink(),
        FileNotFoundError,
        ["query_IDX.mat not found"],
    ),
    "missing bbox_test": (
        lambda r: shutil.rmtree(r / "bbox_test"),
        FileNotFoundError,
        ["bbox_test not found"],
    ),
    "missing frame": (
        lambda r: (r / "bbox_train" / "0009" / "0009C1T0003F001.jpg").unlink(),
        FileNotFoundError,
        ["row 3", "0009C1T0003F001.jpg not found"],
    ),
    "row past the name list": (
        _set_cell("train", 2, 1, 99),
        ValueError,
        ["track_train_info', row 3", "[6, 99]", "<= 7"],
    ),
    "row starting at 0": (
        _set_cell("test", 0, 0, 0),
        ValueError,
        ["track_test_info', row 1", "1 <= first <= last"],
    ),
    "row ending before it starts": (
        _set_cell("train", 0, 1, 0),
        ValueError,
        ["row 1", "[1, 0]"],
    ),
    "row with another identity than its frames": (
        _set_cell("train", 2, 2, 6),
        ValueError,
        ["row 3 says identity 6, camera 1", "0009C1T0003F001.jpg"],
    ),
    "row with another camera than its frames": (
        _set_cell("test", 2, 3, 2),
        ValueError,
        ["row 3 says identity 5, camera 2"],
    ),
    "fractional row value": (
        _set_cell("train", 0, 1, 2.5),
        ValueError,
        ["must hold integers", "2.5"],
    ),
    "rows of three columns": (
        lambda r: _set_rows(r, "train", lambda rows: rows[:, :3]),
        ValueError,
        ["(tracklets, 4) matrix", "(3, 3)"],
    ),
    "no training tracklet": (
        lambda r: _set_rows(r, "train", lambda rows: np.zeros((0, 4))),
        ValueError,
        ["track_train_info", "(tracklets, 4) matrix"],
    ),
    "empty name list": (
        lambda r: (r / "info" / "train_name.txt").write_text("\n"),
        ValueError,
        ["train_name.txt lists no image"],
    ),
    "query index past the test set": (
        lambda r: io.savemat(str(r / "info" / "query_IDX.mat"), {"query_IDX": np.array([[1, 6]])}),
        ValueError,
        ["query_IDX", "5 test tracklets", "got 6"],
    ),
    "no query": (
        lambda r: io.savemat(str(r / "info" / "query_IDX.mat"), {"query_IDX": np.zeros((1, 0))}),
        ValueError,
        ["lists no query"],
    ),
    "misnamed variable": (
        lambda r: io.savemat(str(r / "info" / "query_IDX.mat"), {"query": np.array([[1]])}),
        ValueError,
        ["no variable 'query_IDX'", "['query']"],
    ),
}


@pytest.mark.parametrize("case", list(MARS_BREAKS))
def test_read_mars_names_what_is_wrong(tmp_path: Path, case: str) -> None:
    _mars(tmp_path)
    read_mars(tmp_path)  # the intact release reads
    change, error, words = MARS_BREAKS[case]
    change(tmp_path)
    with pytest.raises(error) as info:
        read_mars(tmp_path)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_read_mars_root_and_arguments(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="MARS root .*nowhere"):
        read_mars(tmp_path / "nowhere")
    _mars(tmp_path)
    with pytest.raises(TypeError, match="query_in_gallery"):
        read_mars(tmp_path, query_in_gallery="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="root"):
        read_mars(None)  # type: ignore[arg-type]


def _write_v73_mat(path: Path, variables: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 behind a 512-byte header, arrays in reverse axis order."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, value in variables.items():
            f[key] = np.asarray(value, float).T
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116) + bytes(8) + b"\x00\x02IM"
    )
    with open(path, "r+b") as f:
        f.write(header)


LSVID_TRACKS = {  # (identity, camera, frames), in list order
    "train": [(7, 1, 3), (7, 4, 2), (12, 2, 2)],
    "test": [(3, 1, 2), (3, 5, 3), (3, 1, 1), (8, 2, 2), (8, 3, 2)],
}


def _lsvid(root: Path, query: list[int], v73: bool = True) -> None:
    """The official LS-VID layout: list_sequence/list_seq_*.txt, tracklet_*/<id>/, test/data/info_test.mat."""
    (root / "list_sequence").mkdir(parents=True)
    for part, specs in LSVID_TRACKS.items():
        lines = []
        for track, (pid, cam, length) in enumerate(specs, start=1):
            prefix = f"tracklet_{part}/{pid:04d}/{pid:04d}_{track:03d}_{cam:02d}"
            for frame in reversed(range(1, length + 1)):  # written out of order: the reader sorts by name
                _write_image(root / f"{prefix}_{frame:04d}.jpg", 60 * frame)
            lines.append(f"{prefix} {pid}")
        (root / "list_sequence" / f"list_seq_{part}.txt").write_text("\n".join(lines) + "\n")
    (root / "tracklet_test" / "0003" / "Thumbs.db").write_bytes(b"not an image")
    (root / "test" / "data").mkdir(parents=True)
    info = np.array([[0, 0, pid, cam] for pid, cam, _ in LSVID_TRACKS["test"]])
    variables = {"query": np.array([query]), "info_test": info}
    if v73:
        _write_v73_mat(root / "test" / "data" / "info_test.mat", variables)
    else:
        io.savemat(str(root / "test" / "data" / "info_test.mat"), variables)


@pytest.mark.parametrize("v73", [True, False], ids=["matlab-v7.3", "matlab-v5"])
def test_read_lsvid(tmp_path: Path, v73: bool) -> None:
    _lsvid(tmp_path / "LS-VID", query=[1, 4], v73=v73)
    data = read_lsvid(tmp_path)  # the folder holding LS-VID/, or LS-VID/ itself
    assert data.name == "LS-VID" and data.num_train_ids == 2 and data.junk_ids == ()
    assert [(t.pid, t.camid, len(t)) for t in data.train] == [(0, 1, 3), (0, 4, 2), (1, 2, 2)]
    test = [(pid, cam, length) for pid, cam, length in LSVID_TRACKS["test"]]
    assert [(t.pid, t.camid, len(t)) for t in data.gallery] == test  # official: the whole test set
    assert [(t.pid, t.camid) for t in data.query] == [(3, 1), (8, 2)]
    assert data.query[1] is data.gallery[3]
    first = Path(data.train[0].frames[0]).relative_to(tmp_path / "LS-VID").as_posix()
    assert first == "tracklet_train/0007/0007_001_01_0001.jpg"
    for t in data.train + data.gallery:  # frames in order, each a file of its own tracklet
        names = [Path(f).name for f in t.frames]
        assert names == sorted(names) and all(Path(f).is_file() for f in t.frames)
        assert {n.split("_")[2] for n in names} == {f"{t.camid:02d}"}
    other = read_lsvid(tmp_path / "LS-VID", query_in_gallery=False)
    assert [(t.pid, t.camid) for t in other.gallery] == [(3, 5), (3, 1), (8, 3)]


def _replace_line(path: Path, number: int, line: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = line
    path.write_text("\n".join(lines) + "\n")


LSVID_BREAKS = {  # what is wrong -> (change to the release, error, words the message must hold)
    "missing list": (
        lambda r: (r / "list_sequence" / "list_seq_test.txt").unlink(),
        FileNotFoundError,
        ["list_seq_test.txt"],
    ),
    "missing query file": (
        lambda r: (r / "test" / "data" / "info_test.mat").unlink(),
        FileNotFoundError,
        ["info_test.mat"],
    ),
    "line without identity": (
        lambda r: _replace_line(
            r / "list_sequence" / "list_seq_train.txt", 2, "tracklet_train/0007/0007_002_04"
        ),
        ValueError,
        ["list_seq_train.txt, line 2", "'<frame path prefix> <identity>'"],
    ),
    "no frame for a prefix": (
        lambda r: _replace_line(
            r / "list_sequence" / "list_seq_test.txt", 3, "tracklet_test/0003/0003_009_01 3"
        ),
        FileNotFoundError,
        ["list_seq_test.txt, line 3", "0003_009_01"],
    ),
    "missing tracklet folder": (
        lambda r: _replace_line(
            r / "list_sequence" / "list_seq_test.txt", 1, "tracklet_test/0999/0999_001_01 999"
        ),
        FileNotFoundError,
        ["line 1", "0999"],
    ),
    "empty list": (
        lambda r: (r / "list_sequence" / "list_seq_train.txt").write_text("\n"),
        ValueError,
        ["list_seq_train.txt lists no tracklet"],
    ),
    "query index 0": (
        lambda r: _write_v73_mat(r / "test" / "data" / "info_test.mat", {"query": np.array([[0, 2]])}),
        ValueError,
        ["1-based indices of the 5 test tracklets", "got 0"],
    ),
    "query index past the test list": (
        lambda r: _write_v73_mat(r / "test" / "data" / "info_test.mat", {"query": np.array([[2, 6]])}),
        ValueError,
        ["5 test tracklets", "got 6"],
    ),
    "fractional query index": (
        lambda r: _write_v73_mat(r / "test" / "data" / "info_test.mat", {"query": np.array([[1.5]])}),
        ValueError,
        ["must hold integers", "1.5"],
    ),
    "no query": (
        lambda r: _write_v73_mat(r / "test" / "data" / "info_test.mat", {"query": np.zeros((1, 0))}),
        ValueError,
        ["lists no query"],
    ),
    "no query variable": (
        lambda r: _write_v73_mat(r / "test" / "data" / "info_test.mat", {"gallery": np.array([[1]])}),
        ValueError,
        ["no variable 'query'"],
    ),
    "not a .mat file": (
        lambda r: (r / "test" / "data" / "info_test.mat").write_text("query = [1, 4]"),
        ValueError,
        ["not a readable MATLAB .mat file"],
    ),
    "frame name without camera": (
        lambda r: [
            _write_image(r / "tracklet_train" / "0012" / "frame0001.jpg", 9),
            _replace_line(r / "list_sequence" / "list_seq_train.txt", 3, "tracklet_train/0012/frame 12"),
        ],
        ValueError,
        ["list_seq_train.txt, line 3", "<identity>_<tracklet>_<camera>_<frame>", "frame0001.jpg"],
    ),
}


@pytest.mark.parametrize("case", list(LSVID_BREAKS))
def test_read_lsvid_names_what_is_wrong(tmp_path: Path, case: str) -> None:
    _lsvid(tmp_path, query=[1, 4])
    read_lsvid(tmp_path)  # the intact release reads
    change, error, words = LSVID_BREAKS[case]
    change(tmp_path)
    with pytest.raises(error) as info:
        read_lsvid(tmp_path)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_read_lsvid_missing_root_and_h5py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_lsvid(tmp_path / "nowhere")
    _lsvid(tmp_path, query=[1])
    monkeypatch.setitem(sys.modules, "h5py", None)  # an environment without h5py
    with pytest.raises(ImportError, match="v7.3"):
        read_lsvid(tmp_path)


def _ilids(root: Path, people: int = 4) -> None:
    for cam in (1, 2):
        for person in range(1, people + 1):
            for frame in range(3 + person):
                name = f"cam{cam}_person{person:03d}_{frame:05d}.png"
                _write_image(
                    root / "i-LIDS-VID" / "sequences" / f"cam{cam}" / f"person{person:03d}" / name,
                    10 * person,
                )


def _write_split(rows: list[list[int]]) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        path = root / "train-test people splits" / "train_test_splits_ilidsvid.mat"
        path.parent.mkdir(exist_ok=True)
        io.savemat(str(path), {"ls_set": np.array(rows)})

    return write


def test_read_ilidsvid_with_split_file(tmp_path: Path) -> None:
    _ilids(tmp_path)
    split_file = tmp_path / "train-test people splits" / "train_test_splits_ilidsvid.mat"
    split_file.parent.mkdir()
    io.savemat(str(split_file), {"ls_set": np.array([[1, 2, 3, 4], [4, 2, 1, 3]])})
    data = read_ilidsvid(tmp_path, split=1)  # the release's split file, found by itself
    # row 1: first half (persons 4, 2) is the test set, the rest (1, 3) training
    assert sorted({t.pid for t in data.query}) == [2, 4]
    assert [(t.pid, t.camid) for t in data.query] == [(2, 1), (4, 1)]
    assert [(t.pid, t.camid) for t in data.gallery] == [(2, 2), (4, 2)]
    assert [(t.pid, t.camid, len(t)) for t in data.train] == [(0, 1, 4), (0, 2, 4), (1, 1, 6), (1, 2, 6)]
    assert all(Path(f).suffix == ".png" for t in data.train for f in t.frames)
    other = read_ilidsvid(tmp_path / "i-LIDS-VID", split_file=split_file, split=0)  # root may be i-LIDS-VID
    assert sorted({t.pid for t in other.query}) == [1, 2]


def test_read_ilidsvid_random_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    _ilids(tmp_path, people=6)
    a, b = read_ilidsvid(tmp_path, seed=3), read_ilidsvid(tmp_path, seed=3)
    assert [t.frames for t in a.query] == [t.frames for t in b.query]
    test_ids = {t.pid for t in a.query}
    train_people = {Path(t.frames[0]).parent.name for t in a.train}
    assert len(test_ids) == 3 and len(train_people) == 3
    assert not {f"person{i:03d}" for i in test_ids} & train_people
    with pytest.raises(FileNotFoundError):
        read_ilidsvid(tmp_path / "nowhere")


ILIDS_BREAKS = {  # what is wrong -> (change to the release, arguments, error, words the message must hold)
    "no person folder": (
        lambda r: [shutil.rmtree(p) for p in (r / "i-LIDS-VID" / "sequences" / "cam1").iterdir()],
        {},
        ValueError,
        ["cam1 must hold person folders", "found 0"],
    ),
    "missing camera folder": (
        lambda r: shutil.rmtree(r / "i-LIDS-VID" / "sequences" / "cam2"),
        {},
        FileNotFoundError,
        ["cam2 not found"],
    ),
    "person missing in cam2": (
        lambda r: shutil.rmtree(r / "i-LIDS-VID" / "sequences" / "cam2" / "person003"),
        {},
        FileNotFoundError,
        ["cam2/person003 not found"],
    ),
    "person folder without frames": (
        lambda r: [p.unlink() for p in (r / "i-LIDS-VID" / "sequences" / "cam1" / "person002").iterdir()],
        {},
        ValueError,
        ["cam1/person002 holds no .png frame"],
    ),
    "split row past the table": (
        _write_split([[1, 2, 3, 4], [4, 3, 2, 1]]),
        {"split": 2},
        ValueError,
        ["0..1", "2"],
    ),
    "split row that is not a permutation": (
        _write_split([[1, 1, 2, 3]]),
        {},
        ValueError,
        ["row 0", "1..4", "once each"],
    ),
    "split row of another data set": (
        _write_split([[1, 2, 3, 4, 5, 6]]),
        {},
        ValueError,
        ["1..4", "6 values from 1 to 6"],
    ),
    "split given as text": (lambda r: None, {"split": "0"}, TypeError, ["split must be an int", "'0'"]),
    "negative split": (lambda r: None, {"split": -1}, ValueError, ["split must be an int >= 0"]),
    "missing split file": (
        lambda r: None,
        {"split_file": "nowhere/splits.mat"},
        FileNotFoundError,
        ["nowhere/splits.mat not found"],
    ),
}


@pytest.mark.parametrize("case", list(ILIDS_BREAKS))
def test_read_ilidsvid_names_what_is_wrong(tmp_path: Path, case: str) -> None:
    _ilids(tmp_path)
    read_ilidsvid(tmp_path)  # the intact release reads
    change, kwargs, error, words = ILIDS_BREAKS[case]
    change(tmp_path)
    with pytest.raises(error) as info:
        read_ilidsvid(tmp_path, **kwargs)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_clip_dataset_reads_and_resizes_frames(tmp_path: Path) -> None:
    _mars(tmp_path)
    data = read_mars(tmp_path)
    train = ClipDataset(data.train, 4, (8, 4), "rrs", seed=0)
    clip, pid, camid = train[0]  # 3 frames -> padded to 4, in order
    assert clip.shape == (4, 3, 8, 4) and clip.dtype == torch.uint8 and (pid, camid) == (0, 1)
    assert train.pids == [0, 0, 1]
    values = clip[:, 0, 4, 2].tolist()
    assert values == sorted(values)
    dense = ClipDataset(data.gallery, 2, (16, 8), "dense", clip_transforms((16, 8), train=False))
    clips, pid, _ = dense[1]  # 3 frames -> 2 clips of 2
    assert clips.shape == (2, 2, 3, 16, 8) and clips.dtype == torch.float32 and pid == 5
    first = ClipDataset(data.gallery, 2, (16, 8), "first")
    batch = collate_test_clips([dense[1], first[0], dense[4]])
    assert batch[0].shape == (4, 2, 3, 16, 8)
    assert batch[1].tolist() == [2, 1, 1] and batch[2].tolist() == [5, 5, 0]
    with pytest.raises(ValueError):
        ClipDataset(data.gallery, 2, (16, 8), "all")


def _tracklet(frames: int = 3) -> Tracklet:
    return Tracklet(torch.zeros(frames, 3, 8, 4, dtype=torch.uint8), 0, 0)


CLIP_DATASET_BREAKS = {  # argument -> (keyword arguments, error, words the message must hold)
    "num_frames 0": (
        {"num_frames": 0},
        ValueError,
        ["num_frames (T, frames per clip) must be an int >= 1, got 0"],
    ),
    "num_frames float": (
        {"num_frames": 4.0},
        TypeError,
        ["num_frames (T, frames per clip)", "got 4.0 (float)"],
    ),
    "num_frames bool": (
        {"num_frames": True},
        TypeError,
        ["num_frames (T, frames per clip)", "got True (bool)"],
    ),
    "num_frames missing": ({"num_frames": None}, TypeError, ["num_frames (T, frames per clip)", "got None"]),
    "size of one value": ({"size": (8,)}, TypeError, ["size must be (H, W), two ints >= 1", "(8,)"]),
    "size 0": ({"size": (0, 4)}, ValueError, ["size[0] must be an int >= 1, got 0"]),
    "size as text": ({"size": "8x4"}, TypeError, ["size must be (H, W)", "'8x4' (str)"]),
    "max_clips 0": ({"max_clips": 0}, ValueError, ["max_clips must be an int >= 1, got 0"]),
    "unknown sampling": (
        {"sampling": "all"},
        ValueError,
        ["sampling must be one of ('rrs', 'first', 'even', 'dense'), got 'all'"],
    ),
    "sampling not a name": ({"sampling": 1}, TypeError, ["sampling must be one of", "got 1 (int)"]),
    "tracklets not a list": (
        {"tracklets": 3},
        TypeError,
        ["tracklets must be a list of Tracklet, got 3 (int)"],
    ),
    "name not a str": (
        {"name": None},
        TypeError,
        ["name must be the data set's name", "got None (NoneType)"],
    ),
    "transform not callable": ({"transform": "flip"}, TypeError, ["transform must be callable", "'flip'"]),
    "no tracklet": ({"tracklets": []}, ValueError, ["tracklets is empty"]),
    "tracklet without frames": (
        {"tracklets": [_tracklet(), _tracklet(0)]},
        ValueError,
        ["tracklets[1]", "no frame"],
    ),
    "path list without frames": (
        {"tracklets": [Tracklet((), 4, 1)]},
        ValueError,
        ["tracklets[0] (identity 4, camera 1) has no frame"],
    ),
    "float frames": (
        {"tracklets": [Tracklet(torch.rand(3, 3, 8, 4), 0, 0)]},
        TypeError,
        ["tracklets[0].frames must be a uint8 (N, 3, H, W) tensor, got a torch.float32 tensor"],
    ),
    "frames of one channel": (
        {"tracklets": [Tracklet(torch.zeros(3, 1, 8, 4, dtype=torch.uint8), 0, 0)]},
        ValueError,
        ["tracklets[0].frames must be a uint8 (N, 3, H, W) tensor, got shape (3, 1, 8, 4)"],
    ),
    "float identity": (
        {"tracklets": [Tracklet(torch.zeros(3, 3, 8, 4, dtype=torch.uint8), 1.7, 0)]},
        TypeError,
        ["tracklets[0].pid must be an int, got 1.7"],
    ),
    "seed as text": ({"seed": "0"}, TypeError, ["seed must be an int, got '0'"]),
    "not a tracklet": ({"tracklets": [("a.jpg",)]}, TypeError, ["tracklets[0] must be a Tracklet", "tuple"]),
}


@pytest.mark.parametrize("case", list(CLIP_DATASET_BREAKS))
def test_clip_dataset_refuses_bad_arguments(case: str) -> None:
    good = {"tracklets": [_tracklet()], "num_frames": 2, "size": (8, 4), "sampling": "dense"}
    ClipDataset(**good)  # type: ignore[arg-type]
    kwargs, error, words = CLIP_DATASET_BREAKS[case]
    with pytest.raises(error) as info:
        ClipDataset(**{**good, **kwargs})  # type: ignore[arg-type]
    assert all(word in str(info.value) for word in words), str(info.value)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"size": (16, 0)}, ValueError, ["size[1] must be an int >= 1, got 0"]),
        ({"train": "yes"}, TypeError, ["train must be True or False", "'yes'"]),
        ({"padding": -1}, ValueError, ["padding must be an int >= 0, got -1"]),
        ({"erasing": 1.5}, ValueError, ["erasing must be a probability in [0, 1], got 1.5"]),
        ({"erasing": "0.5"}, TypeError, ["erasing must be a probability in [0, 1], got '0.5' (str)"]),
        ({"erasing": True}, TypeError, ["erasing must be a probability in [0, 1], got True (bool)"]),
    ],
)
def test_clip_transforms_refuses_bad_arguments(kwargs: dict, error: type, words: list[str]) -> None:
    clip_transforms((16, 8), train=True, padding=0, erasing=1.0)  # the limits themselves are accepted
    with pytest.raises(error) as info:
        clip_transforms(**{"size": (16, 8), "train": True, **kwargs})
    assert all(word in str(info.value) for word in words), str(info.value)


def test_collate_test_clips_refuses_what_it_cannot_batch() -> None:
    dense = ClipDataset([_tracklet(5), _tracklet(2)], 2, (8, 4), "dense")
    clips, counts, _, _ = collate_test_clips([dense[0], dense[1]])
    assert clips.shape == (4, 2, 3, 8, 4) and counts.tolist() == [3, 1]
    rrs = ClipDataset([_tracklet()], 2, (8, 4), "rrs")
    other_size = ClipDataset([_tracklet()], 2, (16, 8), "first")
    cases = [
        ([], ValueError, "batch is empty"),
        (
            [dense[0], rrs[0]],
            ValueError,
            "batch[1] clips must be (N, T, 3, H, W) like batch[0] (3, 2, 3, 8, 4)",
        ),
        ([dense[0], other_size[0]], ValueError, "got (1, 2, 3, 16, 8)"),
        ([dense[0], dense[0][0]], TypeError, "batch[1] must be a ClipDataset test item"),
    ]
    for batch, error, words in cases:
        with pytest.raises(error) as info:
            collate_test_clips(batch)
        assert words in str(info.value), str(info.value)


def test_train_transform_is_shared_by_the_frames_of_a_clip() -> None:
    torch.manual_seed(0)
    transform = clip_transforms((16, 8), train=True, padding=3, erasing=1.0)
    frame = torch.randint(0, 256, (3, 16, 8), dtype=torch.uint8)
    out = transform(frame.expand(4, 3, 16, 8).clone())
    assert out.shape == (4, 3, 16, 8) and out.dtype == torch.float32
    assert all(torch.equal(out[0], out[t]) for t in range(1, 4))  # same crop, flip and erased box


def test_synthetic_identities() -> None:
    data = synthetic_video_reid(
        num_train_ids=3, num_test_ids=2, num_cams=3, tracklets_per_cam=2, length=(5, 7), size=(32, 16), seed=1
    )
    assert data.num_train_ids == 3 and len(data.train) == 3 * 3 * 2
    assert {t.pid for t in data.train} == {0, 1, 2} and {t.pid for t in data.query} == {3, 4}
    assert len(data.query) == 2 and len(data.gallery) == 2 * 5
    assert {t.camid for t in data.train} == {0, 1, 2}
    for t in data.train:
        assert t.frames.shape[1:] == (3, 32, 16) and t.frames.dtype == torch.uint8 and 5 <= len(t) <= 7
        assert not torch.equal(t.frames[0], t.frames[-1])  # the person moves
    again = synthetic_video_reid(3, 2, 3, 2, (5, 7), (32, 16), seed=1)
    assert all(torch.equal(a.frames, b.frames) for a, b in zip(data.train, again.train))
    assert not torch.equal(
        synthetic_video_reid(3, 2, 3, 2, (5, 7), (32, 16), seed=2).train[0].frames[:5],
        data.train[0].frames[:5],
    )

    def colour(pid: int) -> torch.Tensor:  # mean colour of the centre column (the person) per tracklet
        return torch.stack(
            [t.frames[:, :, 8:24, 6:10].float().mean((0, 2, 3)) for t in data.train if t.pid == pid]
        )

    within = torch.cdist(colour(0), colour(0)).mean()
    between = torch.cdist(colour(0), colour(1)).mean()
    assert within < between  # one appearance per identity across clips and cameras


@pytest.mark.parametrize(
    ("built_for", "match"),
    [
        ((32, 16),
         r"^transform turns frames of size=\(64, 32\) into \(1, 3, 32, 16\): build it for size=\(64, 32\)"),
        ((128, 64),
         r"^transform fails on frames of size=\(64, 32\) \(ValueError: Required crop size \(128, 64\)"),
    ],
)  # fmt: skip
def test_a_transform_built_for_another_size_is_refused(built_for: tuple[int, int], match: str) -> None:
    tracklets = [Tracklet(torch.zeros(4, 3, 64, 32, dtype=torch.uint8), 0, 0)]
    with pytest.raises(ValueError, match=match):
        ClipDataset(tracklets, 2, (64, 32), "rrs", clip_transforms(built_for, train=True))
    torch.manual_seed(0)
    ClipDataset(tracklets, 2, (64, 32), "rrs", clip_transforms((64, 32), train=True))
    drawn = torch.rand(3)
    torch.manual_seed(0)
    torch.testing.assert_close(drawn, torch.rand(3))  # the check draws nothing from the data's generator
