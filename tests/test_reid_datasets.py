"""MARS and iLIDS-VID folder readers (on tiny folders written here), synthetic data, clip dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lstrl_layers.reid import (
    ClipDataset,
    clip_transforms,
    collate_test_clips,
    read_ilidsvid,
    read_mars,
    synthetic_video_reid,
)

io = pytest.importorskip("scipy.io")
Image = pytest.importorskip("PIL.Image")


def _write_image(path: Path, value: int, size: tuple[int, int] = (16, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size[::-1], (value, value, value)).save(path)


def _mars(root: Path) -> None:
    """Train: identity 5 (cam 1, 3 frames; cam 2, 2 frames), identity 9 (cam 1, 2 frames).
    Test: identity 5 in cams 1 (query), 1 and 3; junk -1 in cam 2; distractor 0 in cam 1."""
    tracks = {
        "train": [("0005", 1, 3), ("0005", 2, 2), ("0009", 1, 2)],
        "test": [("0005", 1, 2), ("0005", 1, 3), ("0005", 3, 2), ("00-1", 2, 2), ("0000", 1, 1)],
    }
    (root / "info").mkdir(parents=True)
    for part, specs in tracks.items():
        names, rows = [], []
        for track, (pid, cam, length) in enumerate(specs, start=1):
            first = len(names) + 1
            for frame in range(1, length + 1):
                name = f"{pid}C{cam}T{track:04d}F{frame:03d}.jpg"
                names.append(name)
                _write_image(root / f"bbox_{part}" / pid / name, 40 * frame)
            rows.append([first, len(names), -1 if pid == "00-1" else int(pid), cam])
        (root / "info" / f"{part}_name.txt").write_text("\n".join(names) + "\n")
        io.savemat(
            str(root / "info" / f"tracks_{part}_info.mat"), {f"track_{part}_info": np.array(rows, float)}
        )
    io.savemat(str(root / "info" / "query_IDX.mat"), {"query_IDX": np.array([[1]])})


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


def _ilids(root: Path, people: int = 4) -> None:
    for cam in (1, 2):
        for person in range(1, people + 1):
            for frame in range(3 + person):
                name = f"cam{cam}_person{person:03d}_{frame:05d}.png"
                _write_image(
                    root / "i-LIDS-VID" / "sequences" / f"cam{cam}" / f"person{person:03d}" / name,
                    10 * person,
                )


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


def test_clip_dataset_reads_and_resizes_frames(tmp_path: Path) -> None:
    _mars(tmp_path)
    data = read_mars(tmp_path)
    train = ClipDataset(data.train, 4, (8, 4), "rrs", seed=0)
    clip, pid, camid = train[0]  # 3 frames -> padded to 4, in order
    assert clip.shape == (4, 3, 8, 4) and clip.dtype == torch.uint8 and (pid, camid) == (0, 1)
    assert train.labels == [0, 0, 1]
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


def test_train_transform_is_shared_by_the_frames_of_a_clip() -> None:
    torch.manual_seed(0)
    transform = clip_transforms((16, 8), train=True, padding=3, erasing=1.0)
    frame = torch.randint(0, 256, (3, 16, 8), dtype=torch.uint8)
    out = transform(frame.expand(4, 3, 16, 8).clone())
    assert out.shape == (4, 3, 16, 8) and out.dtype == torch.float32
    assert all(torch.equal(out[0], out[t]) for t in range(1, 4))  # same crop, flip and erased box


def test_synthetic_identities() -> None:
    data = synthetic_video_reid(
        num_train_ids=3, num_test_ids=2, num_cams=3, tracklets_per_cam=2, frames=(5, 7), size=(32, 16), seed=1
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
