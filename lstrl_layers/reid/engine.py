"""One training and evaluation loop for video ReID: single process or ``torchrun`` DDP, exact resume.

:func:`fit` trains a :class:`~lstrl_layers.VideoReIDNet` with the paper's recipe (§4.2: RRS clips, ``P x K``
batches, random crop / flip / erasing, cross-entropy + batch-hard triplet loss, Adam with a step decay) and
evaluates it with the standard ReID protocol (:func:`evaluate`). ``examples/train_video_reid.py`` and
``benchmarks/ablation.py`` are thin command lines over it.

Under ``torchrun --nproc_per_node=N`` the same call trains with DistributedDataParallel (NCCL on CUDA, gloo on
the CPU). The choices, where the paper (two GPUs) is silent:

- ``P x K`` is the global batch; each process gets ``P / N`` whole identities of it, so the ``K`` clips of an
  identity stay together, and every process draws the same global order from the seed each epoch.
- The triplet loss mines over the global batch (features gathered from all processes, the local ones keeping
  their gradient), as one process on the whole batch would; the cross-entropy is the mean over the global
  batch. One step then gives the same parameters as one process on the union of the batches, wherever the
  BatchNorm statistics do not depend on the split (``sync_bn=True`` on CUDA, or ``freeze_bn=True``).
- Test features are extracted in shards across the processes and ranked once, on rank 0; logs, progress
  bars and files come from rank 0 only.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from ..reid_net import VideoReIDNet
from .checkpoint import (
    MODEL_FORMAT,
    load_checkpoint,
    load_model,
    random_states,
    save_checkpoint,
    save_model,
    set_random_states,
)
from .datasets import ClipDataset, Sampling, VideoReIDData, clip_transforms, collate_test_clips
from .distributed import (
    RankBatchSampler,
    World,
    all_gather_objects,
    broadcast_object,
    close_world,
    gather_rows,
    gather_with_grad,
    init_world,
    mean_over_ranks,
    shard_indices,
)
from .losses import ReIDLoss
from .metrics import evaluate_ranking, pairwise_distances
from .sampling import PKBatchSampler

__all__ = [
    "TrainSettings",
    "build_model",
    "evaluate",
    "evaluate_trained",
    "fit",
    "load_trained",
    "seed_everything",
]

T_co = TypeVar("T_co")
Log = Callable[[str], None]


@dataclass
class TrainSettings:
    """Everything a training run depends on, as plain values (stored in every checkpoint).

    Defaults are the paper's §4.2 recipe: ResNet-50 with LSTRL blocks after ``layer2`` and ``layer3``,
    256 x 128 frames, ``T = 8``, ``P x K = 8 x 4``, Adam at ``3e-4`` decayed by 10 every 70 epochs, 400
    epochs.
    ``model_kwargs`` holds further :class:`~lstrl_layers.VideoReIDNet` arguments (``zero_init``,
    ``mae_kwargs``, ``bme_kwargs``), plain values only.
    """

    # model
    model: str = "resnet50"
    stages: tuple[int | str, ...] = (2, 3)
    mae: bool = True
    bme: bool = True
    pretrained: bool = True
    last_stride: int = 1
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # data
    num_frames: int = 8
    size: tuple[int, int] = (256, 128)
    P: int = 8
    K: int = 4
    erasing: float = 0.5
    test_sampling: str = "rrs"
    max_test_clips: int | None = None
    workers: int = 4
    # optimization
    epochs: int = 400
    lr: float = 3e-4
    weight_decay: float = 5e-4
    step: int = 70
    gamma: float = 0.1
    margin: float = 0.3
    label_smoothing: float = 0.0
    amp: bool = False
    max_steps: int | None = None
    sync_bn: bool = False
    freeze_bn: bool = False
    # evaluation and run
    eval_every: int = 10
    metric: str = "cosine"
    test_batch: int = 32
    device: str = "cpu"
    seed: int = 0
    progress: bool = True

    def model_arguments(self, num_classes: int) -> dict[str, Any]:
        """The :class:`~lstrl_layers.VideoReIDNet` arguments of this run."""
        return dict(
            backbone=self.model,
            num_classes=num_classes,
            stages=tuple(self.stages),
            num_frames=self.num_frames,
            mae=self.mae,
            bme=self.bme,
            pretrained=self.pretrained,
            last_stride=self.last_stride,
            **self.model_kwargs,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        settings = cls(**values)
        settings.stages, settings.size = tuple(settings.stages), tuple(settings.size)  # type: ignore[assignment]
        return settings


def build_model(settings: TrainSettings, num_classes: int) -> VideoReIDNet:
    """The run's :class:`~lstrl_layers.VideoReIDNet`."""
    return VideoReIDNet(**settings.model_arguments(num_classes))


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's ``random`` and NumPy."""
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _progress(items: Iterable[T_co], enabled: bool, **kwargs: Any) -> Iterator[T_co]:
    """tqdm if installed and ``enabled``, else the items unchanged."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return iter(tqdm(items, leave=False, dynamic_ncols=True, **kwargs))
    return iter(items)


def _autocast(settings: TrainSettings, world: World) -> torch.autocast:
    return torch.autocast("cuda", torch.bfloat16, enabled=settings.amp and world.device.startswith("cuda"))


def _test_loader(
    tracklets: Sequence[Any], settings: TrainSettings, world: World
) -> tuple[DataLoader, list[int]]:
    sampling: Sampling = "first" if settings.test_sampling == "rrs" else "dense"
    dataset = ClipDataset(
        tracklets,
        settings.num_frames,
        settings.size,
        sampling,
        clip_transforms(settings.size, train=False),
        max_clips=settings.max_test_clips,
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
def _extract(
    model: nn.Module, tracklets: Sequence[Any], settings: TrainSettings, world: World, desc: str
) -> tuple[Tensor, Tensor, Tensor]:
    """One embedding per tracklet (the mean over its clips), identities and cameras, from all ranks."""
    model.eval()
    loader, shard = _test_loader(tracklets, settings, world)
    features, pids, camids = [], [], []
    for clips, counts, pid, camid in _progress(loader, settings.progress and world.is_main, desc=desc):
        with _autocast(settings, world):
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


def evaluate(
    model: nn.Module, data: VideoReIDData, settings: TrainSettings, world: World | None = None
) -> dict[str, float]:
    """Query-gallery evaluation (CMC, mAP) of ``model`` on ``data``, the same on every rank.

    Returns ``{"mAP": ..., "rank1": ..., "rank5": ..., ...}`` (fractions in ``[0, 1]``).
    """
    world = world or World(device=settings.device)
    module = model.module if isinstance(model, DistributedDataParallel) else model
    query = _extract(module, data.query, settings, world, "query")
    gallery = _extract(module, data.gallery, settings, world, "gallery")
    metrics: dict[str, float] | None = None
    if world.is_main:
        distances = pairwise_distances(query[0], gallery[0], settings.metric)
        result = evaluate_ranking(
            distances, query[1], gallery[1], query[2], gallery[2], junk_ids=data.junk_ids
        )
        metrics = {k: float(v) for k, v in result.as_dict().items()}
    return broadcast_object(metrics, world)  # type: ignore[return-value]


def _freeze_batchnorm(model: nn.Module) -> None:
    """BatchNorm layers normalize with their running statistics and leave them unchanged."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def train_step(
    model: nn.Module,
    criterion: ReIDLoss,
    optimizer: torch.optim.Optimizer,
    clips: Tensor,
    pids: Tensor,
    settings: TrainSettings,
    world: World,
) -> dict[str, float]:
    """One optimization step on this rank's share of a global batch; returns the step's statistics.

    The triplet loss sees the global batch; DDP averages gradients over the ``N`` ranks, so the triplet term,
    which every rank computes in full but back-propagates only through its own features, is weighted by
    ``N`` to give the gradient of one process on the whole batch.
    """
    with _autocast(settings, world):
        logits, features = model(clips)
    all_features = gather_with_grad(features.float(), world)
    all_pids = gather_with_grad(pids, world)
    ce = criterion.cross_entropy(logits.float(), pids)
    triplet = criterion.triplet(all_features, all_pids)
    loss = criterion.ce_weight * ce + criterion.triplet_weight * world.size * triplet
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    ce_value, triplet_value = float(ce.detach()), float(triplet.detach())
    return {
        "loss": criterion.ce_weight * ce_value + criterion.triplet_weight * triplet_value,
        "ce": ce_value,
        "triplet": triplet_value,
        "acc": float((logits.argmax(1) == pids).float().mean()),
    }


