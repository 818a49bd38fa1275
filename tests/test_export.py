"""Exports keep the clip length dynamic: every exporter's graph equals eager PyTorch for every batch and every
T from 1 up, or the export is refused up front; ``export_onnx`` writes one checked file or nothing."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from lstrl_layers import BME, MAE, LSTRLBlock, VideoReIDNet
from lstrl_layers.export import OPSET, export_onnx, export_program

SIZE = (32, 16)
SHAPES = [(1, 1), (1, 2), (3, 1), (3, 2), (2, 5), (1, 16)]  # (clips, T) other than the example's (2, 4)


def _net() -> VideoReIDNet:
    torch.manual_seed(0)
    net = VideoReIDNet("test_resnet", num_classes=3, stages=(2, 3), num_frames=4)
    with torch.no_grad():
        for param in net.backbone.lstrl.parameters():
            param.normal_(std=0.05)  # blocks away from the identity: a wrong T would show
    return net


def _video(clips: int, num_frames: int) -> torch.Tensor:
    return torch.randn(
        clips, num_frames, 3, *SIZE, generator=torch.Generator().manual_seed(clips * 31 + num_frames)
    )


def _session(path: Path):  # noqa: ANN202 (onnxruntime's type)
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.slow
def test_export_onnx_gives_one_checked_file_for_every_batch_and_clip_length(tmp_path: Path) -> None:
    net = _net().train()
    path = tmp_path / "net.onnx"
    result = export_onnx(net, path, _video(2, 4))
    assert net.training  # the caller's mode is restored
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]  # weights inside, no stray file
    assert result.path == path and result.input_name == "video" and result.opset == OPSET
    assert result.dynamic and result.num_frames is None
    assert [shape[:2] for shape, _ in result.checked] == [(b, t) for b in (1, 3) for t in (1, 2, 4, 8, 16)]
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    session, net = _session(path), net.eval()
    for clips, num_frames in SHAPES:  # checked here too, independently of export_onnx's own check
        video = _video(clips, num_frames)
        (out,) = session.run(None, {"video": video.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(out), net(video), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_legacy_onnx_exporter_with_dynamic_axes(tmp_path: Path) -> None:
    net, path = _net().eval(), tmp_path / "legacy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on converted shapes
        torch.onnx.export(
            net, (_video(2, 4),), str(path), dynamo=False, input_names=["video"],
            dynamic_axes={"video": {0: "clips", 1: "num_frames"}},
        )  # fmt: skip
    session = _session(path)
    for clips, num_frames in SHAPES:
        video = _video(clips, num_frames)
        (out,) = session.run(None, {"video": video.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(out), net(video), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_torch_export_with_a_dynamic_clip_length() -> None:
    net = _net().train()
    program = export_program(net, _video(2, 4))
    assert net.training
    exported = program.module()
    net.eval()
    for clips, num_frames in SHAPES:
        video = _video(clips, num_frames)
        with torch.no_grad():
            torch.testing.assert_close(exported(video), net(video), rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:`torch.jit.trace:FutureWarning")
def test_jit_trace_follows_the_clip_length() -> None:
    net = _net().eval()
    with torch.no_grad():
        traced = torch.jit.trace(net, (_video(2, 4),))
        for clips, num_frames in SHAPES:
            video = _video(clips, num_frames)
            torch.testing.assert_close(traced(video), net(video), rtol=1e-5, atol=1e-5)


def _bme_with_delta(channels: int, num_frames: int, zero_init: bool) -> BME:
    bme = BME(channels, num_frames, zero_init=zero_init, antisymmetric=True)
    with torch.no_grad():
        bme.delta.normal_()  # type: ignore[union-attr]
    return bme


@pytest.mark.parametrize("block", [MAE, BME, LSTRLBlock, _bme_with_delta])
def test_bare_blocks_export_with_the_legacy_exporter(block: Callable[..., nn.Module], tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = block(8, 4, zero_init=False).eval()
    path = tmp_path / "block.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.randn(2, 4, 8, 3, 2),), str(path), dynamo=False, input_names=["clips"],
            dynamic_axes={"clips": {0: "clips", 1: "num_frames"}},
        )  # fmt: skip
    session = _session(path)
    for clips, num_frames in SHAPES:
        x = torch.randn(clips, num_frames, 8, 3, 2)
        (out,) = session.run(None, {"clips": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(out), module(x), rtol=1e-5, atol=1e-5)


def test_a_frames_graph_is_fixed_to_num_frames(tmp_path: Path) -> None:
    torch.manual_seed(0)
    block = LSTRLBlock(8, 4, zero_init=False)
    result = export_onnx(block, tmp_path / "frames.onnx", torch.randn(6, 8, 3, 2), num_frames=3)
    assert block.num_frames == 4  # restored
    assert result.input_name == "frames" and result.num_frames == 3
    assert [shape for shape, _ in result.checked] == [(3, 8, 3, 2), (9, 8, 3, 2)]  # 1 and 3 clips of T=3
    session = _session(tmp_path / "frames.onnx")
    block.eval().num_frames = 3
    frames = torch.randn(15, 8, 3, 2)
    (out,) = session.run(None, {"frames": frames.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), block(frames), rtol=1e-5, atol=1e-5)


def test_a_3d_cnn_layout_keeps_its_clip_length_dynamic(tmp_path: Path) -> None:
    torch.manual_seed(0)
    block = BME(8, 4, zero_init=False, layout="BCTHW")
    result = export_onnx(block, tmp_path / "clips.onnx", torch.randn(2, 8, 4, 3, 2))
    assert result.input_name == "clips" and result.num_frames is None
    assert {shape[2] for shape, _ in result.checked} == {1, 2, 4, 8, 16}  # T is dim 2 of (B, C, T, H, W)


class _SpecializesOnT(nn.Module):
    """A model whose code branches on T: a graph with a dynamic T cannot be correct."""

    def __init__(self) -> None:
        super().__init__()
        self.block = LSTRLBlock(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) * 2 if x.shape[1] == 4 else self.block(x)


def test_a_model_that_fixes_t_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "no.onnx"
    with pytest.raises(
        ValueError, match=r"^torch.export could not export _SpecializesOnT for video of any shape"
    ):
        export_onnx(_SpecializesOnT(), path, torch.randn(2, 4, 8, 3, 2))
    assert list(tmp_path.iterdir()) == []
    export_onnx(_SpecializesOnT(), path, torch.randn(2, 4, 8, 3, 2), dynamic=False)  # its own shape only
    assert path.is_file()


@pytest.mark.parametrize(
    ("model", "example", "kwargs", "error", "match"),
    [
        (LSTRLBlock(8, 4), torch.randn(2, 4, 8, 3, 2), dict(num_frames=4), ValueError,
         r"num_frames applies to frames \(B\*T, C, H, W\).*a 5-D example carries its own T.*"
         r"got num_frames=4"),
        (nn.Conv2d(3, 8, 1), torch.randn(2, 3, 4, 4), {}, ValueError,
         r"Conv2d holds no LSTRL block, so its input's clip length is unknown"),
        (LSTRLBlock(8, 4), torch.randn(6, 8, 3, 2), {}, ValueError,
         r"example holds 6 frames, which is not a whole number of clips of num_frames=4"),
        (LSTRLBlock(8, 4), torch.randn(4, 8, 3), {}, ValueError,
         r"example must be a video .*got shape \(4, 8, 3\)"),
        (LSTRLBlock(8, 4), torch.zeros(8, 8, 3, 2, dtype=torch.long), {}, TypeError,
         r"example must be a floating-point tensor"),
        (LSTRLBlock(8, 4), torch.randn(8, 8, 3, 2), dict(dynamic="yes"), TypeError,
         r"dynamic must be True or False, got 'yes' \(str\)"),
        ("resnet", torch.randn(8, 8, 3, 2), {}, TypeError,
         r"model must be an nn.Module, got 'resnet' \(str\)"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_any_export(
    model: object, example: torch.Tensor, kwargs: dict, error: type, match: str, tmp_path: Path
) -> None:
    with pytest.raises(error, match=match):
        export_onnx(model, tmp_path / "x.onnx", example, **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_path_must_name_an_onnx_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"path must name an .onnx file, got '.*model.pt'"):
        export_onnx(LSTRLBlock(8, 4), tmp_path / "model.pt", torch.randn(8, 8, 3, 2))


def test_a_video_net_needs_a_video() -> None:
    with pytest.raises(
        ValueError, match=r"a VideoReIDNet takes a video \(B, T, C, H, W\); got an example of shape"
    ):
        export_program(_net(), torch.randn(8, 3, *SIZE))


@pytest.mark.slow
def test_torch_compile_fullgraph_with_a_dynamic_clip_length() -> None:
    torch._dynamo.reset()
    net = _net().eval()
    compiled = torch.compile(net, fullgraph=True, dynamic=True, backend="aot_eager")  # no graph break
    with torch.no_grad():  # sizes above 1: one symbolic graph (B, T = 1 are specialized, and exported above)
        for clips, num_frames in [(2, 4), (3, 2), (2, 5)]:
            video = _video(clips, num_frames)
            torch.testing.assert_close(compiled(video), net(video), rtol=1e-5, atol=1e-5)
