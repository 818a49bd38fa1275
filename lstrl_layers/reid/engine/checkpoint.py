"""Checkpoints that ``torch.load(path, weights_only=True)`` reads: tensors and plain values, no code.

Two kinds of file, each tagged with its ``format`` so that a file that is not ours is refused up front:

- a training checkpoint (:func:`save_checkpoint` / :func:`load_checkpoint`): model, optimizer and scheduler
  states, the run's settings as plain values, its history, and every random state it uses (torch CPU and
  CUDA, Python's ``random``, NumPy) as tensors, for an exact resume;
- a model file (:func:`save_model` / :func:`load_model`): the :class:`~lstrl_layers.VideoReIDNet` arguments
  and weights, rebuilt in one call.

Both are loaded with ``weights_only=True``, so a checkpoint from a stranger cannot run code on load.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..._deprecated import current_model_arguments
from ..._files import atomic_path
from ..model import VideoReIDNet
from ..pretrained import load_state_dict_checked

__all__ = [
    "load_checkpoint",
    "load_model",
    "random_states",
    "save_checkpoint",
    "save_model",
    "set_random_states",
]

CHECKPOINT_FORMAT = "lstrl_layers.train_checkpoint/1"
MODEL_FORMAT = "lstrl_layers.video_reid_net/1"


def random_states() -> dict[str, Tensor]:
    """Every random state a training run draws from, as tensors (torch, CUDA, Python ``random``, NumPy)."""
    version, mt_state, gauss = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor([version, *mt_state], dtype=torch.int64),
        "python_gauss": torch.tensor([] if gauss is None else [gauss], dtype=torch.float64),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    _, keys, position, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    states["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    states["numpy_extra"] = torch.tensor([position, has_gauss, cached], dtype=torch.float64)
    return states


def set_random_states(states: Mapping[str, Tensor]) -> None:
    """Restore what :func:`random_states` returned (wherever the tensors were loaded to)."""
    states = {name: state.cpu() for name, state in states.items()}
    torch.set_rng_state(states["torch"])
    values = states["python"].tolist()
    gauss = states["python_gauss"].tolist()
    random.setstate((int(values[0]), tuple(int(v) for v in values[1:]), gauss[0] if gauss else None))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(states["cuda"]))
    if "numpy" in states:
        position, has_gauss, cached = states["numpy_extra"].tolist()
        keys = states["numpy"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, int(position), int(has_gauss), float(cached)))


def _load(path: str | Path, expected: str, map_location: str | torch.device) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a pickle with code, a zip of something else, a truncated file
        why = (
            "it holds objects other than tensors and plain values"
            if isinstance(err, pickle.UnpicklingError)
            else f"{type(err).__name__}"
        )
        raise ValueError(
            f"{path} is not a file written by lstrl_layers ({expected}): torch.load(weights_only=True) "
            f"refused it ({why})"
        ) from None
    found = state.get("format") if isinstance(state, dict) else None
    if found != expected:
        raise ValueError(f"{path} is not a {expected} file (its format is {found!r})")
    return state


def _save_atomically(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file, then a rename: a reader never sees half a file."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def save_checkpoint(path: str | Path, **contents: Any) -> None:
    """Write a training checkpoint atomically (a temporary file, then a rename)."""
    _save_atomically({"format": CHECKPOINT_FORMAT, **contents}, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    return _load(path, CHECKPOINT_FORMAT, map_location)


def save_model(path: str | Path, model: VideoReIDNet) -> None:
    """Write ``model``'s weights with the arguments that rebuild it (:func:`load_model`)."""
    if not isinstance(model, VideoReIDNet):
        raise TypeError(f"save_model expects a VideoReIDNet, got {type(model).__name__}")
    if not isinstance(model.config["backbone"], str):
        raise ValueError(
            f"save_model stores a timm backbone by name, and this VideoReIDNet has a backbone module "
            f"({type(model.backbone).__name__}); save model.state_dict() with torch.save, and load it into "
            f"the same VideoReIDNet built again"
        )
    state = {"format": MODEL_FORMAT, "arguments": model.config, "state_dict": model.state_dict()}
    _save_atomically(state, path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> VideoReIDNet:
    """Rebuild the :class:`~lstrl_layers.VideoReIDNet` saved by :func:`save_model`, weights loaded, in eval
    mode (call ``.train()`` to train it further).

    The backbone is built with ``pretrained=False`` (the file holds all the weights), so no download.
    """
    state = _load(path, MODEL_FORMAT, map_location)
    arguments = current_model_arguments(state["arguments"])
    model = VideoReIDNet(**{**arguments, "pretrained": False})
    load_state_dict_checked(model, state["state_dict"], str(path))
    return model.to(map_location).eval()
