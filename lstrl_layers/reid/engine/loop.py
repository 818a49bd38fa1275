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

import functools
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ...blocks.bme import BME
from ..data import ClipDataset, VideoReIDData, clip_transforms
from ..losses import ReIDLoss
from ..model import VideoReIDNet
from ..pretrained import load_state_dict_checked
from ..sampling import PKBatchSampler
from .checkpoint import (
    load_checkpoint,
    random_states,
    save_checkpoint,
    save_model,
    set_random_states,
)
from .distributed import (
    RankBatchSampler,
    World,
    all_gather_objects,
    any_over_ranks,
    close_world,
    gather_with_grad,
    init_world,
    mean_over_ranks,
)
from .evaluation import (
    Ranking,
    draw_pictures,
    evaluate,
    evaluate_trained,
    load_trained,
    rank_query_gallery,
    summary,
)
from .reporting import Reporter
from .runtime import autocast, in_memory_format, progress
from .settings import TrainSettings, check_resume

__all__ = [
    "NonFiniteLoss",
    "TrainSettings",
    "TrainingInterrupted",
    "build_loss",
    "build_model",
    "build_optimizer",
    "evaluate",
    "evaluate_trained",
    "fit",
    "load_trained",
    "seed_everything",
]

Log = Callable[[str], None]
Scheduler = torch.optim.lr_scheduler.LRScheduler
ModelFactory = Callable[[TrainSettings, int], nn.Module]
LossFactory = Callable[[TrainSettings], ReIDLoss]
OptimizerFactory = Callable[[TrainSettings, nn.Module], tuple[torch.optim.Optimizer, Scheduler]]
RERANK_K1, RERANK_K2, RERANK_LAMBDA = (
    20,
    6,
    0.3,
)  # k-reciprocal re-ranking (Zhong et al. 2017), their defaults


class TrainingInterrupted(RuntimeError):
    """Training stopped by a signal (SIGTERM, SIGINT) after finishing its step; the checkpoint is written.

    ``fit(..., resume=checkpoint)`` continues the run as if it had not stopped.
    """

    def __init__(self, signal_name: str, epoch: int, step: int, checkpoint: Path | None) -> None:
        where = f"epoch {epoch}, step {step}" if step else f"the end of epoch {epoch - 1}"
        saved = (
            f"checkpoint written to {checkpoint}; continue with --resume {checkpoint.parent}"
            if checkpoint is not None
            else "no output folder, so no checkpoint"
        )
        super().__init__(f"stopped by {signal_name} at {where}: {saved}")
        self.signal_name, self.epoch, self.step, self.checkpoint = signal_name, epoch, step, checkpoint


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite; the step was not applied, the last checkpoint is kept."""


def build_model(settings: TrainSettings, num_classes: int) -> VideoReIDNet:
    """The run's :class:`~lstrl_layers.VideoReIDNet` (the default model factory of :func:`fit`)."""
    return VideoReIDNet(**settings.model_arguments(num_classes))


def build_loss(settings: TrainSettings) -> ReIDLoss:
    """Cross-entropy + batch-hard triplet loss (the default loss factory of :func:`fit`)."""
    return ReIDLoss(
        margin=settings.margin,
        label_smoothing=settings.label_smoothing,
        triplet_weight=settings.triplet_weight,
    )


def build_optimizer(settings: TrainSettings, model: nn.Module) -> tuple[torch.optim.Optimizer, Scheduler]:
    """Adam with a step decay (the paper's §4.2; the default optimizer factory of :func:`fit`).

    The parameters of the BME blocks (alone or in an :class:`~lstrl_layers.LSTRLBlock`) learn at
    ``settings.lr * settings.bme_lr_factor``, all others at ``settings.lr``.
    """
    trained = [p for p in model.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": trained}]  # one group, as in checkpoints of version 0.1
    if settings.bme_lr_factor != 1:
        blocks = {id(p) for m in model.modules() if isinstance(m, BME) for p in m.parameters()}
        groups = [
            {"params": [p for p in trained if id(p) not in blocks]},
            {"params": [p for p in trained if id(p) in blocks], "lr": settings.lr * settings.bme_lr_factor},
        ]
    optimizer = torch.optim.Adam(
        [g for g in groups if g["params"]], lr=settings.lr, weight_decay=settings.weight_decay
    )
    return optimizer, torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=settings.step, gamma=settings.gamma
    )


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's ``random`` and NumPy."""
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


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

    The loss is ``criterion``'s; its triplet term mines over the global batch (features gathered from all
    ranks), and is weighted by the number of ranks ``N`` because DDP averages gradients over them.

    Raises:
        NonFiniteLoss: the loss is NaN or infinite on any rank; no parameter is changed.
    """
    with autocast(settings, world):
        logits, features = model(clips)
    mining = (gather_with_grad(features.float(), world), gather_with_grad(pids, world))
    loss, parts = criterion(logits.float(), features.float(), pids, mining=mining, triplet_scale=world.size)
    if any_over_ranks(not bool(torch.isfinite(loss.detach())), world):
        raise NonFiniteLoss(
            f"the loss is {parts['loss']} (cross-entropy {parts['ce']}, triplet {parts['triplet']})"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {**parts, "acc": float((logits.argmax(1) == pids).float().mean())}


class _StopRequest:
    """Set by SIGTERM / SIGINT; a second SIGINT stops at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def requested(self, world: World) -> bool:
        return any_over_ranks(self.signal_name is not None, world)