def _train_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: ReIDLoss,
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    world: World,
    epoch: int,
) -> dict[str, float]:
    model.train()
    if settings.freeze_bn:
        _freeze_batchnorm(model)
    totals: dict[str, float] = {}
    steps = 0
    total = min(len(loader), settings.max_steps or math.inf)
    bar = _progress(loader, settings.progress and world.is_main, desc=f"epoch {epoch}", total=total)
    for clips, pids, _ in bar:
        clips, pids = clips.to(world.device, non_blocking=True), pids.to(world.device, non_blocking=True)
        stats = train_step(model, criterion, optimizer, clips, pids, settings, world)
        steps += 1
        for name, value in stats.items():
            totals[name] = totals.get(name, 0.0) + value
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{totals['loss'] / steps:.3f}", acc=f"{totals['acc'] / steps:.2f}")
        if steps >= total:
            break
    return mean_over_ranks({name: value / max(steps, 1) for name, value in totals.items()}, world)


def _train_loader(data: VideoReIDData, settings: TrainSettings, world: World) -> DataLoader:
    dataset = ClipDataset(
        data.train,
        settings.num_frames,
        settings.size,
        "rrs",
        clip_transforms(settings.size, train=True, erasing=settings.erasing),
    )
    sampler = RankBatchSampler(
        PKBatchSampler(dataset.labels, settings.P, settings.K, seed=settings.seed), world
    )
    # workers are started afresh each epoch and seeded from torch's generator, so a resumed run draws the
    # same augmentations as the run that was never stopped
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=settings.workers,
        pin_memory=world.device.startswith("cuda"),
    )


