"""A trained :class:`~lstrl_layers.VideoReIDNet` as a folder: ``config.json`` + ``model.safetensors``.

The Hugging Face Hub's layout, so a folder can be pushed to the Hub as it is and read back by its id; written
and read here rather than through ``huggingface_hub.PyTorchModelHubMixin``, which would rebuild the model
from the constructor's arguments as given (``pretrained=True`` would download the backbone again, a module
backbone cannot be stored), write a model card into the folder, and return the model in train mode.
safetensors holds tensors only: loading runs no code.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._files import atomic_path, write_json
from .weights import reachable

if TYPE_CHECKING:
    from .model import VideoReIDNet

__all__ = ["CONFIG_FILE", "PRETRAINED_FORMAT", "WEIGHTS_FILE", "load_pretrained", "save_pretrained"]

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
PRETRAINED_FORMAT = "lstrl_layers.video_reid_net/1"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")  # "owner/name"
_HUB_HOST = "huggingface.co"


def save_pretrained(model: VideoReIDNet, directory: str | Path) -> Path:
    """Write ``model`` to ``directory`` (created if needed): its arguments and weights, each atomically."""
    if not isinstance(model.config["backbone"], str):
        raise ValueError(
            f"save_pretrained stores a timm backbone by name, and this VideoReIDNet has a backbone module "
            f"({type(model.backbone).__name__}); save model.state_dict() and build the model again to load it"
        )
    config = {"format": PRETRAINED_FORMAT, "arguments": {**model.config, "pretrained": False}}
    try:
        json.dumps(config)
    except TypeError as err:
        raise ValueError(
            f"the model's arguments cannot be written as JSON ({err}): {model.config!r}"
        ) from None
    from safetensors.torch import save_file

    directory = Path(directory)
    weights = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt"})
    write_json(directory / CONFIG_FILE, config)
    return directory


def _local_directory(name: str | Path) -> Path:
    """The folder ``name`` names: a local one, or the Hub's copy of ``owner/name`` (downloaded if needed)."""
    path = Path(name)
    if path.is_dir():
        return path
    if not isinstance(name, str) or not _HUB_ID.match(name):
        raise FileNotFoundError(f"no such directory: {path} (nor a Hugging Face Hub id 'owner/name')")
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    files = [CONFIG_FILE, WEIGHTS_FILE]
    try:
        return Path(snapshot_download(name, allow_patterns=files, local_files_only=True))
    except Exception:  # not in the cache
        pass
    ways = "pass the local directory save_pretrained wrote, or download it once where there is internet"
    if offline:
        raise ValueError(f"{name} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: {ways}")
    why = reachable(_HUB_HOST)
    if why:
        raise ValueError(
            f"{name} is not in the Hugging Face cache and {_HUB_HOST} cannot be reached ({why}): {ways}"
        )
    try:
        return Path(snapshot_download(name, allow_patterns=files))
    except Exception as err:  # no such repository, gated, ...
        raise ValueError(
            f"{name} cannot be downloaded from the Hugging Face Hub: {type(err).__name__}: {err}"
        ) from None


def _read_config(directory: Path) -> dict[str, Any]:
    file = directory / CONFIG_FILE
    if not file.is_file():
        raise ValueError(f"{directory} has no {CONFIG_FILE}: it is not a folder written by save_pretrained")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON ({err})") from None
    found = config.get("format") if isinstance(config, dict) else None
    if found != PRETRAINED_FORMAT or not isinstance(config.get("arguments"), dict):
        raise ValueError(f"{file} is not a {PRETRAINED_FORMAT} config (its format is {found!r})")
    return config


def _read_weights(directory: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    file = directory / WEIGHTS_FILE
    if not file.is_file():
        raise ValueError(f"{directory} has no {WEIGHTS_FILE}: save_pretrained writes both files")
    from safetensors.torch import load_file

    try:
        return load_file(str(file), device=str(map_location))
    except Exception as err:  # truncated, or not safetensors
        raise ValueError(f"{file} cannot be read as safetensors ({type(err).__name__}: {err})") from None


def load_state_dict_checked(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state)``, or one line saying how ``source`` differs from the model."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    resized = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or resized:
        parts = [
            f"{len(keys)} {what} (e.g. {keys[0]!r})"
            for what, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("of another shape", resized),
            )
            if keys
        ]
        raise ValueError(
            f"the weights in {source} are not those of {type(model).__name__} as configured: "
            f"{', '.join(parts)} keys; they belong to another model"
        )
    model.load_state_dict(state)


def load_pretrained(
    cls: type[VideoReIDNet], name: str | Path, map_location: str | torch.device = "cpu"
) -> VideoReIDNet:
    """The model :func:`save_pretrained` wrote to ``name`` (a folder or a Hub id), in eval mode."""
    directory = _local_directory(name)
    config = _read_config(directory)
    weights = _read_weights(directory, map_location)
    try:
        model = cls(**{**config["arguments"], "pretrained": False})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{directory / CONFIG_FILE} does not describe a VideoReIDNet: {err}") from None
    load_state_dict_checked(model, weights, str(directory / WEIGHTS_FILE))
    return model.to(map_location).eval()
