"""Embeddings of tracklets on disk: a folder of tracklet folders in, one vector per tracklet out."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .._checks import check_int, check_size
from .._files import atomic_path
from .data import ClipDataset, Tracklet, clip_transforms, collate_test_clips
from .engine.runtime import progress
from .sampling import TEST_SAMPLINGS, Sampling

__all__ = ["IMAGE_SUFFIXES", "TrackletFolders", "embed_tracklets", "read_tracklet_folders", "save_embeddings"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
ClipModel = Callable[[Tensor], Tensor]  # clips (N, T, 3, H, W) -> embeddings (N, D)


def _natural_key(path: Path) -> list[object]:
    """Name order with numbers compared by value (``frame2`` before ``frame10``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


@dataclass(frozen=True)
class TrackletFolders:
    """What :func:`read_tracklet_folders` found: a tracklet per folder, with the folder's name."""

    names: list[str]
    tracklets: list[Tracklet]


def read_tracklet_folders(root: str | Path, pattern: str | None = None) -> TrackletFolders:
    """The tracklets under ``root``: one per sub-folder, its frames the images in it, in name order.

    Args:
        root: a folder of tracklet folders (each holding the frames of one track as image files:
            ``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.webp``; numbers in names compare by value).
        pattern: a regular expression with the named groups ``pid`` and ``camid`` (or one of them), matched
            against each folder's name, e.g. ``r"(?P<pid>\\d+)_c(?P<camid>\\d+)"``: the identity and camera
            of each tracklet, so that the embeddings can be ranked. Without it (or a group), ``-1``.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no tracklet folder under ``root``, a folder without images, a pattern without the groups
            or a folder name it does not match.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder of tracklets: {root}")
    regex = None if pattern is None else _compiled(pattern)
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=_natural_key)
    if not folders:
        raise ValueError(f"{root} holds no tracklet folder (expected one sub-folder of frames per tracklet)")
    tracklets = []
    for folder in folders:
        frames = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=_natural_key,
        )
        if not frames:
            raise ValueError(f"tracklet folder {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
        pid, camid = _identity(regex, folder.name)
        tracklets.append(Tracklet(tuple(str(p) for p in frames), pid, camid))
    return TrackletFolders([f.name for f in folders], tracklets)


def _compiled(pattern: str) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"pattern {pattern!r} is not a regular expression: {err}") from None
    if not {"pid", "camid"} & set(regex.groupindex):
        raise ValueError(f"pattern {pattern!r} has neither a (?P<pid>...) nor a (?P<camid>...) group")
    return regex


def _identity(regex: re.Pattern[str] | None, name: str) -> tuple[int, int]:
    if regex is None:
        return -1, -1
    match = regex.search(name)
    if match is None:
        raise ValueError(f"tracklet folder {name!r} does not match the pattern {regex.pattern!r}")
    values = []
    for group in ("pid", "camid"):
        text = match.groupdict().get(group)
        if text is not None and not text.lstrip("-").isdigit():
            raise ValueError(
                f"the {group} of folder {name!r} is {text!r}, not an integer (pattern {regex.pattern!r})"
            )
        values.append(-1 if text is None else int(text))
    return values[0], values[1]


@torch.no_grad()
def embed_tracklets(
    model: nn.Module | ClipModel,
    tracklets: Sequence[Tracklet],
    num_frames: int,
    size: tuple[int, int] = (256, 128),
    sampling: Sampling = "dense",
    batch_size: int = 32,
    max_clips: int | None = None,
    device: str | torch.device = "cpu",
    show_progress: bool = False,
) -> Tensor:
    """One embedding per tracklet: the mean of its clips' embeddings, as the ReID evaluation computes it.

    Each tracklet is cut into clips of ``num_frames`` frames by ``sampling`` (``"dense"``: all its frames as
    consecutive clips, at most ``max_clips``; ``"first"``, ``"even"``: one clip; see
    :class:`~lstrl_layers.reid.ClipDataset`), resized to ``size``, normalized with ImageNet's statistics,
    and embedded ``batch_size`` clips at a time.

    Args:
        model: a model in eval mode taking clips ``(N, T, 3, H, W)`` (a :class:`~lstrl_layers.VideoReIDNet`),
            or any callable doing so (e.g. an ONNX Runtime session wrapped in a function).
        tracklets: e.g. :func:`read_tracklet_folders`'s.
        num_frames: ``T``, frames per clip.
        size: ``(H, W)`` of the frames.
        sampling: one of :data:`~lstrl_layers.reid.sampling.TEST_SAMPLINGS` (``"first"``, ``"even"``,
            ``"dense"``).
        batch_size: clips per call of ``model``.
        max_clips: at most this many clips per tracklet (``"dense"``).
        device: where the clips go (the model's device).
        show_progress: a progress bar (tqdm).

    Returns:
        ``(len(tracklets), D)`` float32 embeddings, on the CPU.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an argument out of range, a sampling that is not a test sampling (``"rrs"``).
        UnreadableFrame: a frame that cannot be decoded (the message names the file).
    """
    if isinstance(sampling, str) and sampling not in TEST_SAMPLINGS:
        raise ValueError(f"sampling must be one of {TEST_SAMPLINGS} (test clips), got {sampling!r}")
    if isinstance(model, nn.Module) and model.training:
        raise ValueError("model is in train mode: call model.eval() before embedding")
    check_int("batch_size", batch_size)
    size = check_size("size", size)
    dataset = ClipDataset(
        tracklets, num_frames, size, sampling, clip_transforms(size, train=False), max_clips=max_clips
    )
    loader = DataLoader(dataset, batch_size=max(1, batch_size // 4), collate_fn=collate_test_clips)
    embeddings = []
    for clips, counts, _, _ in progress(loader, show_progress, desc="embed", unit="batch"):
        out = torch.cat([model(chunk.to(device)).float().cpu() for chunk in clips.split(batch_size)])
        embeddings += [e.mean(0) for e in out.split(counts.tolist())]
    return torch.stack(embeddings)


def save_embeddings(
    path: str | Path, embeddings: Tensor, folders: TrackletFolders, **sampling: object
) -> None:
    """``embeddings``, the folders' ``names``, ``pids``, ``camids`` and ``sampling`` values as one ``.npz``,
    written atomically."""
    arrays = {
        "embeddings": embeddings.numpy().astype(np.float32),
        "names": np.array(folders.names),
        "pids": np.array([t.pid for t in folders.tracklets], dtype=np.int64),
        "camids": np.array([t.camid for t in folders.tracklets], dtype=np.int64),
        **{key: np.array(value) for key, value in sampling.items()},
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        np.savez(file, **arrays)  # type: ignore[arg-type]
