"""Pretrained backbone weights: whether timm can get them here, decided in seconds, not after retries."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["check_pretrained_available", "reachable"]


def _cached(hf_hub_id: str | None, url: str | None) -> bool:
    """Whether the weights are in the Hugging Face cache or in torch hub's checkpoint folder."""
    if hf_hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            pass
        else:
            for filename in ("model.safetensors", "pytorch_model.bin"):
                if isinstance(try_to_load_from_cache(hf_hub_id, filename), str):
                    return True
    if url:
        import torch

        return (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name).is_file()
    return False


def reachable(host: str, timeout: float = 3.0) -> str:
    """``""`` if ``host`` answers on port 443 within ``timeout`` seconds, else why not, in a few words."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as err:
        return f"{type(err).__name__}: {err}"
    return ""


def check_pretrained_available(
    model_name: str,
    timeout: float = 3.0,
    *,
    local_file: str = "weights=FILE",
    from_scratch: str = "pretrained=False",
) -> None:
    """Refuse at once, in one line, pretrained weights that timm would fail to download.

    The weights are available when they are in the local cache (Hugging Face's or torch hub's) or when their
    host answers within ``timeout`` seconds; otherwise timm would retry for about a minute and fail with a
    long traceback. The message names the ways out as ``local_file`` (a local file of the weights) and
    ``from_scratch`` (no pretrained weights); a command line passes its own flags.

    Raises:
        ValueError: the weights are neither cached nor reachable (the message says how to proceed).
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ValueError(f"timm has no pretrained weights for {model_name!r}: train with {from_scratch}")
    url = cfg.url if isinstance(cfg.url, str) else None
    if cfg.file or _cached(cfg.hf_hub_id, url):
        return
    host = "huggingface.co" if cfg.hf_hub_id else urlparse(url or "").hostname or ""
    ways = (
        f"download them once where there is internet (timm caches them), pass a local file with "
        f"{local_file}, or train from scratch with {from_scratch}"
    )
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") and cfg.hf_hub_id:
        raise ValueError(
            f"the pretrained weights of {model_name} are not cached and HF_HUB_OFFLINE is set: {ways}"
        )
    why = reachable(host, timeout)
    if why:
        raise ValueError(
            f"the pretrained weights of {model_name} are not cached and {host} cannot be reached ({why}): "
            f"{ways}"
        )
