"""The flags of examples/quickstart.py and examples/visualize_maps.py: one style, checked by the parser."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _refused(name: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The parser's one-line complaint about ``argv`` (argparse exits with status 2, no traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        _example(name).build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_visualize_maps_flags_parse_in_one_style(tmp_path: Path) -> None:
    image = tmp_path / "f0.png"
    image.write_bytes(b"")
    args = (
        _example("visualize_maps")
        .build_parser()
        .parse_args(
            [str(image), "--stages", "2", "layer3", "--query", "1", "0", "2", "--size", "64", "32", "-T", "3"]
        )
    )
    assert args.stages == [2, "layer3"] and args.query == [1, 0, 2]
    assert args.size == [64, 32] and args.frames == 3 and args.images == [image]
    assert _example("visualize_maps").build_parser().parse_args([]).stages == [2, 3]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--query", "1,2"], "--query: expected 3 arguments"),
        (["--query", "1,0,0"], "--query: expected 3 arguments"),
        (["--query", "0", "0", "-1"], "--query: expected an int >= 0, got '-1'"),
        (["--query", "0", "x", "0"], "--query: expected an int >= 0, got 'x'"),
        (["--stages", "2,3"], "separate stages with spaces (--stages 2 3), got '2,3'"),
        (["--stages", "-1"], "expected a stage index >= 0 or a name"),
        (["-T", "0"], "-T/--frames: expected an int >= 1, got '0'"),
        (["--size", "0", "64"], "--size: expected an int >= 1, got '0'"),
        (["--size", "128"], "--size: expected 2 arguments"),
        (["--model", "resnet_nope"], "--model: timm has no model 'resnet_nope'"),
        (["missing.png"], "images: no such file: missing.png"),
        (["--checkpoint", "missing.pt"], "--checkpoint: no such file: missing.pt"),
    ],
)
def test_visualize_maps_refuses_wrong_flags(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert words in _refused("visualize_maps", argv, capsys)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--frames", "0"], "--frames: expected an int >= 1, got '0'"),
        (["--size", "128", "-1"], "--size: expected an int >= 1, got '-1'"),
        (["--clips", "1"], "--clips: expected an int >= 2, got '1'"),
        (["--clips", "2.5"], "--clips: expected an int >= 2, got '2.5'"),
        (["--model", "resnet_nope"], "--model: timm has no model 'resnet_nope'"),
    ],
)
def test_quickstart_refuses_wrong_flags(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert words in _refused("quickstart", argv, capsys)
    args = _example("quickstart").build_parser().parse_args(["--size", "64", "32", "--clips", "2"])
    assert args.size == [64, 32] and args.clips == 2 and args.frames == 8
