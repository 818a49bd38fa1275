"""Argument checks shared by the blocks, the injection and ``lstrl_layers.reid``.

Each raises up front, naming the argument, what was expected and what came (quoted): ``TypeError`` for a
value of the wrong type, ``ValueError`` for a value of the right type out of range.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from torch import Tensor


def got(value: object) -> str:
    """``value`` quoted with its type, for messages: ``'yes' (str)``; long reprs (modules) shortened."""
    text = repr(value)
    if len(text) > 80 or "\n" in text:
        text = text.splitlines()[0][:76] + " ..."
    return f"{text} ({type(value).__name__})"


def check_int(name: str, value: object, minimum: int | None = 1) -> int:
    """``value`` as an ``int`` (``bool`` refused), at least ``minimum`` unless that is ``None``."""
    expected = "an int" if minimum is None else f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {expected}, got {got(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_last_stride(value: object) -> int:
    """``last_stride``: ``1`` (the ReID convention) or ``2`` (the backbone's own stride)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"last_stride must be 1 or 2, got {got(value)}")
    if value not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {value!r}")
    return int(value)


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False`` (no truthy strings, ints or ``None``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {got(value)}")
    return value


def check_size(name: str, value: object) -> tuple[int, int]:
    """``(H, W)``: a pair of ints >= 1 (a tuple or list)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be (H, W), two ints >= 1, got {got(value)}")
    height, width = (check_int(f"{name}[{i}]", v) for i, v in enumerate(value))
    return height, width


def check_float(
    name: str,
    value: object,
    expected: str,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (``(low, high]`` unless ``low_inclusive``).

    ``expected`` says it in words for the message (``"a positive float"``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {got(value)}")
    number = float(value)
    below = low is not None and (number < low or (number == low and not low_inclusive))
    if not math.isfinite(number) or below or (high is not None and number > high):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return number


def check_optional_mapping(name: str, value: object) -> Mapping[str, Any] | None:
    """``value`` if it is ``None`` or a mapping (keyword arguments to pass on)."""
    if value is not None and not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of keyword arguments or None, got {got(value)}")
    return value


def check_stages(name: str, value: object, allow_empty: bool) -> tuple[Any, ...]:
    """A list or tuple of stage indices or names (the elements are checked against the model later)."""
    expected = "a list of stage indices or names" + (" (empty for none)" if allow_empty else "")
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be {expected}, e.g. [2, 3] or ['layer2', 'layer3'], got {got(value)}")
    stages = tuple(value)
    if not stages and not allow_empty:
        raise ValueError(f"{name} must be a non-empty list of stage indices or names, got {value!r}")
    return stages


def integer_labels(name: str, values: object) -> np.ndarray:
    """1-D identity (or camera) labels as int64, from a tensor, an array or a sequence of ints.

    Floats are accepted only where they hold whole numbers (``2.0``); ``1.7`` is refused rather than
    truncated. Booleans, strings and other objects are refused.
    """
    if isinstance(values, Tensor):
        array = values.detach().cpu().numpy()
    elif isinstance(values, np.ndarray):
        array = values
    elif isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a 1-D tensor, array or list of integer labels, got {got(values)}")
    else:
        array = np.asarray(list(values))
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per entry), got shape {tuple(array.shape)}")
    if array.dtype.kind == "f":
        whole = np.isfinite(array) & (array == np.round(array))
        if not whole.all():
            bad = array[~whole][0].item()
            raise ValueError(
                f"{name} must hold integer labels, got the non-integer value {bad!r} at index "
                f"{int(np.flatnonzero(~whole)[0])} (labels are compared exactly, never rounded)"
            )
    elif array.dtype.kind not in "iu":  # bool ("b"), str, object
        example = f" such as {array[0].item()!r}" if len(array) else ""
        raise TypeError(f"{name} must hold integer labels, got dtype {array.dtype}{example}")
    return array.astype(np.int64)
