"""Data sets by name: ``read_dataset("mars", "/data/MARS")``, and your own reader under a name of yours.

Registered here: ``mars``, ``lsvid`` and ``ilidsvid``, read from their folders (:func:`read_mars`,
:func:`read_lsvid`, :func:`read_ilidsvid`), and the generated sets ``synthetic_appearance``,
``synthetic_motion`` and ``synthetic_occlusion`` (:func:`synthetic_video_reid`,
:func:`synthetic_motion_reid`, :func:`synthetic_occlusion_reid`), which take no folder. Your reader::

    @register_dataset("prid2011")
    def read_prid2011(root, split=0):
        ...
        return VideoReIDData(train, query, gallery, num_train_ids, name="PRID-2011")

    data = read_dataset("prid2011", "/data/PRID", split=1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

from ..._checks import got
from .ilidsvid import read_ilidsvid
from .lsvid import read_lsvid
from .mars import read_mars
from .synthetic import synthetic_motion_reid, synthetic_occlusion_reid, synthetic_video_reid
from .tracklets import VideoReIDData

__all__ = ["dataset_names", "read_dataset", "register_dataset"]

Reader = Callable[..., VideoReIDData]
R = TypeVar("R", bound=Reader)


@dataclass(frozen=True)
class _Entry:
    reader: Reader
    root: bool  # read from a folder (the reader's first argument), or generated


_DATASETS: dict[str, _Entry] = {}


@overload
def register_dataset(name: str, reader: None = None, *, root: bool = True) -> Callable[[R], R]: ...


@overload
def register_dataset(name: str, reader: R, *, root: bool = True) -> R: ...


def register_dataset(name: str, reader: Reader | None = None, *, root: bool = True) -> Any:
    """Register ``reader`` under ``name`` for :func:`read_dataset`; without ``reader``, a decorator.

    ``reader(root, **kwargs)`` (``root=True``: a data set read from a folder) or ``reader(**kwargs)``
    (``root=False``: a generated one) returns a :class:`VideoReIDData`.

    Raises:
        TypeError: ``name`` is not a str, ``reader`` not callable, ``root`` not a bool.
        ValueError: ``name`` is empty or registered already.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {got(name)}")
    if not name:
        raise ValueError("name must be a non-empty str, got ''")
    if name in _DATASETS:
        raise ValueError(f"name {name!r} is registered already (to {_DATASETS[name].reader.__name__})")
    if not isinstance(root, bool):
        raise TypeError(f"root must be True (read from a folder) or False (generated), got {got(root)}")

    def register(function: R) -> R:
        if not callable(function):
            raise TypeError(f"reader must be a function returning a VideoReIDData, got {got(function)}")
        _DATASETS[name] = _Entry(function, root)
        return function

    return register if reader is None else register(reader)


def dataset_names(root: bool | None = None) -> tuple[str, ...]:
    """The registered names, sorted; ``root=True``: those read from a folder, ``False``: those generated."""
    return tuple(sorted(n for n, entry in _DATASETS.items() if root is None or entry.root == root))


def read_dataset(name: str, root: str | Path | None = None, **kwargs: Any) -> VideoReIDData:
    """The data set registered as ``name``, read from the folder ``root`` (or generated, without one), with
    the reader's further arguments ``kwargs`` (``read_dataset("ilidsvid", root, split=1)``).

    Raises:
        TypeError: ``name`` is not a str, ``root`` not a path; the reader returned something other than a
            ``VideoReIDData``.
        ValueError: ``name`` is not registered (the message lists the names); ``root`` missing for a data set
            read from a folder, or given for a generated one.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be the name of a registered data set (str), got {got(name)}")
    if name not in _DATASETS:
        raise ValueError(f"unknown data set {name!r}; registered: {', '.join(dataset_names())}")
    entry = _DATASETS[name]
    if root is not None and not isinstance(root, (str, Path)):
        raise TypeError(f"root must be a folder (str or Path), got {got(root)}")
    if entry.root and root is None:
        raise ValueError(f"data set {name!r} is read from a folder: give its root, got None")
    if not entry.root and root is not None:
        raise ValueError(
            f"data set {name!r} is generated, not read from a folder: leave root out, got {root!r}"
        )
    data = entry.reader(root, **kwargs) if entry.root else entry.reader(**kwargs)
    if not isinstance(data, VideoReIDData):
        raise TypeError(f"the reader of {name!r} must return a VideoReIDData, got {type(data).__name__}")
    return data


register_dataset("mars", read_mars)
register_dataset("lsvid", read_lsvid)
register_dataset("ilidsvid", read_ilidsvid)
register_dataset("synthetic_appearance", synthetic_video_reid, root=False)
register_dataset("synthetic_motion", synthetic_motion_reid, root=False)
register_dataset("synthetic_occlusion", synthetic_occlusion_reid, root=False)
