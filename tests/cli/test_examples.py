"""Smoke tests: each example runs end to end at tiny sizes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from _scripts import EXAMPLES, load_script


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster (much faster on a busy machine) than several."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _example(name: str) -> ModuleType:
    return load_script(EXAMPLES / f"{name}.py")


TINY_TRAINING = [
    "--synthetic",
    "--synthetic-ids",
    "4",
    "3",
    "--size",
    "32",
    "16",
    "-T",
    "2",
    "-P",
    "2",
    "-K",
    "2",
    "--backbone",
    "resnet18",
    "--max-steps",
    "1",
    "--test-batch",
    "8",
    "--no-progress",
]


def test_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    _example("quickstart").main(["--backbone", "resnet18", "--size", "32", "16", "-T", "2", "--clips", "2"])
    out = capsys.readouterr().out
    assert "blocks in model.lstrl: ['layer2', 'layer3']" in out and "embedding (2, 512)" in out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train")
    _example("train_video_reid").main([*TINY_TRAINING, "--epochs", "1", "--out", str(out)])
    return out


@pytest.mark.slow
def test_train_writes_metrics_and_checkpoint(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    for entry in metrics["epochs"]:
        assert 0 <= entry["mAP"] <= 1 and 0 <= entry["rank1"] <= entry["rank5"] <= 1
    state = torch.load(trained / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1 and state["num_classes"] == 4
    assert "epoch 1/1" in (trained / "log.txt").read_text()


@pytest.mark.slow
def test_train_resumes(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes((trained / "checkpoint.pt").read_bytes())
    metrics = _example("train_video_reid").main(
        [*TINY_TRAINING, "--epochs", "2", "--out", str(out), "--resume", str(out), "--test-sampling", "dense"]
    )
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1, 2]
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 2


def test_train_needs_data(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _example("train_video_reid").main(["--epochs", "1"])
    assert exit_info.value.code == 2  # a usage error, from the parser
    err = capsys.readouterr().err
    assert err.startswith("usage: ")
    assert err.splitlines()[-1] == (
        "train_video_reid.py: error: give --data-root (with --dataset mars|lsvid|ilidsvid) or --synthetic"
    )


@pytest.mark.parametrize("file", ["checkpoint.pt", "model.pt"])  # what --checkpoint takes, as its help says
def test_visualize_maps_from_checkpoint(trained: Path, tmp_path: Path, file: str) -> None:
    pytest.importorskip("matplotlib")
    out = _example("visualize_maps").main(
        [
            "--checkpoint",
            str(trained / file),
            "-T",
            "3",
            "--block",
            "layer3",
            "--out",
            str(tmp_path / "m.png"),
        ]
    )
    Image = pytest.importorskip("PIL.Image")
    with Image.open(out) as picture:  # 3 frames; the frames and 6 maps: 130 x 240 pixels each
        assert picture.size == (3 * 130, 7 * 240)


def test_visualize_maps_refuses_model_flags_with_a_checkpoint(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _example("visualize_maps").main(["--checkpoint", str(trained / "model.pt"), "--backbone", "resnet50"])
    assert (
        exit_info.value.code
        == f"--backbone: --checkpoint {trained / 'model.pt'} holds its own model; leave them out"
    )


def test_visualize_maps_names_a_file_it_cannot_read(trained: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "model.pt"
    truncated.write_bytes((trained / "model.pt").read_bytes()[:2000])
    with pytest.raises(SystemExit) as exit_info:
        _example("visualize_maps").main(["--checkpoint", str(truncated)])
    assert str(exit_info.value.code).startswith(
        f"--checkpoint {truncated}: {truncated} is not a file written by"
    )
    not_an_image = tmp_path / "frame.jpg"
    not_an_image.write_text("hello")
    with pytest.raises(SystemExit) as exit_info:
        _example("visualize_maps").main([str(not_an_image), "-T", "1", "--size", "32", "16"])
    assert exit_info.value.code == f"cannot decode a frame: {not_an_image}: UnidentifiedImageError: " + (
        f"cannot identify image file '{not_an_image}'"
    )


def test_visualize_maps_from_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    Image = pytest.importorskip("PIL.Image")
    images = []
    for i in range(5):
        images.append(tmp_path / f"frame{i}.png")
        Image.new("RGB", (16, 32), (50 * i, 100, 200)).save(images[-1])
    out = tmp_path / "maps.png"
    _example("visualize_maps").main(
        [*map(str, images), "--size", "32", "16", "-T", "2", "--query", "1", "0", "0", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert printed == f"saved {out} (D1, D2, D3, D4, Mf, Mb of block 'layer2')\n"
    # one 130 x 240 pixel cell per frame (2 columns) for the frames and each of the 6 maps (7 rows)
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.size == (2 * 130, 7 * 240)


def test_visualize_maps_refuses_a_query_outside_the_feature_map(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image = pytest.importorskip("PIL.Image")
    images = [tmp_path / f"frame{i}.png" for i in range(3)]
    for path in images:
        Image.new("RGB", (16, 32), (0, 100, 200)).save(path)
    out = tmp_path / "maps.png"
    with pytest.raises(SystemExit) as exit_info:  # T = 2 frames: t = 2 is one past the last
        _example("visualize_maps").main(
            [*map(str, images), "--size", "32", "16", "-T", "2", "--query", "2", "0", "0", "--out", str(out)]
        )
    assert exit_info.value.code == 2  # a usage error
    err = capsys.readouterr().err
    assert err.startswith("usage: ")
    # layer2 of resnet18 has stride 8: a 32 x 16 frame gives a 4 x 2 feature map
    assert err.splitlines()[-1].endswith(" error: --query 2 0 0 is outside the block's (T, H, W) = (2, 4, 2)")
    assert not out.exists()


def test_train_on_a_mars_folder(tmp_path: Path) -> None:
    pytest.importorskip("scipy")
    from _datasets import mars_release

    mars_release(tmp_path / "MARS")
    metrics = _example("train_video_reid").main(
        ["--dataset", "mars", "--data-root", str(tmp_path / "MARS"), "--no-pretrained",
         "--backbone", "resnet18", "--size", "32", "16", "-T", "2", "-P", "2", "-K", "2", "--epochs", "1",
         "--workers", "0",
         "--test-sampling", "dense", "--no-progress", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    assert metrics["epochs"][0]["num_queries"] == 1 and metrics["epochs"][0]["num_skipped"] == 0