@contextmanager
def _stop_on_signals() -> Iterator[_StopRequest]:
    """SIGTERM and SIGINT request a stop after the current step (main thread only; elsewhere, no change)."""
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class _EpochState:
    """How far an epoch got: steps done and the sums of their statistics (this rank's)."""

    steps: int = 0
    totals: dict[str, float] | None = None
    # a stopped run's random states, restored once the data loader of its epoch exists (creating one draws
    # a seed, which the stopped run had drawn before them)
    random_states: dict[str, Tensor] | None = None

    def add(self, stats: dict[str, float]) -> None:
        self.steps += 1
        self.totals = {k: (self.totals or {}).get(k, 0.0) + v for k, v in stats.items()}


def _train_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: ReIDLoss,
    optimizer: torch.optim.Optimizer,
    settings: TrainSettings,
    world: World,
    epoch: int,
    state: _EpochState,
    stop: _StopRequest,
) -> bool:
    """Train the rest of one epoch into ``state``; ``True`` if a stop was requested before its end."""
    model.train()
    if settings.freeze_bn:
        _freeze_batchnorm(model)
    total = min(len(loader) + state.steps, settings.max_steps or math.inf)
    loader_iterator = iter(loader)  # made here: making it draws a seed from torch's generator
    if state.random_states is not None:
        set_random_states(state.random_states)
        state.random_states = None
    bar = progress(loader_iterator, settings.progress and world.is_main, desc=f"epoch {epoch}", total=total)
    batches = iter(bar)
    while state.steps < total:
        try:
            clips, pids, _ = next(batches)
        except StopIteration:
            break
        except RuntimeError:  # a data loader worker ended by the same Ctrl-C
            if stop.signal_name is not None:
                return True
            raise
        clips, pids = clips.to(world.device, non_blocking=True), pids.to(world.device, non_blocking=True)
        try:
            stats = train_step(model, criterion, optimizer, clips, pids, settings, world)
        except NonFiniteLoss as err:
            raise NonFiniteLoss(f"epoch {epoch}, step {state.steps + 1}: {err}") from None
        state.add(stats)
        if hasattr(bar, "set_postfix") and state.totals:
            bar.set_postfix(
                loss=f"{state.totals['loss'] / state.steps:.3f}",
                acc=f"{state.totals['acc'] / state.steps:.2f}",
            )
        if state.steps < total and stop.requested(world):
            return True
    return False


