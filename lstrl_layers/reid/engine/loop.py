"""One training and evaluation loop for video ReID: single process or ``torchrun`` DDP, exact resume.

:func:`fit` trains a :class:`~lstrl_layers.VideoReIDNet` with the paper's recipe (§4.2: RRS clips, ``P x K``
batches, random crop / flip / erasing, cross-entropy + batch-hard triplet loss, Adam with a step decay) and
evaluates it with the standard ReID protocol (:func:`~lstrl_layers.reid.engine.evaluate`).
``examples/train_video_reid.py`` and ``benchmarks/ablation.py`` are thin command lines over it.

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

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..._checks import got
from ..data import VideoReIDData
from ..losses import ReIDLoss
from ..model import VideoReIDNet
from .checkpoint import random_states, save_model, set_random_states
from .distributed import World, joined_world, mean_over_ranks
from .evaluation import Ranking, draw_pictures, rank_query_gallery, summary
from .hooks import Hook, HookList, TrainState, check_hooks
from .recipe import (
    LossFactory,
    ModelFactory,
    OptimizerFactory,
    Scheduler,
    build_loss,
    build_model,
    build_optimizer,
    seed_everything,
)
from .reporting import Reporter
from .resume import resume_run, save_run
from .runtime import in_memory_format
from .settings import TrainSettings
from .signals import StopRequest, TrainingInterrupted, stop_on_signals
from .step import EpochProgress, train_epoch, train_loader

__all__ = ["FitResult", "fit"]

Log = Callable[[str], None]


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained model (on the run's device, without a DistributedDataParallel wrapper, in eval
            mode after the last evaluation).
        history: one entry per evaluation, ``{"epoch": e, "mAP": ..., "mINP": ..., "rank1": ..., ...,
            "loss": ...}`` (epoch 0: before training, without ``"loss"``).
    """

    model: nn.Module
    history: list[dict[str, Any]]


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
    hooks: Sequence[Hook] = (),
) -> FitResult:
    """Train on ``data.train`` and evaluate on ``data.query`` / ``data.gallery``: the trained model and the
    history (:class:`FitResult`).

    Evaluations come before training (epoch 0), every ``settings.eval_every`` epochs and after the last.
    One after an epoch leaves the random states (torch, CUDA, Python ``random``, NumPy) as it found them,
    so ``eval_every`` changes what is measured, not what is trained: the last history entry and the model
    are the same with any ``eval_every``. (The evaluation before training is part of every fresh run and
    draws before the first epoch, whatever ``eval_every`` is.)
    With ``out``, rank 0 writes ``metrics.json`` (``{"epochs": history}``), ``checkpoint.pt`` (every epoch),
    ``model.pt`` (:func:`~lstrl_layers.reid.engine.load_model` rebuilds it; timm backbones), and the
    pictures ``history.png``, ``cmc.png`` and ``ranked.png`` (the worst queries and their top matches), every
    file atomically; with ``tensorboard``, TensorBoard scalars there. ``log`` gets rank 0's lines.

    Your own variant trains with the same loop through the factories: ``model_factory(settings,
    num_classes)`` (default :func:`~lstrl_layers.reid.engine.build_model`; a model returning ``(logits,
    features)`` in train mode and embeddings in eval mode), ``loss_factory(settings)`` (default
    :func:`~lstrl_layers.reid.engine.build_loss`, a :class:`~lstrl_layers.reid.ReIDLoss`) and
    ``optimizer_factory(settings, model)`` (default :func:`~lstrl_layers.reid.engine.build_optimizer`:
    ``(optimizer, scheduler)``, the scheduler stepped once per epoch). ``hooks``
    (:class:`~lstrl_layers.reid.engine.Hook`) run your code before and after training, each epoch, each step
    and each evaluation, on every process.

    ``resume`` (a checkpoint or a folder holding ``checkpoint.pt``) continues a run: on the CPU with the same
    settings and ``workers=0``, the history is the one of the run that was never stopped, value for value;
    with another number of processes, the global batches keep their order. SIGTERM or SIGINT (Ctrl-C) stop the
    run after the current step: the checkpoint is written (mid-epoch included) and
    :class:`~lstrl_layers.reid.engine.TrainingInterrupted` is raised; a second Ctrl-C stops at once.

    Raises:
        TypeError: ``settings`` is not a ``TrainSettings``, ``data`` not a ``VideoReIDData``, or ``hooks``
            holds something other than ``Hook`` instances.
        ValueError: ``resume`` holds a run with other settings, or one that has trained ``settings.epochs``.
        NonFiniteLoss: the loss became NaN or infinite (the message names the epoch and step); the step is
            not applied and the checkpoint of the last finished epoch is kept.
        TrainingInterrupted: SIGTERM or SIGINT, after the checkpoint is written.
    """
    user_hooks = _check_arguments(settings, data, hooks)
    reporter: Reporter | None = None
    with joined_world(settings.device) as world:
        try:
            say = log if world.is_main else _quiet
            seed_everything(settings.seed + world.rank)
            model = _placed_model(model_factory(settings, data.num_train_ids), settings, world)
            criterion = loss_factory(settings)
            optimizer, scheduler = optimizer_factory(settings, model)
            state = TrainState(model, settings, None if out is None else Path(out), world.rank)
            start, done = 1, EpochProgress()
            if resume is not None:
                start, done = resume_run(resume, world, state, optimizer, scheduler, say)
            loader = train_loader(data, settings, world)
            reporter = Reporter(state.out, tensorboard) if world.is_main else Reporter(None)
            all_hooks = HookList([reporter, _LogLines(say, data, world), *user_hooks])
            net = _wrapped(model, world)
            run = _Run(world, data, net, loader, criterion, optimizer, scheduler, state, all_hooks, reporter)
            all_hooks.before_train(state)
            with stop_on_signals() as stop:
                ranking = run.train(start, done, stop, fresh=resume is None)
            all_hooks.after_train(state)
            if state.out is not None and world.is_main:
                if isinstance(model, VideoReIDNet) and isinstance(model.config["backbone"], str):
                    save_model(state.out / "model.pt", model)
                if ranking is not None:
                    reporter.pictures(draw_pictures(ranking, data))
            return FitResult(model, state.history)
        finally:
            if reporter is not None:
                reporter.close()


