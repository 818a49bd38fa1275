"""Hooks: your code at the fixed points of a training run, without changing the loop.

Subclass :class:`Hook`, override the methods you need (the others do nothing) and pass instances to
``fit(settings, data, hooks=[...])``. Each method receives the run's :class:`TrainState`. The order of one
run::

    before_train
    after_evaluation                    (epoch 0: before training; not on a resumed run)
    for every epoch:
        before_epoch
        before_step, after_step         (every step)
        after_evaluation                (every settings.eval_every epochs and after the last)
        after_epoch                     (then the epoch's checkpoint is written)
    after_train                         (after the last epoch, before the model file and pictures)

Hooks run on every process (under ``torchrun``), in the order given, after the engine's own (the log lines,
TensorBoard); test ``state.is_main`` for work that rank 0 alone should do, such as writing a file or
logging. A hook must not draw from the random generators the run draws from (torch, Python's ``random``,
NumPy): it would change the run and break the exact resume. An exception raised in a hook ends the run; in
``after_epoch`` it ends it before that epoch's checkpoint is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..._checks import got
from .settings import TrainSettings

__all__ = ["Hook", "HookList", "TrainState", "check_hooks"]


@dataclass
class TrainState:
    """Where a training run is, as the hooks see it.

    Attributes:
        model: the model being trained (without its DistributedDataParallel wrapper).
        settings: the run's settings.
        out: the run's output folder (``None``: no files).
        rank: this process's rank (0 in a single process).
        epoch: the epoch running (``before_epoch`` to ``after_epoch``); 0 before training.
        step: the step of the epoch, from 1 (``before_step``: the one about to run, ``after_step``: the one
            just run); in ``before_epoch`` the steps a resumed epoch had done already, in ``after_epoch`` its
            last.
        history: one entry per evaluation so far, as :func:`~lstrl_layers.reid.engine.fit` returns it.
        metrics: the figures of the epoch's evaluation (``after_evaluation``, and ``after_epoch`` of an epoch
            that evaluated), else ``None``.
        stats: ``after_step``: the step's loss terms and accuracy on this process (``"loss"``, ``"ce"``,
            ``"triplet"``, ``"acc"``); ``after_epoch``: their means over the epoch and the processes.
        lr: the base learning rate of the epoch (the optimizer's first group).
    """

    model: nn.Module
    settings: TrainSettings
    out: Path | None = None
    rank: int = 0
    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] | None = None
    stats: dict[str, float] | None = None
    lr: float = 0.0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0


class Hook:
    """A training hook (the pattern of fast-reid's ``HookBase``): every method does nothing until
    overridden."""

    def before_train(self, state: TrainState) -> None:
        """Once, when the model, optimizer and data are ready (and a resumed run's state is loaded)."""

    def after_train(self, state: TrainState) -> None:
        """Once, after the last epoch (not when the run ends by an exception or a signal)."""

    def before_epoch(self, state: TrainState) -> None:
        """Before each epoch's first step."""

    def after_epoch(self, state: TrainState) -> None:
        """After each epoch (and its evaluation, if any), before its checkpoint is written."""

    def before_step(self, state: TrainState) -> None:
        """Before each training step."""

    def after_step(self, state: TrainState) -> None:
        """After each training step (the optimizer has stepped)."""

    def before_evaluation(self, state: TrainState) -> None:
        """Before each evaluation (the model is about to be put in eval mode and the test set extracted)."""

    def after_evaluation(self, state: TrainState) -> None:
        """After each evaluation, with its figures in ``state.metrics``."""


class HookList(Hook):
    """Several hooks as one: each method calls the hooks' in their order."""

    def __init__(self, hooks: Sequence[Hook]) -> None:
        self.hooks = list(hooks)

    def _each(self, event: str, state: TrainState) -> None:
        for hook in self.hooks:
            getattr(hook, event)(state)

    def before_train(self, state: TrainState) -> None:
        self._each("before_train", state)

    def after_train(self, state: TrainState) -> None:
        self._each("after_train", state)

    def before_epoch(self, state: TrainState) -> None:
        self._each("before_epoch", state)

    def after_epoch(self, state: TrainState) -> None:
        self._each("after_epoch", state)

    def before_step(self, state: TrainState) -> None:
        self._each("before_step", state)

    def after_step(self, state: TrainState) -> None:
        self._each("after_step", state)

    def before_evaluation(self, state: TrainState) -> None:
        self._each("before_evaluation", state)

    def after_evaluation(self, state: TrainState) -> None:
        self._each("after_evaluation", state)


def check_hooks(hooks: Sequence[Hook]) -> list[Hook]:
    """``hooks`` as a list, each checked to be a :class:`Hook`.

    Raises:
        TypeError: ``hooks`` is not a list or tuple, or holds something other than a ``Hook``.
    """
    if not isinstance(hooks, (list, tuple)):
        raise TypeError(f"hooks must be a list or tuple of Hook instances, got {got(hooks)}")
    for hook in hooks:
        if not isinstance(hook, Hook):
            what = (
                "a Hook class: pass an instance, "
                if isinstance(hook, type) and issubclass(hook, Hook)
                else ""
            )
            raise TypeError(f"hooks must hold Hook instances, got {what}{got(hook)}")
    return list(hooks)