def _train_loader(data: VideoReIDData, settings: TrainSettings, world: World) -> DataLoader:
    dataset = ClipDataset(
        data.train,
        settings.num_frames,
        settings.size,
        "rrs",  # restricted random sampling (training)
        clip_transforms(settings.size, train=True, erasing=settings.erasing),
        name=f"{data.name} train".strip(),
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


def _resume_state(
    path: str | Path,
    settings: TrainSettings,
    world: World,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Scheduler,
    say: Log,
) -> tuple[list[dict[str, Any]], int, _EpochState]:
    """Load a checkpoint into the model, optimizer and scheduler: (history, next epoch, its state so far)."""
    path = Path(path) / "checkpoint.pt" if Path(path).is_dir() else Path(path)
    state = load_checkpoint(path, map_location=world.device)
    try:
        check_resume(settings, state)
    except ValueError as err:
        raise ValueError(f"resume={str(path)!r}: {err}") from None
    load_state_dict_checked(model, state["model"], str(path))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    saved = state["random_states"]
    partial = state.get("partial") or {"steps": 0, "totals": [None] * len(saved)}
    epoch_state = _EpochState(int(partial["steps"]), partial["totals"][world.rank % len(saved)])
    if epoch_state.steps:  # mid-epoch: once the epoch's data loader exists, as in the stopped run
        epoch_state.random_states = saved[world.rank % len(saved)]
    else:
        set_random_states(saved[world.rank % len(saved)])
    if len(saved) != world.size:
        say(
            f"resuming a run of {len(saved)} process(es) on {world.size}: the global batches come in the "
            f"same order, the random augmentations differ from those the stopped run would have drawn"
        )
    where = f", step {epoch_state.steps} of epoch {int(state['epoch']) + 1}" if epoch_state.steps else ""
    say(f"resumed from {path} at epoch {state['epoch']}{where}")
    return list(state["history"]), int(state["epoch"]) + 1, epoch_state


def fit(
    settings: TrainSettings,
    data: VideoReIDData,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    log: Log = print,
    model_factory: ModelFactory = build_model,
    loss_factory: LossFactory = build_loss,
    optimizer_factory: OptimizerFactory = build_optimizer,
    tensorboard: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Train on ``data.train`` and evaluate on ``data.query`` / ``data.gallery``; returns the history.

    The history lists one entry per evaluation, ``{"epoch": e, "mAP": ..., "mINP": ..., "rank1": ..., ...,
    "loss": ...}`` (epoch 0: before training), after every ``settings.eval_every`` epochs and after the last.
    With ``out``, rank 0 writes ``metrics.json`` (``{"epochs": history}``), ``checkpoint.pt`` (every epoch),
    ``model.pt`` (:func:`~lstrl_layers.reid.engine.load_model` rebuilds it; timm backbones), and the
    pictures ``history.png``, ``cmc.png`` and ``ranked.png`` (the worst queries and their top matches), every
    file atomically; with ``tensorboard``, TensorBoard scalars there.

    Your own variant trains with the same loop through the factories: ``model_factory(settings,
    num_classes)`` (default :func:`build_model`; a model returning ``(logits, features)`` in train mode and
    embeddings in eval mode), ``loss_factory(settings)`` (default :func:`build_loss`, a
    :class:`~lstrl_layers.reid.ReIDLoss`) and ``optimizer_factory(settings, model)`` (default
    :func:`build_optimizer`: ``(optimizer, scheduler)``, the scheduler stepped once per epoch).

    ``resume`` (a checkpoint or a folder holding ``checkpoint.pt``) continues a run: on the CPU with the same
    settings and ``workers=0``, the history is the one of the run that was never stopped, value for value;
    with another number of processes, the global batches keep their order. SIGTERM or SIGINT (Ctrl-C) stop the
    run after the current step: the checkpoint is written (mid-epoch included) and
    :class:`TrainingInterrupted` is raised; a second Ctrl-C stops at once.

    Raises:
        NonFiniteLoss: the loss became NaN or infinite (the message names the epoch and step); the step is
            not applied and the checkpoint of the last finished epoch is kept.
        TrainingInterrupted: SIGTERM or SIGINT, after the checkpoint is written.
    """
    world = init_world(settings.device)
    reporter: Reporter | None = None
    try:
        out = Path(out) if out is not None else None
        say = log if world.is_main else (lambda message: None)
        seed_everything(settings.seed + world.rank)
        model = _placed_model(model_factory(settings, data.num_train_ids), settings, world)
        criterion = loss_factory(settings)
        optimizer, scheduler = optimizer_factory(settings, model)
        history: list[dict[str, Any]] = []
        start_epoch, epoch_state = 1, _EpochState()
        if resume is not None:
            history, start_epoch, epoch_state = _resume_state(
                resume, settings, world, model, optimizer, scheduler, say
            )
        net: nn.Module = model
        if world.distributed:
            device_ids = [world.device] if world.device.startswith("cuda") else None
            net = DistributedDataParallel(model, device_ids=device_ids)
        loader = _train_loader(data, settings, world)
        blocks = (
            f"with LSTRL at stages {list(settings.stages)} (MAE={settings.mae}, BME={settings.bme})"
            if settings.stages and (settings.mae or settings.bme)
            else "without LSTRL blocks (the baseline)"
        )
        say(
            f"{settings.model} {blocks}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
            f"{data.num_train_ids} classes, {world.size} x {world.device}"
        )
        reporter = Reporter(out, tensorboard) if world.is_main else Reporter(None)

        save = functools.partial(
            _save, out, world, reporter, model, optimizer, scheduler, history, settings, data.num_train_ids
        )

        ranking: Ranking | None = None
        with _stop_on_signals() as stop:
            if start_epoch == 1 and not epoch_state.steps:
                metrics, ranking = rank_query_gallery(net, data, settings, world)
                history.append({"epoch": 0, **metrics})
                reporter.evaluation(0, metrics)
                say(f"epoch 0 (before training): {summary(metrics)}")
                save(0)
            for epoch in range(start_epoch, settings.epochs + 1):
                if stop.requested(world):
                    raise TrainingInterrupted(str(stop.signal_name), epoch, 0, _checkpoint(out))
                tic = time.time()
                loader.batch_sampler.set_epoch(epoch, skip=epoch_state.steps)  # type: ignore[union-attr]
                if _train_epoch(net, loader, criterion, optimizer, settings, world, epoch, epoch_state, stop):
                    save(epoch - 1, epoch_state)
                    raise TrainingInterrupted(
                        str(stop.signal_name), epoch, epoch_state.steps, _checkpoint(out)
                    )
                totals = epoch_state.totals or {}
                stats = mean_over_ranks({k: v / max(epoch_state.steps, 1) for k, v in totals.items()}, world)
                epoch_state = _EpochState()
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                reporter.train_epoch(epoch, stats, lr)
                line = _epoch_line(epoch, settings.epochs, stats, lr, time.time() - tic)
                if epoch % settings.eval_every == 0 or epoch == settings.epochs:
                    metrics, ranking = rank_query_gallery(net, data, settings, world)
                    history.append({"epoch": epoch, **metrics, "loss": stats.get("loss", math.nan)})
                    reporter.evaluation(epoch, metrics)
                    line += "; " + summary(metrics)
                say(line)
                save(epoch)
        if out is not None and world.is_main:
            if isinstance(model, VideoReIDNet) and isinstance(model.config["backbone"], str):
                save_model(out / "model.pt", model)
            if ranking is not None:
                reporter.pictures(draw_pictures(ranking, data))
        return history
    finally:
        if reporter is not None:
            reporter.close()
        close_world(world)


def _checkpoint(out: Path | None) -> Path | None:
    return None if out is None else out / "checkpoint.pt"


def _placed_model(model: nn.Module, settings: TrainSettings, world: World) -> nn.Module:
    """``model`` on the run's device, in its memory format, with SyncBatchNorm when asked."""
    model = in_memory_format(model.to(world.device), settings)
    if settings.sync_bn:
        if not world.device.startswith("cuda"):
            raise ValueError(f"sync_bn needs CUDA (SyncBatchNorm), got device {world.device!r}")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _save(
    out: Path | None,
    world: World,
    reporter: Reporter,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Scheduler,
    history: list[dict[str, Any]],
    settings: TrainSettings,
    num_classes: int,
    epoch: int,
    partial: _EpochState | None = None,
) -> None:
    """A checkpoint after ``epoch`` finished epochs (and ``partial``'s steps of the next one), and the history
    so far; every rank takes part (random states and partial sums are gathered), rank 0 writes."""
    states = all_gather_objects(random_states(), world)
    totals = all_gather_objects(partial.totals if partial is not None else None, world)
    if out is None or not world.is_main:
        return
    reporter.history(history)
    save_checkpoint(
        out / "checkpoint.pt",
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        epoch=epoch,
        partial=None if partial is None else {"steps": partial.steps, "totals": totals},
        history=history,
        settings=asdict(settings),
        num_classes=num_classes,
        random_states=states,
    )


def _epoch_line(epoch: int, epochs: int, stats: dict[str, float], lr: float, seconds: float) -> str:
    """``epoch 3/50: loss 1.234 (ce ..., triplet ...), train acc 56.7, lr 3.00e-04, 12s``."""
    parts = {k: stats.get(k, math.nan) for k in ("loss", "ce", "triplet", "acc")}
    return (
        f"epoch {epoch}/{epochs}: loss {parts['loss']:.3f} (ce {parts['ce']:.3f}, triplet "
        f"{parts['triplet']:.3f}), train acc {100 * parts['acc']:.1f}, lr {lr:.2e}, {seconds:.0f}s"
    )