def _plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and mAP / rank-1 per epoch, as a PNG (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    trained = [h for h in history if "loss" in h]
    left.plot([h["epoch"] for h in trained], [h["loss"] for h in trained], marker="o")
    left.set(xlabel="epoch", ylabel="training loss (CE + triplet)")
    for key, label in (("mAP", "mAP"), ("rank1", "rank-1")):
        right.plot([h["epoch"] for h in history], [100 * h[key] for h in history], marker="o", label=label)
    right.set(xlabel="epoch", ylabel="%")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def fit(
    settings: TrainSettings,
    data: VideoReIDData,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    log: Log = print,
) -> list[dict[str, Any]]:
    """Train on ``data.train`` and evaluate on ``data.query`` / ``data.gallery``; returns the history.

    The history lists one entry per evaluation, ``{"epoch": e, "mAP": ..., "rank1": ..., ..., "loss": ...}``
    (epoch 0: before training), after every ``settings.eval_every`` epochs and after the last. With ``out``,
    rank 0 writes ``metrics.json`` (``{"epochs": history}``), ``checkpoint.pt`` (every epoch), ``model.pt``
    (:func:`~lstrl_layers.reid.checkpoint.load_model` rebuilds it) and ``history.png``. ``resume`` (a
    checkpoint or a folder holding ``checkpoint.pt``) continues a run: on the CPU with the same settings, the
    history is the one of the run that was never stopped, value for value.
    """
    world = init_world(settings.device)
    try:
        out = Path(out) if out is not None else None
        say = log if world.is_main else (lambda message: None)
        seed_everything(settings.seed + world.rank)
        model = build_model(settings, data.num_train_ids).to(world.device)
        if settings.sync_bn:
            if not world.device.startswith("cuda"):
                raise ValueError(f"sync_bn needs CUDA (SyncBatchNorm), got device {world.device!r}")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        criterion = ReIDLoss(margin=settings.margin, label_smoothing=settings.label_smoothing)
        optimizer = torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad],
            lr=settings.lr,
            weight_decay=settings.weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=settings.step, gamma=settings.gamma)
        history: list[dict[str, Any]] = []
        start_epoch = 1
        if resume is not None:
            path = Path(resume) / "checkpoint.pt" if Path(resume).is_dir() else Path(resume)
            state = load_checkpoint(path, map_location=world.device)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history, start_epoch = list(state["history"]), int(state["epoch"]) + 1
            set_random_states(state["random_states"][world.rank])
            say(f"resumed from {path} at epoch {state['epoch']}")
        net: nn.Module = model
        if world.distributed:
            device_ids = [world.device] if world.device.startswith("cuda") else None
            net = DistributedDataParallel(model, device_ids=device_ids)
        loader = _train_loader(data, settings, world)
        say(
            f"{settings.model} with LSTRL at stages {list(settings.stages)} (MAE={settings.mae}, "
            f"BME={settings.bme}): {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
            f"{data.num_train_ids} classes, {world.size} x {world.device}"
        )

        def save(epoch: int) -> None:
            states = all_gather_objects(random_states(), world)
            if out is None or not world.is_main:
                return
            (out / "metrics.json").write_text(json.dumps({"epochs": history}, indent=2) + "\n")
            save_checkpoint(
                out / "checkpoint.pt",
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                epoch=epoch,
                history=history,
                settings=asdict(settings),
                num_classes=data.num_train_ids,
                random_states=states,
            )

        if out is not None and world.is_main:
            out.mkdir(parents=True, exist_ok=True)
        if start_epoch == 1:
            metrics = evaluate(net, data, settings, world)
            history.append({"epoch": 0, **metrics})
            say(
                f"epoch 0 (before training): mAP {100 * metrics['mAP']:.1f} "
                f"rank-1 {100 * metrics['rank1']:.1f}"
            )
            save(0)
        for epoch in range(start_epoch, settings.epochs + 1):
            tic = time.time()
            loader.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]
            stats = _train_epoch(net, loader, criterion, optimizer, settings, world, epoch)
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            line = (
                f"epoch {epoch}/{settings.epochs}: loss {stats['loss']:.3f} (ce {stats['ce']:.3f}, triplet "
                f"{stats['triplet']:.3f}), train acc {100 * stats['acc']:.1f}, lr {lr:.2e}, "
                f"{time.time() - tic:.0f}s"
            )
            if epoch % settings.eval_every == 0 or epoch == settings.epochs:
                metrics = evaluate(net, data, settings, world)
                history.append({"epoch": epoch, **metrics, "loss": stats["loss"]})
                line += "; " + ", ".join(f"{k} {100 * metrics[k]:.1f}" for k in ("mAP", "rank1", "rank5"))
            say(line)
            save(epoch)
        if out is not None and world.is_main:
            save_model(out / "model.pt", model)
            _plot_history(history, out / "history.png")
        return history
    finally:
        close_world(world)


