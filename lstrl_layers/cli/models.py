"""A trained model for the commands: a ``save_pretrained`` folder, a checkpoint or model file, or ONNX."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from ..reid.pretrained import CONFIG_FILE

ClipModel = Callable[[Tensor], Tensor]


@dataclass
class LoadedModel:
    """The model as a function of clips, and what its source says of the clips it expects."""

    embed: ClipModel
    num_frames: int | None  # T the source was trained at (or the ONNX graph is fixed to)
    size: tuple[int, int] | None  # (H, W) the source was trained at (or the ONNX graph is fixed to)
    dynamic_num_frames: bool = True  # False: an ONNX graph fixed to num_frames
    dynamic_batch: bool = True


def load_torch(path: Path, device: str) -> tuple[Any, LoadedModel]:
    """A ``save_pretrained`` folder, a run folder / training checkpoint, or a ``save_model`` file."""
    from ..reid.engine.evaluation import load_trained
    from ..reid.model import VideoReIDNet

    if path.is_dir() and (path / CONFIG_FILE).is_file():
        model = VideoReIDNet.from_pretrained(path, map_location=device)
        return model, LoadedModel(model, None, None)
    if not path.exists():
        raise FileNotFoundError(
            f"no such model: {path} (a save_pretrained folder, a checkpoint or a model.pt)"
        )
    if path.is_dir() and not (path / "checkpoint.pt").is_file():
        raise ValueError(
            f"{path} holds neither {CONFIG_FILE} (a save_pretrained folder) nor checkpoint.pt (a training "
            "run)"
        )
    model, settings = load_trained(path, device)
    if settings is None:
        return model, LoadedModel(model, None, None)
    size = settings["size"]
    return model, LoadedModel(model, int(settings["num_frames"]), (int(size[0]), int(size[1])))


def load_onnx(path: Path) -> LoadedModel:
    """An ONNX file of a video model (input ``(B, T, 3, H, W)``), run by ONNX Runtime on the CPU."""
    try:
        import onnxruntime
    except ImportError:
        raise ValueError(
            "the onnxruntime backend needs onnxruntime: pip install 'lstrl_layers[deploy]'"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"no such ONNX file: {path}")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own exception types
        raise ValueError(
            f"{path} is not an ONNX model ONNX Runtime can load ({type(err).__name__})"
        ) from None
    (graph_input,) = session.get_inputs()
    shape = graph_input.shape
    if len(shape) != 5 or not all(isinstance(shape[i], int) for i in (2, 3, 4)):
        raise ValueError(
            f"{path} takes {graph_input.name} of shape {shape}, not a video (B, T, 3, H, W): export a "
            f"VideoReIDNet with a 5-D example (lstrl export)"
        )
    name = graph_input.name

    def embed(clips: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {name: clips.cpu().numpy()})[0])

    fixed_t = shape[1] if isinstance(shape[1], int) else None
    return LoadedModel(
        embed, fixed_t, (shape[3], shape[4]), dynamic_num_frames=fixed_t is None,
        dynamic_batch=not isinstance(shape[0], int),
    )  # fmt: skip