def _check_arguments(settings: TrainSettings, data: VideoReIDData, hooks: Sequence[Hook]) -> list[Hook]:
    if not isinstance(settings, TrainSettings):
        raise TypeError(f"settings must be a TrainSettings, got {got(settings)}")
    if not isinstance(data, VideoReIDData):
        raise TypeError(f"data must be a VideoReIDData, got {got(data)}")
    return check_hooks(hooks)


def _quiet(message: str) -> None:
    """The log of the ranks other than 0."""


@dataclass
class _Run:
    """The parts of one training run, assembled by :func:`fit`, and its epochs."""

    world: World
    data: VideoReIDData
    net: nn.Module  # the model, in DistributedDataParallel under torchrun
    loader: DataLoader
    criterion: ReIDLoss
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    state: TrainState
    hooks: HookList
    reporter: Reporter  # rank 0's writes the files, the others' nothing

    @property
    def checkpoint(self) -> Path | None:
        return None if self.state.out is None else self.state.out / "checkpoint.pt"

    def train(self, start: int, done: EpochProgress, stop: StopRequest, fresh: bool) -> Ranking | None:
        """Epochs ``start`` to the last (the first with ``done``'s steps done already), preceded by the
        evaluation before training in a ``fresh`` run (a resumed one has it in its history, even when it
        stopped before epoch 1); the last evaluation's ranking (``None`` off rank 0)."""
        ranking = None
        if fresh:
            ranking = self.evaluate()
            self.save(0)
        for epoch in range(start, self.state.settings.epochs + 1):
            ranking = self.epoch(epoch, done, stop) or ranking
            done = EpochProgress()
        return ranking

    def epoch(self, epoch: int, done: EpochProgress, stop: StopRequest) -> Ranking | None:
        """Train epoch ``epoch``, evaluate it when due, write its checkpoint; its ranking, if evaluated."""
        state, settings = self.state, self.state.settings
        if stop.requested(self.world):
            raise TrainingInterrupted(str(stop.signal_name), epoch, 0, self.checkpoint)
        state.epoch, state.step, state.metrics, state.stats = epoch, done.steps, None, None
        state.lr = self.optimizer.param_groups[0]["lr"]
        self.hooks.before_epoch(state)
        self.loader.batch_sampler.set_epoch(epoch, skip=done.steps)  # type: ignore[union-attr]
        stopped = train_epoch(
            self.net, self.loader, self.criterion, self.optimizer, self.world, done, stop, self.hooks, state
        )
        if stopped:
            self.save(epoch - 1, done)
            raise TrainingInterrupted(str(stop.signal_name), epoch, done.steps, self.checkpoint)
        state.stats = mean_over_ranks(done.means(), self.world)
        self.scheduler.step()
        ranking = None
        if epoch % settings.eval_every == 0 or epoch == settings.epochs:
            with _random_states_kept():  # the test loaders draw their seeds: not from the training's stream
                ranking = self.evaluate()
        self.hooks.after_epoch(state)
        self.save(epoch)
        return ranking

    def evaluate(self) -> Ranking | None:
        """Evaluate the model after epoch ``state.epoch`` into the history; the ranking (``None`` off
        rank 0)."""
        self.hooks.before_evaluation(self.state)
        metrics, ranking = rank_query_gallery(self.net, self.data, self.state.settings, self.world)
        entry: dict[str, Any] = {"epoch": self.state.epoch, **metrics}
        if self.state.stats is not None:
            entry["loss"] = self.state.stats.get("loss", math.nan)
        self.state.history.append(entry)
        self.state.metrics = metrics
        self.hooks.after_evaluation(self.state)
        return ranking

    def save(self, epoch: int, partial: EpochProgress | None = None) -> None:
        """``metrics.json`` and the checkpoint after ``epoch`` epochs (and ``partial``'s steps of the
        next one)."""
        self.reporter.history(self.state.history)
        save_run(
            self.checkpoint, self.world, self.state, self.optimizer, self.scheduler,
            self.data.num_train_ids, epoch, partial,
        )  # fmt: skip


