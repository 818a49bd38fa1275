"""Deploying a model with LSTRL blocks: ONNX and ``torch.export`` graphs with a dynamic clip length, checked.

A video ``(B, T, C, H, W)`` carries its ``T``: the graph takes any batch and any clip length (``T = 1`` and
``T = 2`` included, where BME's edge handling defines the missing neighbours). Frames ``(B*T, C, H, W)``
do not: which ``B*T`` frames form a clip is the model's ``num_frames``, so a frames graph is fixed to it
(its batch stays dynamic, in whole clips).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram

from ._checks import check_bool, check_int, got
from ._files import atomic_path
from .blocks.base import ClipBlock
from .reid.model import VideoReIDNet
from .surgery.inject import set_num_frames

__all__ = ["OPSET", "OnnxExport", "export_onnx", "export_program"]

OPSET = 18  # MAE's attention exports as MatMul + Softmax (no Attention op): runs on ONNX Runtime >= 1.14,
# TensorRT >= 8.6 and OpenVINO
_CHECK_BATCHES = (1, 3)  # clips per call in the check
_CHECK_NUM_FRAMES = (1, 2, 4, 8, 16)  # T in the check of a video graph


@dataclass(frozen=True)
class _Signature:
    """What a model takes: its input's name, which dims are dynamic, and ``T`` where the graph fixes it."""

    input_name: str  # "video", "clips" or "frames"
    time_dim: int | None  # where T is in a 5-D input; None for frames
    num_frames: int | None  # T of a frames graph; None for 5-D inputs (their own)

    def dynamic_shapes(self) -> dict[int, Any]:
        if self.time_dim is not None:
            return {0: Dim("batch", min=1), self.time_dim: Dim("num_frames", min=1)}
        clips = Dim("clips", min=1)
        return {0: clips if self.num_frames == 1 else clips * self.num_frames}

    def fixed_num_frames(self, example: Tensor) -> int:
        """``T`` of ``example``: the graph's for frames, the example's own for a 5-D input."""
        if self.time_dim is not None:
            return int(example.shape[self.time_dim])
        assert self.num_frames is not None  # set for every frames signature
        return self.num_frames

    def inputs(self, example: Tensor, batch: int, num_frames: int) -> Tensor:
        """An input like ``example`` with ``batch`` clips of ``num_frames`` (fixed in a frames graph)."""
        shape = list(example.shape)
        if self.time_dim is None:
            shape[0] = batch * (self.num_frames or 1)
        else:
            shape[0], shape[self.time_dim] = batch, num_frames
        generator = torch.Generator().manual_seed(batch * 100 + num_frames)
        return torch.randn(shape, generator=generator, dtype=example.dtype).to(example.device)


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote and how it checked it.

    Attributes:
        path: the ONNX file (one file, weights inside).
        input_name: ``"video"`` ``(B, T, C, H, W)``, ``"clips"`` (a 3D CNN's ``(B, C, T, H, W)``) or
            ``"frames"`` ``(B*T, C, H, W)``.
        dynamic: whether the batch (and ``T`` of a 5-D input) are dynamic in the graph.
        num_frames: ``T`` fixed in the graph (frames inputs, or ``dynamic=False``); ``None`` if dynamic.
        opset: the ONNX opset of the file.
        checked: the input shapes run in ONNX Runtime against the model in PyTorch, each with the largest
            absolute difference of their outputs (empty without a check).
    """

    path: Path
    input_name: str
    dynamic: bool
    num_frames: int | None
    opset: int
    checked: tuple[tuple[tuple[int, ...], float], ...] = ()

    @property
    def max_abs_diff(self) -> float | None:
        """The largest absolute difference over :attr:`checked` (``None`` without a check)."""
        return max(diff for _, diff in self.checked) if self.checked else None


def _outermost_blocks(model: nn.Module) -> list[ClipBlock]:
    found = {name: m for name, m in model.named_modules() if isinstance(m, ClipBlock)}
    return [m for n, m in found.items() if not any(n.startswith(f"{o}.") for o in found if o != n)]


def _signature(model: nn.Module, example: Tensor, num_frames: int | None) -> _Signature:
    """How ``model`` reads ``example``; refuses what cannot be exported correctly, saying what to do."""
    blocks = _outermost_blocks(model)
    if isinstance(model, VideoReIDNet):
        if example.ndim != 5:
            raise ValueError(
                f"a VideoReIDNet takes a video (B, T, C, H, W); got an example of shape "
                f"{tuple(example.shape)}"
            )
        layout = "BTCHW"
    elif not blocks:
        raise ValueError(
            f"{type(model).__name__} holds no LSTRL block, so its input's clip length is unknown: export "
            f"it with torch.onnx.export, or pass a VideoReIDNet, an injected model or a block"
        )
    else:
        layouts = {b.layout for b in blocks}
        if len(layouts) > 1:
            raise ValueError(
                f"{type(model).__name__} mixes block layouts {sorted(layouts)}: export one layout"
            )
        (layout,) = layouts
    if example.ndim == 5:
        if num_frames is not None:
            raise ValueError(
                f"num_frames applies to frames (B*T, C, H, W), whose clip length the graph fixes; a 5-D "
                f"example carries its own T (dynamic in the graph), got num_frames={num_frames!r}"
            )
        name = "video" if isinstance(model, VideoReIDNet) or layout == "BTCHW" else "clips"
        return _Signature(name, 1 if layout == "BTCHW" else 2, None)
    if example.ndim != 4:
        raise ValueError(
            f"example must be a video (B, T, C, H, W), clips (B, C, T, H, W) or frames (B*T, C, H, W); "
            f"got shape {tuple(example.shape)}"
        )
    if num_frames is None:
        values = {b.num_frames for b in blocks}
        if len(values) != 1:
            raise ValueError(f"the blocks of {type(model).__name__} differ in num_frames {sorted(values)}")
        (num_frames,) = values
    if example.shape[0] % num_frames:
        raise ValueError(
            f"example holds {example.shape[0]} frames, which is not a whole number of clips of "
            f"num_frames={num_frames}"
        )
    return _Signature("frames", None, num_frames)


@contextlib.contextmanager
def _exporting(model: nn.Module, num_frames: int | None) -> Iterator[None]:
    """``model`` in eval mode (and at ``num_frames``) for the export; both restored after."""
    training = model.training
    before = [(b, b.num_frames) for b in _outermost_blocks(model)]
    model.eval()
    if num_frames is not None and before:
        set_num_frames(model, num_frames)
    try:
        yield
    finally:
        model.train(training)
        for block, value in before:
            block.num_frames = value


def _check_args(model: object, example: object, dynamic: object, num_frames: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {got(model)}")
    if not isinstance(example, Tensor) or not example.is_floating_point():
        raise TypeError(f"example must be a floating-point tensor the model takes, got {got(example)}")
    check_bool("dynamic", dynamic)
    if num_frames is not None:
        check_int("num_frames", num_frames)


def export_program(
    model: nn.Module, example: Tensor, dynamic: bool = True, num_frames: int | None = None
) -> ExportedProgram:
    """:func:`torch.export.export` of ``model`` in eval mode, with the batch and clip length dynamic.

    Args:
        model: a :class:`~lstrl_layers.VideoReIDNet`, a model with injected blocks or a block.
        example: an input the model takes: a video ``(B, T, C, H, W)``, a 3D CNN's clips ``(B, C, T, H, W)``
            or frames ``(B*T, C, H, W)``.
        dynamic: a dynamic batch, and a dynamic ``T`` for 5-D inputs; ``False``: the example's shape only.
        num_frames: ``T`` of a frames graph (default: the blocks' ``num_frames``); frames carry no ``T``, so
            the graph is fixed to it. Refused for 5-D examples, whose ``T`` is read from the input.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an example the model does not take as a clip, or a model that cannot be exported with
            these dynamic dims (the message says why).
    """
    _check_args(model, example, dynamic, num_frames)
    signature = _signature(model, example, num_frames)
    with _exporting(model, signature.num_frames):
        return _torch_export(model, example, signature, dynamic)


def _torch_export(model: nn.Module, example: Tensor, signature: _Signature, dynamic: bool) -> ExportedProgram:
    shapes = (signature.dynamic_shapes(),) if dynamic else None
    try:
        return torch.export.export(model, (example,), dynamic_shapes=shapes)
    except Exception as err:  # torch.export's errors (UserError, constraint violations) share no base class
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"torch.export could not export {type(model).__name__} for {signature.input_name} of "
            f"{'any' if dynamic else 'this'} shape like {tuple(example.shape)}: {first}"
            + (" (dynamic=False exports the example's shape only)" if dynamic else "")
        ) from err


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example: Tensor,
    dynamic: bool = True,
    check: bool = True,
    num_frames: int | None = None,
) -> OnnxExport:
    """Write ``model`` as one ONNX file whose graph takes any batch and any clip length, checked.

    The graph comes from :func:`export_program` (``torch.export``, then PyTorch's ONNX exporter at opset
    :data:`OPSET`; MAE's attention becomes ``MatMul`` and ``Softmax``), written with its weights in the one
    file (models under 2 GB). The model is exported in eval mode (a :class:`~lstrl_layers.VideoReIDNet`
    gives its embedding); its mode is restored after.

    With ``check`` (and ``onnxruntime`` installed), the file runs in ONNX Runtime on 1 and 3 clips of
    ``T`` = 1, 2, 4, 8 and 16 frames (a frames graph: at its ``num_frames``) against the model in PyTorch;
    a difference over ``1e-4`` times the output's scale refuses the file. Nothing is written unless the
    export (and the check) succeed.

    Args:
        model: a :class:`~lstrl_layers.VideoReIDNet`, a model with injected blocks, or a block.
        path: the ``.onnx`` file to write (replaced if it exists).
        example: an input the model takes (see :func:`export_program`); its ``H, W`` are fixed in the graph.
        dynamic: a dynamic batch and (5-D inputs) ``T``; ``False``: the example's shape only.
        check: run the file in ONNX Runtime against PyTorch (skipped without ``onnxruntime``).
        num_frames: ``T`` of a frames graph, see :func:`export_program`.

    Returns:
        :class:`OnnxExport`: the file, its input, its dynamic dims and the check's largest difference.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an example the model does not take, or a model that cannot be exported with these
            dynamic dims.
        RuntimeError: the check found a difference (the file is not written).
    """
    _check_args(model, example, dynamic, num_frames)
    check_bool("check", check)
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"path must name an .onnx file, got {str(path)!r}")
    signature = _signature(model, example, num_frames)
    output_name = "embedding" if isinstance(model, VideoReIDNet) else "output"
    with _exporting(model, signature.num_frames), atomic_path(path) as tmp:
        program = _torch_export(model, example, signature, dynamic)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            onnx_program = torch.onnx.export(
                program, (example,), input_names=[signature.input_name], output_names=[output_name],
                opset_version=OPSET, dynamo=True, verbose=False,
            )  # fmt: skip
        assert onnx_program is not None
        onnx_program.save(str(tmp), external_data=False)
        checked = _check_onnx(model, tmp, example, signature, dynamic) if check else ()
    fixed = None if dynamic and signature.time_dim is not None else signature.fixed_num_frames(example)
    return OnnxExport(path, signature.input_name, dynamic, fixed, OPSET, checked)


def _check_shapes(example: Tensor, signature: _Signature, dynamic: bool) -> Sequence[tuple[int, int]]:
    """``(clips, T)`` pairs to check: the example's only for a fixed graph."""
    if not dynamic:
        clips = example.shape[0] // (signature.num_frames or 1)
        return [(clips, signature.fixed_num_frames(example))]
    frames = _CHECK_NUM_FRAMES if signature.time_dim is not None else (signature.num_frames or 1,)
    return [(b, t) for b in _CHECK_BATCHES for t in frames]


def _check_onnx(
    model: nn.Module, path: Path, example: Tensor, signature: _Signature, dynamic: bool
) -> tuple[tuple[tuple[int, ...], float], ...]:
    try:
        import onnxruntime
    except ImportError:
        return ()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    checked = []
    for clips, t in _check_shapes(example, signature, dynamic):
        x = signature.inputs(example, clips, t)
        with torch.no_grad():
            expected = model(x).float().cpu()
        got_ = torch.from_numpy(session.run(None, {signature.input_name: x.cpu().numpy()})[0])
        if got_.shape != expected.shape:
            raise RuntimeError(
                f"the ONNX graph gives shape {tuple(got_.shape)} for an input of shape {tuple(x.shape)}, "
                f"PyTorch {tuple(expected.shape)}: the file is not written"
            )
        diff = float((got_ - expected).abs().max())
        scale = float(expected.abs().max())
        if not diff <= 1e-4 * max(1.0, scale):
            raise RuntimeError(
                f"the ONNX graph differs from PyTorch by {diff:.3g} (outputs up to {scale:.3g}) for an "
                f"input of shape {tuple(x.shape)}: the file is not written"
            )
        checked.append((tuple(x.shape), diff))
    return tuple(checked)
