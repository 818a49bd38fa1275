"""Tiny data set releases written on the fly, shared by the reader tests and the example tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_image(path: Path, value: int, size: tuple[int, int] = (16, 8)) -> None:
    """A grey JPEG / PNG frame of ``value`` at ``path``."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size[::-1], (value, value, value)).save(path)


def mars_release(root: Path) -> None:
    """Train: identity 5 (cam 1, 3 frames; cam 2, 2 frames), identity 9 (cam 1, 2 frames).
    Test: identity 5 in cams 1 (query), 1 and 3; junk -1 in cam 2; distractor 0 in cam 1."""
    from scipy.io import savemat

    tracks = {
        "train": [("0005", 1, 3), ("0005", 2, 2), ("0009", 1, 2)],
        "test": [("0005", 1, 2), ("0005", 1, 3), ("0005", 3, 2), ("00-1", 2, 2), ("0000", 1, 1)],
    }
    (root / "info").mkdir(parents=True)
    for part, specs in tracks.items():
        names, rows = [], []
        for track, (pid, cam, length) in enumerate(specs, start=1):
            first = len(names) + 1
            for frame in range(1, length + 1):
                name = f"{pid}C{cam}T{track:04d}F{frame:03d}.jpg"
                names.append(name)
                write_image(root / f"bbox_{part}" / pid / name, 40 * frame)
            rows.append([first, len(names), -1 if pid == "00-1" else int(pid), cam])
        (root / "info" / f"{part}_name.txt").write_text("\n".join(names) + "\n")
        savemat(str(root / "info" / f"tracks_{part}_info.mat"), {f"track_{part}_info": np.array(rows, float)})
    savemat(str(root / "info" / "query_IDX.mat"), {"query_IDX": np.array([[1]])})
