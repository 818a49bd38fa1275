"""Video person ReID training and evaluation pieces: sampling, losses, metrics, datasets.

Used by ``examples/train_video_reid.py``; import them to build your own loop:

- :mod:`~lstrl_layers.reid.sampling`: restricted random sampling, test-time chunk / dense clips, ``P x K``
  batches.
- :mod:`~lstrl_layers.reid.losses`: batch-hard triplet loss, CE + triplet.
- :mod:`~lstrl_layers.reid.metrics`: query-gallery CMC and mAP (standard ReID protocol).
- :mod:`~lstrl_layers.reid.datasets`: MARS, LS-VID and iLIDS-VID readers, synthetic identities, clip dataset.

Sampling, losses and metrics need only torch and numpy; the datasets need the ``examples`` extra
(torchvision; scipy for the ``.mat`` files).
"""

from .datasets import (
    ClipDataset,
    Tracklet,
    VideoReIDData,
    clip_transforms,
    collate_test_clips,
    read_ilidsvid,
    read_lsvid,
    read_mars,
    read_rgb,
)
from .losses import BatchHardTripletLoss, ReIDLoss, batch_hard_triplet_loss, euclidean_distances
from .metrics import ReIDResult, evaluate_ranking, pairwise_distances
from .sampling import (
    PKBatchSampler,
    chunk_bounds,
    chunk_first_indices,
    dense_clip_indices,
    restricted_random_indices,
)
from .synthetic import synthetic_motion_reid, synthetic_video_reid

__all__ = [
    "BatchHardTripletLoss",
    "ClipDataset",
    "PKBatchSampler",
    "ReIDLoss",
    "ReIDResult",
    "Tracklet",
    "VideoReIDData",
    "batch_hard_triplet_loss",
    "chunk_bounds",
    "chunk_first_indices",
    "clip_transforms",
    "collate_test_clips",
    "dense_clip_indices",
    "euclidean_distances",
    "evaluate_ranking",
    "pairwise_distances",
    "read_ilidsvid",
    "read_lsvid",
    "read_mars",
    "read_rgb",
    "restricted_random_indices",
    "synthetic_motion_reid",
    "synthetic_video_reid",
]
