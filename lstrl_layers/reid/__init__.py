"""Video person ReID training and evaluation: datasets, sampling, losses, metrics, and one loop over them.

:func:`fit` and :func:`evaluate` (:mod:`~lstrl_layers.reid.engine`) train and evaluate a
:class:`~lstrl_layers.VideoReIDNet` with the paper's recipe, in one process or under ``torchrun``; they are
what ``examples/train_video_reid.py`` and ``benchmarks/ablation.py`` run; a :class:`Hook` runs your code
inside that loop. :func:`read_dataset` reads a data set by name (:func:`register_dataset` adds yours).
:func:`save_model` and
:func:`load_model` (:mod:`~lstrl_layers.reid.engine.checkpoint`) store a trained model with the arguments that
rebuild it. The pieces, to build your own loop:

- :mod:`~lstrl_layers.reid.sampling`: restricted random sampling, test-time chunk / dense clips, ``P x K``
  batches.
- :mod:`~lstrl_layers.reid.losses`: batch-hard triplet loss, CE + triplet.
- :mod:`~lstrl_layers.reid.metrics`: query-gallery CMC, mAP and mINP (standard ReID protocol); the
  within-pair AUC of data with paired identities.
- :mod:`~lstrl_layers.reid.rerank`: k-reciprocal re-ranking of the query-gallery distances.
- :mod:`~lstrl_layers.reid.plots`: CMC curves and the ranked lists of the worst queries, as PNG files.
- :mod:`~lstrl_layers.reid.data`: MARS, LS-VID and iLIDS-VID readers (one module each), tracklets, clips,
  and synthetic sets whose answer is known (appearance, motion pairs, occlusion).

Sampling, losses, metrics and re-ranking need only torch and numpy; the datasets need the ``examples`` extra
(torchvision; scipy for the ``.mat`` files), and the plots matplotlib.
"""

from .data import (
    ClipDataset,
    Tracklet,
    UnreadableFrame,
    VideoReIDData,
    clip_transforms,
    collate_test_clips,
    dataset_names,
    read_dataset,
    read_ilidsvid,
    read_lsvid,
    read_mars,
    read_rgb,
    register_dataset,
    synthetic_motion_reid,
    synthetic_occlusion_reid,
    synthetic_video_reid,
)
from .engine import (
    FitResult,
    Hook,
    NonFiniteLoss,
    TrainingInterrupted,
    TrainSettings,
    TrainState,
    evaluate,
    fit,
)
from .engine.checkpoint import load_model, save_model
from .losses import BatchHardTripletLoss, ReIDLoss, batch_hard_triplet_loss, euclidean_distances
from .metrics import ReIDResult, evaluate_ranking, pair_auc, pairwise_distances
from .plots import RankedRow, plot_cmc, plot_ranked, ranked_rows
from .rerank import rerank
from .sampling import (
    PKBatchSampler,
    chunk_bounds,
    chunk_first_indices,
    dense_clip_indices,
    even_indices,
    restricted_random_indices,
)

__all__ = [
    "BatchHardTripletLoss",
    "ClipDataset",
    "FitResult",
    "Hook",
    "NonFiniteLoss",
    "PKBatchSampler",
    "RankedRow",
    "ReIDLoss",
    "ReIDResult",
    "TrainSettings",
    "TrainState",
    "TrainingInterrupted",
    "Tracklet",
    "UnreadableFrame",
    "VideoReIDData",
    "batch_hard_triplet_loss",
    "chunk_bounds",
    "chunk_first_indices",
    "clip_transforms",
    "collate_test_clips",
    "dataset_names",
    "dense_clip_indices",
    "euclidean_distances",
    "even_indices",
    "evaluate",
    "evaluate_ranking",
    "fit",
    "load_model",
    "pair_auc",
    "pairwise_distances",
    "plot_cmc",
    "plot_ranked",
    "ranked_rows",
    "read_dataset",
    "read_ilidsvid",
    "read_lsvid",
    "read_mars",
    "read_rgb",
    "register_dataset",
    "rerank",
    "restricted_random_indices",
    "save_model",
    "synthetic_motion_reid",
    "synthetic_occlusion_reid",
    "synthetic_video_reid",
]
