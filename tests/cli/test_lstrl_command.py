"""The ``lstrl`` command on JPEG tracklets the test writes: embeddings as the model computes them, the same
numbers from the exported ONNX graph, a tiny training run, and every wrong input refused in one line with
nothing written."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _scripts import ROOT
from PIL import Image

from lstrl_layers import VideoReIDNet
from lstrl_layers.cli import main
from lstrl_layers.reid.data.clips import IMAGENET_MEAN, IMAGENET_STD

pytestmark = pytest.mark.usefixtures("keep_threads")  # the training command sets it

SIZE = (32, 16)
TRACKS = {"0001_c1": 4, "0001_c2": 9, "0002_c1": 1, "0010_c2": 2}  # frames per tracklet: short ones too
PATTERN = r"(?P<pid>\d+)_c(?P<camid>\d+)"
# a training run small enough for a test (tests/cli/test_train_script.py's TINY)
TRAIN = [
    "train", "--synthetic", "--synthetic-ids", "4", "3", "--backbone", "resnet18", "--no-pretrained",
    "--size", "32", "16", "-T", "2", "-P", "2", "-K", "2", "--epochs", "1", "--max-steps", "1",
    "--test-batch", "8", "--workers", "0", "--no-progress", "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved model (``model/``) and a folder of JPEG tracklets (``tracks/``), made once for the module."""
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    net = VideoReIDNet("test_resnet", num_classes=3, stages=(2, 3), num_frames=4)
    with torch.no_grad():
        for param in net.backbone.lstrl.parameters():
            param.normal_(std=0.05)
    net.save_pretrained(root / "model")
    rng = np.random.default_rng(0)
    for name, count in TRACKS.items():
        folder = root / "tracks" / name
        folder.mkdir(parents=True)
        for i in range(count):  # frame10 after frame9: name order compares numbers by value
            pixels = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"frame{i}.jpg", quality=95)
    return root


def _embed(workdir: Path, out: str, *flags: str) -> int:
    return main(["embed", str(workdir / "model"), str(workdir / "tracks"), "--out", str(workdir / out),
                 "--size", *map(str, SIZE), "--no-progress", *flags])  # fmt: skip


def _clip(folder: Path) -> torch.Tensor:
    """All frames of a tracklet as one normalized clip (1, T, 3, H, W), read without the library."""
    frames = [
        np.asarray(Image.open(p).convert("RGB"))
        for p in sorted(folder.iterdir(), key=lambda p: int(p.stem[5:]))
    ]
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return ((clip - mean) / std)[None]


