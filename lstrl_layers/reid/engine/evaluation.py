"""Evaluating a model on a query / gallery split: embeddings, ranking, re-ranking, metrics and pictures.

Used by the training loop after its epochs and by :func:`evaluate_trained`; usable on its own with any model
that gives embeddings in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from ..data import ClipDataset, Sampling, VideoReIDData, clip_transforms, collate_test_clips
from ..metrics import ReIDResult, evaluate_ranking, pair_auc, pairwise_distances
from ..model import VideoReIDNet
from ..pretrained import load_state_dict_checked
from .checkpoint import MODEL_FORMAT, load_checkpoint, load_model
from .distributed import World, broadcast_object, gather_rows, joined_world, shard_indices
from .reporting import Reporter, frame_for_picture
from .runtime import autocast, in_memory_format, progress
from .settings import TrainSettings

__all__ = [
    "Ranking",
    "draw_pictures",
    "evaluate",
    "evaluate_trained",
    "extract",
    "load_trained",
    "rank_query_gallery",
    "summary",
    "test_loader",
]

Log = Callable[[str], None]


def test_loader(
    tracklets: Sequence[Any], settings: TrainSettings, name: str = "", world: World | None = None
) -> tuple[DataLoader, list[int]]:
    """The test clips of ``tracklets`` (``settings.test_sampling``) in this rank's shard, and the shard's
    tracklet indices; batches as :func:`~lstrl_layers.reid.collate_test_clips` gives them. ``name`` names
    the tracklets in the messages of frames that cannot be read; ``world``: this process among those of
    ``torchrun`` (default: a single process on ``settings.device``)."""
    world = world or World(device=settings.device)
    sampling: Sampling = settings.test_sampling  # type: ignore[assignment]
    dataset = ClipDataset(
        tracklets,
        settings.num_frames,
        settings.size,
        sampling,
        clip_transforms(settings.size, train=False),
        max_clips=settings.max_test_clips,
        name=name,
    )
    shard = shard_indices(len(dataset), world)
    loader = DataLoader(
        Subset(dataset, shard),
        batch_size=max(1, settings.test_batch // 4),
        num_workers=settings.workers,
        collate_fn=collate_test_clips,
        pin_memory=world.device.startswith("cuda"),
    )
    return loader, shard


@torch.no_grad()
def extract(
    model: nn.Module,
    tracklets: Sequence[Any],
    settings: TrainSettings,
    name: str = "",
    world: World | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One embedding per tracklet (the mean over its clips), identities and cameras, from all ranks.

    ``model`` (in eval mode here) maps clips to embeddings; under ``torchrun`` every rank embeds its shard
    (:func:`test_loader`) and every rank gets all rows, in the order of ``tracklets``.
    """
    world = world or World(device=settings.device)
    model.eval()
    loader, _ = test_loader(tracklets, settings, name, world)
    features, pids, camids = [], [], []
    for clips, counts, pid, camid in progress(loader, settings.progress and world.is_main, desc=name):
        with autocast(settings, world):
            embeddings = torch.cat(
                [
                    model(chunk.to(world.device, non_blocking=True)).float()
                    for chunk in clips.split(settings.test_batch)
                ]
            )
        features += [e.mean(0) for e in embeddings.split(counts.tolist())]
        pids.append(pid)
        camids.append(camid)
    width = int(getattr(model, "feature_dim", 0))  # a rank whose shard is empty still sends (0, D)
    local_features = torch.stack(features) if features else torch.zeros(0, width, device=world.device)
    local_pids = torch.cat(pids) if pids else torch.zeros(0, dtype=torch.long)
    local_camids = torch.cat(camids) if camids else torch.zeros(0, dtype=torch.long)
    return (
        gather_rows(local_features, world).cpu(),
        gather_rows(local_pids.to(world.device), world).cpu(),
        gather_rows(local_camids.to(world.device), world).cpu(),
    )


@dataclass
class Ranking:
    """One evaluation on rank 0: the distance matrices ranked and their results."""

    distances: dict[str, Tensor]  # "plain", and "reranked" with settings.rerank
    results: dict[str, ReIDResult]
    query: tuple[Tensor, Tensor, Tensor]  # features, identities, cameras
    gallery: tuple[Tensor, Tensor, Tensor]
    pair_auc: float | None = None  # data with partners: metrics.pair_auc of the plain distances

    def metrics(self) -> dict[str, float]:
        """The plain result's figures (and ``pair_auc``), then the re-ranked ones prefixed ``rerank_``."""
        out = {k: float(v) for k, v in self.results["plain"].as_dict().items()}
        if self.pair_auc is not None:
            out["pair_auc"] = self.pair_auc
        if "reranked" in self.results:
            out.update({f"rerank_{k}": float(v) for k, v in self.results["reranked"].as_dict().items()})
        return out


