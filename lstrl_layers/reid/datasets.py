"""Old location of :mod:`lstrl_layers.reid.data` (one module per reader since), kept for one release."""

from .data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipDataset,
    Frames,
    Sampling,
    Tracklet,
    UnreadableFrame,
    VideoReIDData,
    clip_transforms,
    collate_test_clips,
    read_ilidsvid,
    read_lsvid,
    read_mars,
    read_rgb,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClipDataset",
    "Frames",
    "Sampling",
    "Tracklet",
    "UnreadableFrame",
    "VideoReIDData",
    "clip_transforms",
    "collate_test_clips",
    "read_ilidsvid",
    "read_lsvid",
    "read_mars",
    "read_rgb",
]