def test_embed_writes_what_the_model_computes(workdir: Path) -> None:
    assert _embed(workdir, "first.npz", "-T", "4", "--sampling", "first", "--pattern", PATTERN) == 0
    result = np.load(workdir / "first.npz")
    assert list(result["names"]) == list(TRACKS)
    assert list(result["pids"]) == [1, 1, 2, 10] and list(result["camids"]) == [1, 2, 1, 2]
    model = VideoReIDNet.from_pretrained(workdir / "model")
    assert result["embeddings"].shape == (4, model.feature_dim) and result["embeddings"].dtype == np.float32
    assert (int(result["num_frames"]), str(result["sampling"]), list(result["size"])) == (
        4,
        "first",
        list(SIZE),
    )
    with torch.no_grad():  # the 4-frame tracklet is exactly one clip of T=4
        expected = model(_clip(workdir / "tracks" / "0001_c1"))[0]
    torch.testing.assert_close(torch.from_numpy(result["embeddings"][0]), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_graph_fixed_to_t_refuses_another_t(workdir: Path) -> None:
    """(The dynamic graph's round trip, torch against onnxruntime, is the Deploy page's test below.)"""
    fixed = workdir / "fixed.onnx"
    assert main(["export", str(workdir / "model"), "--onnx", str(fixed), "--size", *map(str, SIZE),
                 "--no-dynamic", "-T", "4", "--no-check"]) == 0  # fmt: skip
    assert (
        main(["embed", str(fixed), str(workdir / "tracks"), "--out", str(workdir / "x.npz"), "-T", "2"]) == 2
    )
    assert not (workdir / "x.npz").exists()


def _broken_tracks(root: Path, kind: str) -> Path:
    folder = root / kind / "0001_c1"
    folder.mkdir(parents=True)
    if kind == "truncated":
        Image.fromarray(np.zeros((*SIZE, 3), dtype=np.uint8)).save(folder / "a.jpg")
        (folder / "b.jpg").write_bytes((folder / "a.jpg").read_bytes()[:100])
    elif kind == "not_an_image":
        (folder / "a.jpg").write_text("hello")
    elif kind == "no_images":
        (folder / "notes.txt").write_text("hello")
    return root / kind


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["embed", "{model}", "{tracks}", "--out", "{out}.txt"],
         r"--out must name an .npz file, got .*\.txt"),
        (["embed", "{model}", "{tmp}/nowhere", "--out", "{out}"], r"no such folder of tracklets: .*nowhere"),
        (["embed", "{model}", "{tracks}/0001_c1", "--out", "{out}"],
         r"0001_c1 holds no tracklet folder \(expected one sub-folder of frames per tracklet\)"),
        (["embed", "{model}", "{no_images}", "--out", "{out}"],
         r"tracklet folder .*0001_c1 holds no image \(.jpg, "),
        (["embed", "{model}", "{truncated}", "--out", "{out}", "--size", "32", "16", "--no-progress"],
         r"frame 1 of tracklet 0 \(identity -1, camera -1\) cannot be decoded: .*b.jpg: "),
        (["embed", "{model}", "{not_an_image}", "--out", "{out}", "--size", "32", "16", "--no-progress"],
         r"frame 0 of tracklet 0 .* cannot be decoded: .*a.jpg: UnidentifiedImageError"),
        (["embed", "{tmp}", "{tracks}", "--out", "{out}"],
         r"holds neither config.json \(a save_pretrained folder\) nor checkpoint.pt \(a training run\)"),
        (["embed", "{tmp}/none", "{tracks}", "--out", "{out}"], r"no such model: .*none \(a save_pretrained"),
        (["embed", "{tracks}/0001_c1/frame0.jpg", "{tracks}", "--out", "{out}"],
         r"frame0.jpg is not a file written by lstrl_layers"),
        (["embed", "{model}", "{tracks}", "--out", "{out}", "--backend", "onnxruntime"],
         r"--backend onnxruntime runs an .onnx file, got .*model \(lstrl export writes one\)"),
        (["embed", "{model}", "{tracks}", "--out", "{out}", "--pattern", r"(?P<pid>\d+)x"],
         r"tracklet folder '0001_c1' does not match the pattern '\(\?P<pid>.*\)x'$"),
        (["embed", "{model}", "{tracks}", "--out", "{out}", "--pattern", r"(\d+)"],
         r"pattern '\(.*\)' has neither a \(\?P<pid>...\) nor a \(\?P<camid>...\) group$"),
        (["embed", "{model}", "{tracks}", "--out", "{out}", "--max-clips", "2", "--sampling", "first"],
         r"--max-clips applies to --sampling dense \(a tracklet's clips\), got --sampling first"),
        (["embed", "{model}", "{tracks}", "--out", "{exists}"],
         r"--out .*exists.npz exists: pass --overwrite"),
        (["export", "{model}", "--onnx", "{tmp}/m.onnx", "-T", "4"],
         r"-T fixes the clip length with --no-dynamic; a dynamic graph takes any T"),
        (["export", "{model}", "--onnx", "{tmp}/m.pt"], r"--onnx must name an .onnx file"),
        (["export", "{tmp}", "--onnx", "{tmp}/m.onnx"], r"holds neither config.json"),
        ([*TRAIN, "--out", "{tmp}/run", "--eval-only"], r"--eval-only needs --resume \(a training"),
        ([*TRAIN, "--out", "{tmp}/run", "-P", "8"], r"-P 8: the training set has only 4 identities$"),
        ([*TRAIN, "--out", "{tmp}/run", "--resume", "{tmp}/none.pt"], r"--resume .*none.pt: "),
        ([*TRAIN, "--out", "{exists}"], r"--out .*exists.npz: a file, not a folder$"),
    ],
)  # fmt: skip
def test_wrong_input_gets_one_line_and_nothing_is_written(
    argv: list[str], message: str, workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "exists.npz").write_bytes(b"")
    places = {
        kind: str(_broken_tracks(tmp_path, kind)) for kind in ("truncated", "not_an_image", "no_images")
    }
    places |= dict(model=str(workdir / "model"), tracks=str(workdir / "tracks"), tmp=str(tmp_path),
                   out=str(tmp_path / "out.npz"), exists=str(tmp_path / "exists.npz"))  # fmt: skip
    before = sorted(tmp_path.rglob("*"))
    assert main([arg.format(**places) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(rf"lstrl {argv[0]}: error: .*{message}", err), err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, no temporary file left


def test_train_writes_a_run_into_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``lstrl train`` is the training script's command: the same files in --out, the same log."""
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    assert {"checkpoint.pt", "model.pt", "log.txt", "history.png", "cmc.png", "ranked.png"} <= {
        p.name for p in out.iterdir()
    }
    assert f"done; metrics in {out / 'metrics.json'}" in capsys.readouterr().out
    assert "epoch 1/1" in (out / "log.txt").read_text()
    assert main([*TRAIN, "--out", str(out)]) == 2  # a run already there: continue it or --overwrite
    assert re.match(
        rf"lstrl train: error: --out {re.escape(str(out))} already holds a run", capsys.readouterr().err
    )


def test_train_refuses_a_wrong_value_with_the_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*TRAIN, "--epochs", "0", "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: lstrl train ")
    assert err.splitlines()[-1] == "lstrl train: error: argument --epochs: expected an int >= 1, got '0'"
    assert not (tmp_path / "run").exists()


def test_the_console_command_is_installed() -> None:
    from importlib.metadata import entry_points

    (command,) = [e for e in entry_points(group="console_scripts") if e.name == "lstrl"]
    assert command.value == "lstrl_layers.cli:main"


@pytest.mark.slow
def test_the_deploy_page_commands_run_as_written(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```bash\n(.*?)^```", page, re.DOTALL | re.MULTILINE)
    lines = [line for block in blocks for line in block.splitlines()]
    commands = [shlex.split(line) for line in lines if line.startswith("lstrl ")]
    assert [c[1] for c in commands] == ["export", "embed", "embed"]
    for folder in ("model", "tracks"):  # the page's names, at its default size and T
        shutil.copytree(workdir / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert main([*command[1:], "--no-progress"] if command[1] == "embed" else command[1:]) == 0, command
    torch_result, onnx_result = np.load("gallery.npz"), np.load("gallery_onnx.npz")
    assert (int(torch_result["num_frames"]), list(torch_result["size"])) == (8, [256, 128])
    assert str(onnx_result["backend"]) == "onnxruntime" and list(onnx_result["size"]) == [
        256,
        128,
    ]  # the graph's
    np.testing.assert_allclose(onnx_result["embeddings"], torch_result["embeddings"], rtol=1e-4, atol=1e-4)
