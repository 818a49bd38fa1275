"""Training steps: the data loader of ``P x K`` batches, one optimization step, one epoch of them.

:func:`train_loader` and :func:`train_step` are what :func:`~lstrl_layers.reid.engine.fit` runs each step;
usable on their own to time a step or to write another loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..data import ClipDataset, VideoReIDData, clip_transforms
from ..losses import ReIDLoss
from ..sampling import PKBatchSampler
from .checkpoint import set_random_states
from .distributed import RankBatchSampler, World, any_over_ranks, gather_with_grad
from .hooks import Hook, TrainState
from .runtime import autocast, progress
from .settings import TrainSettings
from .signals import StopRequest

__all__ = ["EpochProgress", "NonFiniteLoss", "train_epoch", "train_loader", "train_step"]


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite; the step was not applied, the last checkpoint is kept."""


def train_loader(data: VideoReIDData, settings: TrainSettings, world: World | None = None) -> DataLoader:
    """The training clips of ``data`` in ``P x K`` batches, as ``fit`` draws them.

    Restricted random sampling of ``settings.num_frames`` frames, the training augmentations, and a
    :class:`~lstrl_layers.reid.PKBatchSampler` seeded with ``settings.seed``; under ``torchrun`` (``world``
    of several processes) this process's whole identities of each global batch. Call
    ``loader.batch_sampler.set_epoch(epoch)`` before each epoch. Each batch is ``(clips, pids, camids)``,
    clips of shape ``(P * K, T, 3, H, W)``.
    """
    world = world or World(device=settings.device)
    dataset = ClipDataset(
        data.train,
        settings.num_frames,
        settings.size,
        "rrs",  # restricted random sampling (training)
        clip_transforms(settings.size, train=True, erasing=settings.erasing),
        name=f"{data.name} train".strip(),
    )
    sampler = RankBatchSampler(
        PKBatchSampler(dataset.pids, settings.P, settings.K, seed=settings.seed), world
    )
    # workers are started afresh each epoch and seeded from torch's generator, so a resumed run draws the
    # same augmentations as the run that was never stopped
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=settings.workers,
        pin_memory=world.device.startswith("cuda"),
    )


def train_step(
    model: nn.Module,
    criterion: ReIDLoss,
    optimizer: torch.optim.Optimizer,
    clips: Tensor,
    pids: Tensor,
    settings: TrainSettings,
    world: World | None = None,
) -> dict[str, float]:
    """One optimization step on this rank's share of a global batch; returns the step's statistics
    (``"loss"``, ``"ce"``, ``"triplet"``, ``"acc"``).

    The loss is ``criterion``'s; its triplet term mines over the global batch (features gathered from all
    ranks), and is weighted by the number of ranks ``N`` because DDP averages gradients over them. ``world``:
    this process among those of ``torchrun`` (default: a single process on ``settings.device``);
    ``settings.amp`` runs the forward pass under bfloat16 autocast.

    Raises:
        NonFiniteLoss: the loss is NaN or infinite on any rank; no parameter is changed.
    """
    world = world or World(device=settings.device)
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


@dataclass
class EpochProgress:
    """How far an epoch got: steps done and the sums of their statistics (this rank's)."""

    steps: int = 0
    totals: dict[str, float] | None = None
    # a stopped run's random states, restored once the data loader of its epoch exists (creating one draws
    # a seed, which the stopped run had drawn before them)
    random_states: dict[str, Tensor] | None = None

    def add(self, stats: dict[str, float]) -> None:
        """Count one more step with ``stats``."""
        self.steps += 1
        self.totals = {k: (self.totals or {}).get(k, 0.0) + v for k, v in stats.items()}

    def means(self) -> dict[str, float]:
        """The mean of each statistic over the steps done (this rank's)."""
        return {k: v / max(self.steps, 1) for k, v in (self.totals or {}).items()}


def _freeze_batchnorm(model: nn.Module) -> None:
    """BatchNorm layers normalize with their running statistics and leave them unchanged."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: ReIDLoss,
    optimizer: torch.optim.Optimizer,
    world: World,
    done: EpochProgress,
    stop: StopRequest,
    hooks: Hook,
    state: TrainState,
) -> bool:
    """Train the rest of epoch ``state.epoch`` into ``done``; ``True`` if a stop was requested before its end.

    Raises:
        NonFiniteLoss: naming the epoch and the step.
    """
    settings = state.settings
    model.train()
    if settings.freeze_bn:
        _freeze_batchnorm(model)
    total = min(len(loader) + done.steps, settings.max_steps or math.inf)
    loader_iterator = iter(loader)  # made here: making it draws a seed from torch's generator
    if done.random_states is not None:
        set_random_states(done.random_states)
        done.random_states = None
    show = settings.progress and world.is_main
    bar = progress(loader_iterator, show, desc=f"epoch {state.epoch}", total=total)
    batches = iter(bar)
    while done.steps < total:
        try:
            clips, pids, _ = next(batches)
        except StopIteration:
            break
        except RuntimeError:  # a data loader worker ended by the same Ctrl-C
            if stop.signal_name is not None:
                return True
            raise
        state.step, state.stats = done.steps + 1, None
        hooks.before_step(state)
        clips, pids = clips.to(world.device, non_blocking=True), pids.to(world.device, non_blocking=True)
        try:
            stats = train_step(model, criterion, optimizer, clips, pids, settings, world)
        except NonFiniteLoss as err:
            raise NonFiniteLoss(f"epoch {state.epoch}, step {done.steps + 1}: {err}") from None
        done.add(stats)
        state.stats = stats
        hooks.after_step(state)
        if hasattr(bar, "set_postfix"):
            means = done.means()
            bar.set_postfix(loss=f"{means['loss']:.3f}", acc=f"{means['acc']:.2f}")
        if done.steps < total and stop.requested(world):
            return True
    return False