def rank_query_gallery(
    model: nn.Module, data: VideoReIDData, settings: TrainSettings, world: World
) -> tuple[dict[str, float], Ranking | None]:
    """Embed query and gallery (sharded over the ranks), rank them on rank 0 (and re-rank with
    ``settings.rerank``): the metrics, the same on every rank, and the ranking (``None`` off rank 0)."""
    module = model.module if isinstance(model, DistributedDataParallel) else model
    query = extract(module, data.query, settings, f"{data.name} query".strip(), world)
    gallery = extract(module, data.gallery, settings, f"{data.name} gallery".strip(), world)
    ranking = None
    if world.is_main:
        distances = {"plain": pairwise_distances(query[0], gallery[0], settings.metric)}
        if settings.rerank:
            from ..rerank import rerank

            query_query = pairwise_distances(query[0], query[0], settings.metric)
            gallery_gallery = pairwise_distances(gallery[0], gallery[0], settings.metric)
            distances["reranked"] = rerank(distances["plain"], query_query, gallery_gallery)
        results = {
            name: evaluate_ranking(d, query[1], gallery[1], query[2], gallery[2], junk_ids=data.junk_ids)
            for name, d in distances.items()
        }
        ranking = Ranking(distances, results, query, gallery)
        if data.partners:
            ranking.pair_auc = pair_auc(
                distances["plain"], query[1], gallery[1], query[2], gallery[2], data.partners
            )
    metrics = broadcast_object(ranking.metrics() if ranking is not None else None, world)
    return metrics, ranking  # type: ignore[return-value]


def evaluate(
    model: nn.Module, data: VideoReIDData, settings: TrainSettings, world: World | None = None
) -> dict[str, float]:
    """Query-gallery evaluation (CMC, mAP, mINP) of ``model`` on ``data``, the same on every rank.

    Returns ``{"mAP": ..., "mINP": ..., "rank1": ..., "rank5": ..., ...}`` (fractions in ``[0, 1]``); with
    ``settings.rerank``, the same figures after k-reciprocal re-ranking follow, prefixed ``rerank_``; on
    data with ``partners`` (the synthetic motion sets), ``"pair_auc"``
    (:func:`~lstrl_layers.reid.metrics.pair_auc`).
    """
    return rank_query_gallery(model, data, settings, world or World(device=settings.device))[0]


def draw_pictures(ranking: Ranking, data: VideoReIDData) -> Callable[[Path, Path], None]:
    """``draw(cmc_path, ranked_path)``: the CMC curves of ``ranking`` and its worst queries with their top
    gallery clips (:mod:`~lstrl_layers.reid.plots`)."""
    from ..plots import plot_cmc, plot_ranked

    def draw(cmc_path: Path, ranked_path: Path) -> None:
        plot_cmc({"plain" if n == "plain" else "re-ranked": r for n, r in ranking.results.items()}, cmc_path)
        plot_ranked(
            ranking.distances["plain"],
            ranking.query[1],
            ranking.gallery[1],
            ranking.query[2],
            ranking.gallery[2],
            lambda i: frame_for_picture(data.query[i].frames),
            lambda i: frame_for_picture(data.gallery[i].frames),
            ranked_path,
            junk_ids=data.junk_ids,
        )

    return draw


SUMMARY = (
    "mAP",
    "mINP",
    "rank1",
    "rank5",
    "rank10",
    "rank20",
    "pair_auc",
    "rerank_mAP",
    "rerank_mINP",
    "rerank_rank1",
)


def summary(metrics: dict[str, float]) -> str:
    """``mAP 61.2, mINP 30.1, rank1 70.8, ...`` in percent (and ``pair AUC 0.912``, the re-ranked figures)."""
    return ", ".join(
        f"pair AUC {metrics[k]:.3f}" if k == "pair_auc" else f"{k} {100 * metrics[k]:.1f}"
        for k in SUMMARY
        if k in metrics
    )


def load_trained(path: str | Path, map_location: str = "cpu") -> tuple[VideoReIDNet, dict[str, Any] | None]:
    """The model of a training checkpoint or of a model file, in eval mode, and the checkpoint's settings
    (``None``: a model file, which holds no training settings)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # missing, or not ours: load_checkpoint below says which
        state = None
    if isinstance(state, dict) and state.get("format") == MODEL_FORMAT:
        return load_model(path, map_location), None
    state = load_checkpoint(path, map_location)  # the checks and their messages
    settings = TrainSettings.from_dict(state["settings"])
    model = VideoReIDNet(**{**settings.model_arguments(int(state["num_classes"])), "pretrained": False})
    load_state_dict_checked(model, state["model"], str(path))
    return model.to(map_location).eval(), state["settings"]


def evaluate_trained(
    settings: TrainSettings,
    data: VideoReIDData,
    path: str | Path,
    out: str | Path | None = None,
    log: Log = print,
) -> dict[str, float]:
    """Evaluate a trained model (training checkpoint or model file) on ``data``; rank 0 writes
    ``OUT/eval.json``, ``OUT/cmc.png`` and ``OUT/ranked.png``. Sharded over the processes under
    ``torchrun``, like :func:`fit`'s evaluation."""
    with joined_world(settings.device) as world:
        model, _ = load_trained(path, world.device)
        model = in_memory_format(model, settings)
        metrics, ranking = rank_query_gallery(model, data, settings, world)
        if world.is_main:
            log(summary(metrics))
            reporter = Reporter(out)
            record = {"model": str(path), "test_sampling": settings.test_sampling, **metrics}
            reporter.json("eval.json", record)
            if ranking is not None:
                reporter.pictures(draw_pictures(ranking, data))
        return metrics
