"""Clips of ``T`` frames from tracklets: decoding, the augmentations, the dataset and its test batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import Tensor
from torch.utils.data import Dataset

from ..._checks import check_bool, check_float, check_int, check_size, got
from ..sampling import (
    SAMPLINGS,
    Sampling,
    chunk_first_indices,
    dense_clip_indices,
    even_indices,
    restricted_random_indices,
)
from .tracklets import Tracklet

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClipDataset",
    "Sampling",
    "UnreadableFrame",
    "clip_transforms",
    "collate_test_clips",
    "read_rgb",
]


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def clip_transforms(
    size: tuple[int, int], train: bool, padding: int = 10, erasing: float = 0.5
) -> Callable[[Tensor], Tensor]:
    """``torchvision.transforms.v2`` pipeline for a uint8 clip ``(T, 3, H, W)`` already resized to ``size``.

    Train (paper §4.2): random horizontal flip, random crop after ``padding`` pixels of zero padding, then
    ImageNet normalization and random erasing (probability ``erasing``). The parameters of each random
    transform are drawn once per call, so all frames of a clip get the same crop, flip and erased box. Test:
    normalization only.
    """
    size, train = check_size("size", size), check_bool("train", train)
    padding = check_int("padding", padding, minimum=0)
    erasing = check_float("erasing", erasing, "a probability in [0, 1]", low=0.0, high=1.0)
    from torchvision.transforms import v2

    steps: list[Callable[[Tensor], Tensor]] = []
    if train:
        steps += [v2.RandomHorizontalFlip(), v2.RandomCrop(size, padding=padding)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train and erasing > 0:
        steps.append(v2.RandomErasing(p=erasing, value=0))
    return v2.Compose(steps)


class UnreadableFrame(OSError):
    """A frame file that cannot be decoded; the message names the data set, tracklet and file."""


def read_rgb(path: str | Path) -> Tensor:
    """An image file as a uint8 ``(3, H, W)`` tensor (Pillow; torchvision's own decoders are deprecated).

    Raises:
        UnreadableFrame: the file is missing, not an image or truncated (the message names it).
    """
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    try:
        with Image.open(path) as image:
            return TF.pil_to_tensor(image.convert("RGB"))
    except Exception as err:  # Pillow: OSError (truncated), UnidentifiedImageError, SyntaxError, ...
        raise UnreadableFrame(f"{path}: {type(err).__name__}: {err}") from err


def _checked_tracklet(index: int, tracklet: object) -> Tracklet:
    """``tracklet`` if it is a :class:`Tracklet` with frames a clip can be read from."""
    if not isinstance(tracklet, Tracklet):
        raise TypeError(f"tracklets[{index}] must be a Tracklet, got {got(tracklet)}")
    for name in ("pid", "camid"):
        value = getattr(tracklet, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"tracklets[{index}].{name} must be an int, got {got(value)}")
    frames = tracklet.frames
    if isinstance(frames, Tensor) and frames.dtype != torch.uint8:
        raise TypeError(
            f"tracklets[{index}].frames must be a uint8 (N, 3, H, W) tensor, got a {frames.dtype} tensor"
        )
    if isinstance(frames, Tensor) and (frames.ndim != 4 or frames.shape[1] != 3):
        raise ValueError(
            f"tracklets[{index}].frames must be a uint8 (N, 3, H, W) tensor, got shape {tuple(frames.shape)}"
        )
    if len(tracklet) == 0:
        raise ValueError(
            f"tracklets[{index}] (identity {tracklet.pid}, camera {tracklet.camid}) has no frame"
        )
    return tracklet


class ClipDataset(Dataset):
    """Clips of ``T`` frames from tracklets, with their identity and camera.

    ``sampling``:

    - ``"rrs"`` (training): restricted random sampling; item ``(clip (T, 3, H, W), pid, camid)``.
    - ``"first"`` (test): the first frame of each of the ``T`` chunks; item ``(clips (1, T, 3, H, W), ...)``.
    - ``"even"`` (test): ``T`` evenly spaced frames, the first and the last included
      (:func:`~lstrl_layers.reid.sampling.even_indices`; a tracklet played backwards gives this clip played
      backwards); item ``(clips (1, T, 3, H, W), ...)``.
    - ``"dense"`` (test): all frames as consecutive ``T``-frame clips (at most ``max_clips``);
      item ``(clips (N, T, 3, H, W), ...)``. Batch test items with :func:`collate_test_clips`.

    Frames are decoded (Pillow) and resized to ``size`` one by one, then ``transform`` (e.g.
    :func:`clip_transforms`) runs on the whole uint8 clip. A frame that cannot be decoded raises
    :class:`UnreadableFrame`, naming the data set (``name``), the tracklet and the file.

    ``num_frames`` (``T``) and ``size`` are required: ``ClipDataset(tracklets, 8, (256, 128))``.
    """

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        num_frames: int,
        size: tuple[int, int],
        sampling: Sampling = "rrs",
        transform: Callable[[Tensor], Tensor] | None = None,
        max_clips: int | None = None,
        seed: int | None = None,
        name: str = "",
    ) -> None:
        if not isinstance(sampling, str):
            raise TypeError(f"sampling must be one of {SAMPLINGS}, got {got(sampling)}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {got(transform)}")
        if not isinstance(name, str):
            raise TypeError(f"name must be the data set's name (a str), got {got(name)}")
        if isinstance(tracklets, (str, bytes)) or not isinstance(tracklets, Sequence):
            raise TypeError(f"tracklets must be a list of Tracklet, got {got(tracklets)}")
        self.tracklets = [_checked_tracklet(i, t) for i, t in enumerate(tracklets)]
        if not self.tracklets:
            raise ValueError("tracklets is empty: a ClipDataset needs at least one tracklet")
        self.num_frames = check_int("num_frames (T, frames per clip)", num_frames)
        self.size = check_size("size", size)
        self.sampling = sampling
        self.transform = transform
        self.max_clips = None if max_clips is None else check_int("max_clips", max_clips, minimum=1)
        self.generator = (
            None if seed is None else torch.Generator().manual_seed(check_int("seed", seed, minimum=None))
        )
        self.name = name  # the data set's, for messages
        if transform is not None:
            self._check_transform(transform)

    def _check_transform(self, transform: Callable[[Tensor], Tensor]) -> None:
        """``transform`` must keep the frames at ``size`` (one built for another size crops them or fails)."""
        clip = torch.zeros(1, 3, *self.size, dtype=torch.uint8)
        build = f"build it for size={self.size} (clip_transforms({self.size}, ...))"
        with torch.random.fork_rng(
            devices=[]
        ):  # the random transforms draw; the data's draws stay as they were
            try:
                out = transform(clip)
            except Exception as err:  # torchvision's own errors (a crop larger than the frame, ...)
                raise ValueError(
                    f"transform fails on frames of size={self.size} ({type(err).__name__}: {err}): {build}"
                ) from None
        if not isinstance(out, Tensor) or tuple(out.shape[-2:]) != self.size:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"transform turns frames of size={self.size} into {shape}: {build}")

    def __len__(self) -> int:
        return len(self.tracklets)

    @property
    def pids(self) -> list[int]:
        """Identity of every item, for :class:`~lstrl_layers.reid.sampling.PKBatchSampler`."""
        return [t.pid for t in self.tracklets]

    def _load(self, index: int, indices: Sequence[int]) -> Tensor:
        from torchvision.transforms.v2 import functional as TF

        frames = self.tracklets[index].frames
        loaded = {}
        for i in sorted(set(indices)):
            image = frames[i] if isinstance(frames, Tensor) else self._read(index, i)
            if tuple(image.shape[-2:]) != self.size:
                image = TF.resize(image, list(self.size), antialias=True)
            loaded[i] = image
        return torch.stack([loaded[i] for i in indices])

    def _read(self, index: int, frame: int) -> Tensor:
        tracklet = self.tracklets[index]
        path = str(tracklet.frames[frame])  # a path: frames given as a tensor are never read
        try:
            return read_rgb(path)
        except UnreadableFrame as err:
            where = f"{self.name}: " if self.name else ""
            raise UnreadableFrame(
                f"{where}frame {frame} of tracklet {index} (identity {tracklet.pid}, camera "
                f"{tracklet.camid}) cannot be decoded: {err}"
            ) from err.__cause__

    def _transform(self, clip: Tensor) -> Tensor:
        return clip if self.transform is None else self.transform(clip)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        tracklet = self.tracklets[index]
        n = len(tracklet)
        if self.sampling == "rrs":
            clip = self._load(index, restricted_random_indices(n, self.num_frames, self.generator))
            return self._transform(clip), tracklet.pid, tracklet.camid
        if self.sampling == "first":
            clips = [chunk_first_indices(n, self.num_frames)]
        elif self.sampling == "even":
            clips = [even_indices(n, self.num_frames)]
        else:
            clips = dense_clip_indices(n, self.num_frames, self.max_clips)
        frames = self._load(index, [i for clip in clips for i in clip])
        frames = self._transform(frames)
        return rearrange(frames, "(n t) c h w -> n t c h w", t=self.num_frames), tracklet.pid, tracklet.camid


def collate_test_clips(batch: Sequence[tuple[Tensor, int, int]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Batch test items of different clip counts: ``(clips (sum N, T, 3, H, W), counts, pids, camids)``.

    ``counts[i]`` is the number of clips of tracklet ``i``; average their embeddings with
    ``embeddings.split(counts.tolist())``.
    """
    if len(batch) == 0:
        raise ValueError("batch is empty")
    for i, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != 3 or not isinstance(item[0], Tensor):
            raise TypeError(
                f"batch[{i}] must be a ClipDataset test item (clips, pid, camid), got {item!r:.80}"
            )
        if item[0].ndim != 5 or item[0].shape[1:] != batch[0][0].shape[1:]:
            raise ValueError(
                f"batch[{i}] clips must be (N, T, 3, H, W) like batch[0] {tuple(batch[0][0].shape)}, "
                f"got {tuple(item[0].shape)} (test items come from sampling='first', 'even' or 'dense')"
            )
    clips, pids, camids = zip(*batch)
    counts = torch.tensor([len(c) for c in clips])
    return torch.cat(clips), counts, torch.tensor(pids), torch.tensor(camids)
