"""torch and torchvision that were not built together, reported in one line at import."""

from __future__ import annotations

from importlib import metadata
from types import ModuleType

import torch


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def matching_torchvision(torch_version: str) -> str | None:
    """The torchvision series built with a torch 2.x release: torch 2.N pairs with torchvision 0.(N + 15)."""
    major, minor = (int(part) for part in torch_version.split("+")[0].split(".")[:2])
    return f"0.{minor + 15}" if major == 2 else None


def import_timm() -> ModuleType:
    """``timm``, imported where it is first needed, after :func:`check_torchvision` (timm imports
    torchvision at import)."""
    check_torchvision()
    import timm

    return timm


def check_torchvision() -> None:
    """Import torchvision where it is installed (timm does), turning a build that does not match torch into
    one clear line instead of ``RuntimeError: operator torchvision::nms does not exist``.

    Raises:
        ImportError: torchvision's compiled operators do not load with this torch; the message names both
            versions and the pair to install.
    """
    try:
        import torchvision  # noqa: F401
    except ModuleNotFoundError:
        return
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        release = torch.__version__.split("+")[0]
        series = matching_torchvision(torch.__version__)
        pair = f"'torch=={release}' 'torchvision=={series}.*'" if series else "torch torchvision"
        raise ImportError(
            f"torchvision {_installed('torchvision')} was not built for torch {torch.__version__} ({err}): "
            f"install the two from one package index, built together: pip install --force-reinstall {pair}"
        ) from None