def load_trained(path: str | Path, map_location: str = "cpu") -> tuple[VideoReIDNet, dict[str, Any] | None]:
    """The model of a training checkpoint or of a model file, and the checkpoint's settings (``None``: a
    model file, which holds no training settings)."""
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
    model.load_state_dict(state["model"])
    return model.to(map_location), state["settings"]


def evaluate_trained(
    settings: TrainSettings,
    data: VideoReIDData,
    path: str | Path,
    out: str | Path | None = None,
    log: Log = print,
) -> dict[str, float]:
    """Evaluate a trained model (training checkpoint or model file) on ``data``; rank 0 writes
    ``OUT/eval.json``. Sharded over the processes under ``torchrun``, like :func:`fit`'s evaluation."""
    world = init_world(settings.device)
    try:
        model, _ = load_trained(path, world.device)
        metrics = evaluate(model, data, settings, world)
        if world.is_main:
            log(
                ", ".join(
                    f"{k} {100 * metrics[k]:.1f}" for k in ("mAP", "rank1", "rank5", "rank10", "rank20")
                )
            )
            if out is not None:
                Path(out).mkdir(parents=True, exist_ok=True)
                record = {"model": str(path), "test_sampling": settings.test_sampling, **metrics}
                (Path(out) / "eval.json").write_text(json.dumps(record, indent=2) + "\n")
        return metrics
    finally:
        close_world(world)
