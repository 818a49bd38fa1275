"""``argparse`` types shared by the benchmark scripts: a wrong value fails at once, with the usage line."""

from __future__ import annotations

import argparse
from typing import Union

Stage = Union[int, str]


def positive_int(value: str) -> int:
    """An int >= 1 (``type=positive_int``)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value!r}")
    return number


def stage(value: str) -> Stage:
    """A ``feature_info`` index (int >= 0) or a module name such as ``layer2`` (``nargs="+", type=stage``)."""
    if "," in value:
        raise argparse.ArgumentTypeError(f"separate stages with spaces (--stages 2 3), got {value!r}")
    if value.lstrip("+-").isdigit():
        if value.startswith("-"):
            raise argparse.ArgumentTypeError(f"expected a stage index >= 0 or a name, got {value!r}")
        return int(value)
    if not value.strip():
        raise argparse.ArgumentTypeError(f"expected a stage index >= 0 or a name, got {value!r}")
    return value
