"""Data sets by name: read_dataset gives what the reader gives; your own reader; wrong use refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lstrl_layers.reid import (
    Tracklet,
    VideoReIDData,
    dataset_names,
    read_dataset,
    read_mars,
    register_dataset,
    synthetic_motion_reid,
)

pytest.importorskip("scipy")
from _datasets import mars_release  # noqa: E402


def _same(a: VideoReIDData, b: VideoReIDData) -> bool:
    def key(tracklets: list[Tracklet]) -> list[tuple[Any, ...]]:
        return [
            (t.pid, t.camid, [f if isinstance(f, str) else f.sum().item() for f in t.frames])
            for t in tracklets
        ]

    parts = ("train", "query", "gallery")
    return all(key(getattr(a, p)) == key(getattr(b, p)) for p in parts) and a.num_train_ids == b.num_train_ids


def test_the_names_of_the_package_read_what_their_readers_read(tmp_path: Path) -> None:
    assert {"mars", "lsvid", "ilidsvid"} <= set(dataset_names(root=True))
    assert {"synthetic_appearance", "synthetic_motion", "synthetic_occlusion"} <= set(
        dataset_names(root=False)
    )
    assert dataset_names() == tuple(sorted(dataset_names(root=True) + dataset_names(root=False)))
    mars_release(tmp_path / "MARS")
    assert _same(read_dataset("mars", tmp_path / "MARS"), read_mars(tmp_path / "MARS"))
    arguments: dict[str, Any] = dict(num_train_ids=4, num_test_ids=4, length=(3, 4), size=(16, 8), seed=3)
    by_name = read_dataset("synthetic_motion", motion="squat", **arguments)
    direct = synthetic_motion_reid(motion="squat", **arguments)
    assert _same(by_name, direct) and by_name.partners == direct.partners
    assert all(
        torch.equal(x, y) for a, b in zip(by_name.query, direct.query) for x, y in zip(a.frames, b.frames)
    )


def test_a_reader_of_yours_reads_by_its_name(tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []
    frames = (torch.zeros(3, 8, 4, dtype=torch.uint8),)
    tiny = VideoReIDData([Tracklet(frames, 0, 0)], [Tracklet(frames, 1, 0)], [Tracklet(frames, 1, 1)], 1)

    @register_dataset("test_registry_folder")
    def read_folder(root: Path, split: int = 0) -> VideoReIDData:
        calls.append((root, split))
        return tiny

    assert read_folder.__name__ == "read_folder"  # the decorator gives the function back
    register_dataset("test_registry_generated", lambda **kwargs: calls.append(kwargs) or tiny, root=False)
    assert read_dataset("test_registry_folder", tmp_path, split=2) is tiny
    assert read_dataset("test_registry_generated", seed=5) is tiny
    assert calls == [(tmp_path, 2), {"seed": 5}]
    assert "test_registry_folder" in dataset_names(root=True)
    assert "test_registry_generated" in dataset_names(root=False)
    with pytest.raises(
        ValueError, match=r"^name 'test_registry_folder' is registered already \(to read_folder\)"
    ):
        register_dataset("test_registry_folder", read_folder)
    register_dataset("test_registry_wrong", lambda root: [], root=True)
    with pytest.raises(
        TypeError, match=r"^the reader of 'test_registry_wrong' must return a VideoReIDData, got list"
    ):
        read_dataset("test_registry_wrong", tmp_path)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: read_dataset("prid2011", "/data"), ValueError,
         r"^unknown data set 'prid2011'; registered: ilidsvid, lsvid, mars, synthetic_appearance, "),
        (lambda: read_dataset(3), TypeError,
         r"^name must be the name of a registered data set \(str\), got 3 \(int\)"),
        (lambda: read_dataset("mars"), ValueError,
         r"^data set 'mars' is read from a folder: give its root, got None"),
        (lambda: read_dataset("mars", 3), TypeError,
         r"^root must be a folder \(str or Path\), got 3 \(int\)"),
        (lambda: read_dataset("synthetic_motion", "/data"), ValueError,
         r"^data set 'synthetic_motion' is generated, not read from a folder: leave root out, got '/data'"),
        (lambda: register_dataset(""), ValueError, r"^name must be a non-empty str, got ''"),
        (lambda: register_dataset(None), TypeError, r"^name must be a str, got None \(NoneType\)"),
        (lambda: register_dataset("test_registry_x", root="yes"), TypeError,
         r"^root must be True \(read from a folder\) or False \(generated\), got 'yes' \(str\)"),
        (lambda: register_dataset("test_registry_y", "read_mars"), TypeError,
         r"^reader must be a function returning a VideoReIDData, got 'read_mars' \(str\)"),
    ],
)  # fmt: skip
def test_wrong_use_is_refused_naming_the_argument(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()
    assert "test_registry_y" not in dataset_names()  # a refused reader is not registered
