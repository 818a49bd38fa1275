"""MATLAB files of the ReID releases (MARS' and iLIDS-VID's ``.mat``, LS-VID's v7.3 HDF5), read as arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def loadmat(path: Path, key: str) -> np.ndarray:
    """Variable ``key`` of a MATLAB file, in MATLAB's row/column order.

    Versions 4 to 7.2 are read with scipy; version 7.3 files are HDF5 and read with h5py, whose arrays come
    in the reverse axis order (MATLAB is column-major), so they are transposed back.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading .mat files needs scipy: pip install 'lstrl_layers[examples]'") from err
    try:
        contents = loadmat(str(path))
    except NotImplementedError:  # MATLAB v7.3: an HDF5 file
        return load_hdf5_mat(path, key)
    except (ValueError, IndexError, MatReadError) as err:  # scipy < 1.15: IndexError on a truncated file
        raise ValueError(f"{path} is not a readable MATLAB .mat file: {err}") from err
    if key not in contents:
        found = sorted(k for k in contents if not k.startswith("_"))
        raise ValueError(f"{path} has no variable {key!r} (found {found})")
    return np.asarray(contents[key])


def load_hdf5_mat(path: Path, key: str) -> np.ndarray:
    try:
        import h5py
    except ImportError as err:
        raise ImportError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which needs h5py: pip install 'lstrl_layers[examples]'"
        ) from err
    with h5py.File(path, "r") as contents:
        if key not in contents or not isinstance(contents[key], h5py.Dataset):
            raise ValueError(f"{path} has no variable {key!r} (found {sorted(contents)})")
        return np.asarray(contents[key][()]).T


def integers(values: np.ndarray, where: str) -> np.ndarray:
    """``values`` as int64, or a ValueError naming ``where`` and the first value that is not an integer."""
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{where} must hold numbers, got an array of {array.dtype}")
    bad = ~np.isfinite(array) | (array != np.round(array)) if array.dtype.kind == "f" else np.zeros(0, bool)
    if bad.any():
        raise ValueError(f"{where} must hold integers, got {array[bad].flat[0]!r}")
    return array.astype(np.int64)


def query_indices(indices: np.ndarray, num_test: int, where: str) -> list[int]:
    """0-based test rows from 1-based query indices, each checked against the size of the test set."""
    rows = integers(indices, where).ravel()
    if rows.size == 0:
        raise ValueError(f"{where} lists no query")
    outside = rows[(rows < 1) | (rows > num_test)]
    if outside.size:
        raise ValueError(
            f"{where} must hold 1-based indices of the {num_test} test tracklets, got {int(outside[0])}"
        )
    return [int(i) - 1 for i in rows]
