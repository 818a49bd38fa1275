"""The flags of examples/quickstart.py and examples/visualize_maps.py: one style, checked by the parser."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from _scripts import EXAMPLES, load_script


def _example(name: str) -> ModuleType:
    return load_script(EXAMPLES / f"{name}.py")


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
    assert args.size == [64, 32] and args.num_frames == 3 and args.images == [image]
    assert (
        _example("visualize_maps").build_parser().parse_args([]).stages is None
    )  # (2, 3) without --checkpoint


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--query", "1,2"], "--query: expected 3 arguments"),
        (["--query", "1,0,0"], "--query: expected 3 arguments"),
        (["--query", "0", "0", "-1"], "--query: expected an int >= 0, got '-1'"),
        (["--query", "0", "x", "0"], "--query: expected an int >= 0, got 'x'"),
        (["--stages", "2,3"], "separate stages with spaces (--stages 2 3), got '2,3'"),
        (["--stages", "-1"], "expected a stage index >= 0 or a name"),
        (["-T", "0"], "-T/--num-frames: expected an int >= 1, got '0'"),
        (["--size", "0", "64"], "--size: expected an int >= 1, got '0'"),
        (["--size", "128"], "--size: expected 2 arguments"),
        (["--backbone", "resnet_nope"], "--backbone: timm has no model 'resnet_nope'"),
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
        (["-T", "0"], "-T/--num-frames: expected an int >= 1, got '0'"),
        (["--size", "128", "-1"], "--size: expected an int >= 1, got '-1'"),
        (["--clips", "1"], "--clips: expected an int >= 2, got '1'"),
        (["--clips", "2.5"], "--clips: expected an int >= 2, got '2.5'"),
        (["--backbone", "resnet_nope"], "--backbone: timm has no model 'resnet_nope'"),
    ],
)
def test_quickstart_refuses_wrong_flags(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert words in _refused("quickstart", argv, capsys)
    args = _example("quickstart").build_parser().parse_args(["--size", "64", "32", "--clips", "2"])
    assert args.size == [64, 32] and args.clips == 2 and args.num_frames == 8
    assert args.backbone == "resnet50"  # the paper's


@pytest.mark.parametrize(
    ("script", "old", "value"),
    [
        ("train_video_reid", "--seq-len", "3"),
        ("quickstart", "--frames", "3"),
        ("visualize_maps", "--frames", "3"),
        ("quickstart", "--model", "resnet18"),
        ("visualize_maps", "--model", "resnet18"),
    ],
)
def test_the_spellings_of_0_1_are_refused_by_name(
    script: str, old: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f0.png").write_bytes(b"")  # the image visualize_maps requires
    first = [str(tmp_path / "f0.png")] if script == "visualize_maps" else []
    assert _refused(script, [*first, old, value], capsys).endswith(f"unrecognized arguments: {old} {value}")


def test_quickstart_names_a_model_the_blocks_cannot_go_into(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _example("quickstart").main(["--backbone", "test_vit", "--size", "32", "32", "-T", "2"])
    message = str(exit_info.value.code)
    assert message.startswith("quickstart.py: error: --backbone test_vit: stage ") and "\n" not in message
    assert message.endswith("blocks need a CNN stage")
