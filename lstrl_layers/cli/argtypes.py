"""``argparse`` types for command lines over the library: a wrong value fails at once, with the usage line.

Used by the ``lstrl`` command and the example and benchmark scripts (``type=positive_int``, ``nargs="+",
type=stage``, ...); each raises :class:`argparse.ArgumentTypeError` with what was expected and what came.
:func:`add_num_frames` and :func:`add_backbone` add the options every script spells the same way.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Union

__all__ = [
    "DEVICE_HELP",
    "Stage",
    "add_backbone",
    "add_num_frames",
    "default_device",
    "device",
    "existing_file",
    "int_at_least",
    "non_negative_int",
    "number_in",
    "positive_int",
    "stage",
    "timm_model",
]

Stage = Union[int, str]


def number_in(
    kind: type[int] | type[float], low: float, high: float | None = None, low_open: bool = False
) -> Callable[[str], float]:
    """A finite ``kind`` number in ``[low, high]`` (``(low, high]`` with ``low_open``; no upper bound when
    ``high`` is ``None``)."""

    def parse(text: str) -> float:
        what = "an int" if kind is int else f"a finite {kind.__name__}"
        bounds = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} {bounds}, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        if too_low or (high is not None and value > high) or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what} {bounds}, got {text!r}")
        return value

    return parse


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An int ``>= minimum``."""
    parse = number_in(int, minimum)
    return lambda text: int(parse(text))


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def stage(text: str) -> Stage:
    """A ``feature_info`` index (int >= 0) or a module name such as ``layer2`` (``nargs="+"``)."""
    if "," in text:
        raise argparse.ArgumentTypeError(f"separate stages with spaces (--stages 2 3), got {text!r}")
    if not text.strip() or text.startswith("-"):
        raise argparse.ArgumentTypeError(f"expected a stage index >= 0 or a name, got {text!r}")
    return int(text) if text.isdigit() else text


def timm_model(text: str) -> str:
    """The name of a timm model (``hf-hub:`` and ``local-dir:`` sources are left to timm)."""
    import timm

    if ":" not in text and not timm.is_model(text):
        raise argparse.ArgumentTypeError(f"timm has no model {text!r} (timm.list_models() lists them)")
    return text


def existing_file(text: str) -> Path:
    """The path of an existing file."""
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return Path(text)


def add_num_frames(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    default: int | None,
    help: str,
    dest: str = "num_frames",
) -> None:
    """``-T/--num-frames``, the one spelling of ``T`` (frames per clip) in every script."""
    parser.add_argument("-T", "--num-frames", dest=dest, type=positive_int, default=default, help=help)


def add_backbone(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    default: str | None,
    help: str,
    type: Callable[[str], str] = timm_model,
) -> None:
    """``--backbone``, the one spelling of the backbone (a timm model by name, by default) in every script;
    the value goes to ``args.backbone``."""
    parser.add_argument("--backbone", type=type, default=default, metavar="NAME", help=help)


DEVICE_HELP = "cpu, cuda or cuda:N (default: cuda if available)"


def default_device() -> str:
    """``cuda`` when this machine has a CUDA GPU, else ``cpu``: every script's default ``--device``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``, refused at once where this machine has no such device."""
    import torch

    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available here")
        if (parsed.index or 0) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text}: this machine has {torch.cuda.device_count()} CUDA devices"
            )
    return text
