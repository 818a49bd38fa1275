"""Video ReID data: MARS, LS-VID and iLIDS-VID folder readers, one module each, and clips of ``T`` frames.

A split is a :class:`VideoReIDData`: lists of :class:`Tracklet` (frames, identity, camera) for training,
query and gallery. :class:`ClipDataset` turns a list of tracklets into clips of ``T`` frames with the
samplers of :mod:`lstrl_layers.reid.sampling` and the augmentations of :func:`clip_transforms`
(``torchvision.transforms.v2``: one random crop / flip / erasing per clip, shared by its frames).

Needs the ``examples`` extra: ``torchvision`` (transforms; Pillow reads the images), ``scipy`` (the
``.mat`` files of MARS and iLIDS-VID) and ``h5py`` (LS-VID's MATLAB v7.3 query file), imported only when
reading them.
"""

from .clips import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipDataset,
    Sampling,
    UnreadableFrame,
    clip_transforms,
    collate_test_clips,
    read_rgb,
)
from .ilidsvid import read_ilidsvid
from .lsvid import read_lsvid
from .mars import read_mars
from .registry import dataset_names, read_dataset, register_dataset
from .synthetic import synthetic_motion_reid, synthetic_occlusion_reid, synthetic_video_reid
from .tracklets import Frames, Tracklet, VideoReIDData

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
    "dataset_names",
    "read_dataset",
    "read_ilidsvid",
    "read_lsvid",
    "read_mars",
    "read_rgb",
    "register_dataset",
    "synthetic_motion_reid",
    "synthetic_occlusion_reid",
    "synthetic_video_reid",
]