class _LogLines(Hook):
    """The run's lines: the model before training, each evaluation before training, then one per epoch."""

    def __init__(self, log: Log, data: VideoReIDData, world: World) -> None:
        self.log, self.data, self.world = log, data, world
        self.tic = time.time()

    def before_train(self, state: TrainState) -> None:
        settings = state.settings
        blocks = (
            f"with LSTRL at stages {list(settings.stages)} (MAE={settings.mae}, BME={settings.bme})"
            if settings.stages and (settings.mae or settings.bme)
            else "without LSTRL blocks (the baseline)"
        )
        parameters = sum(p.numel() for p in state.model.parameters()) / 1e6
        self.log(
            f"{settings.backbone} {blocks}: {parameters:.2f}M parameters, {self.data.num_train_ids} classes, "
            f"{self.world.size} x {self.world.device}"
        )

    def before_epoch(self, state: TrainState) -> None:
        self.tic = time.time()

    def after_evaluation(self, state: TrainState) -> None:
        if state.epoch == 0:
            self.log(f"epoch 0 (before training): {summary(state.metrics or {})}")

    def after_epoch(self, state: TrainState) -> None:
        """``epoch 3/50: loss 1.234 (ce ..., triplet ...), train acc 56.7, lr 3.00e-04, 12s; mAP ...``."""
        parts = {k: (state.stats or {}).get(k, math.nan) for k in ("loss", "ce", "triplet", "acc")}
        line = (
            f"epoch {state.epoch}/{state.settings.epochs}: loss {parts['loss']:.3f} (ce {parts['ce']:.3f}, "
            f"triplet {parts['triplet']:.3f}), train acc {100 * parts['acc']:.1f}, lr {state.lr:.2e}, "
            f"{time.time() - self.tic:.0f}s"
        )
        self.log(line if state.metrics is None else f"{line}; {summary(state.metrics)}")


@contextmanager
def _random_states_kept() -> Iterator[None]:
    """Every random state a run draws from, as it was before the block."""
    states = random_states()
    try:
        yield
    finally:
        set_random_states(states)


def _placed_model(model: nn.Module, settings: TrainSettings, world: World) -> nn.Module:
    """``model`` on the run's device, in its memory format, with SyncBatchNorm when asked."""
    model = in_memory_format(model.to(world.device), settings)
    if settings.sync_bn:
        if not world.device.startswith("cuda"):
            raise ValueError(f"sync_bn needs CUDA (SyncBatchNorm), got device {world.device!r}")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _wrapped(model: nn.Module, world: World) -> nn.Module:
    """``model`` in DistributedDataParallel under ``torchrun``, else ``model``."""
    if not world.distributed:
        return model
    return DistributedDataParallel(
        model, device_ids=[world.device] if world.device.startswith("cuda") else None
    )
