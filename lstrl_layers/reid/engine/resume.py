"""A run's state in its checkpoint, for an exact resume: written after every epoch (and at a stop in
mid-epoch), read back by ``fit(..., resume=...)``.

The checkpoint holds the model, optimizer and scheduler states, the history, the settings, every process's
random states and, after a stop in mid-epoch, the steps done and the sums of their statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from ..pretrained import load_state_dict_checked
from .checkpoint import load_checkpoint, random_states, save_checkpoint, set_random_states
from .distributed import World, all_gather_objects
from .hooks import TrainState
from .recipe import Scheduler
from .settings import check_resume
from .step import EpochProgress

__all__ = ["resume_run", "save_run"]


def save_run(
    path: Path | None,
    world: World,
    state: TrainState,
    optimizer: torch.optim.Optimizer,
    scheduler: Scheduler,
    num_classes: int,
    epoch: int,
    partial: EpochProgress | None = None,
) -> None:
    """A checkpoint at ``path`` after ``epoch`` finished epochs (and ``partial``'s steps of the next one);
    every rank takes part (random states and partial sums are gathered), rank 0 writes (``path`` ``None``:
    nothing)."""
    states = all_gather_objects(random_states(), world)
    totals = all_gather_objects(partial.totals if partial is not None else None, world)
    if path is None or not world.is_main:
        return
    save_checkpoint(
        path,
        model=state.model.state_dict(),
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        epoch=epoch,
        partial=None if partial is None else {"steps": partial.steps, "totals": totals},
        history=state.history,
        settings=asdict(state.settings),
        num_classes=num_classes,
        random_states=states,
    )


def resume_run(
    path: str | Path,
    world: World,
    state: TrainState,
    optimizer: torch.optim.Optimizer,
    scheduler: Scheduler,
    log: Callable[[str], None],
) -> tuple[int, EpochProgress]:
    """Load a checkpoint (or the ``checkpoint.pt`` of a folder) into ``state`` (model, history), the
    optimizer and the scheduler: the epoch to train next and the steps of it done already.

    Raises:
        ValueError: ``resume='...'`` and why the checkpoint cannot continue with ``state.settings``.
    """
    path = Path(path) / "checkpoint.pt" if Path(path).is_dir() else Path(path)
    stored = load_checkpoint(path, map_location=world.device)
    try:
        check_resume(state.settings, stored)
    except ValueError as err:
        raise ValueError(f"resume={str(path)!r}: {err}") from None
    load_state_dict_checked(state.model, stored["model"], str(path))
    optimizer.load_state_dict(stored["optimizer"])
    scheduler.load_state_dict(stored["scheduler"])
    saved = stored["random_states"]
    partial = stored.get("partial") or {"steps": 0, "totals": [None] * len(saved)}
    done = EpochProgress(int(partial["steps"]), partial["totals"][world.rank % len(saved)])
    if done.steps:  # mid-epoch: once the epoch's data loader exists, as in the stopped run
        done.random_states = saved[world.rank % len(saved)]
    else:
        set_random_states(saved[world.rank % len(saved)])
    if len(saved) != world.size:
        log(
            f"resuming a run of {len(saved)} process(es) on {world.size}: the global batches come in the "
            f"same order, the random augmentations differ from those the stopped run would have drawn"
        )
    epoch = int(stored["epoch"])
    where = f", step {done.steps} of epoch {epoch + 1}" if done.steps else ""
    log(f"resumed from {path} at epoch {epoch}{where}")
    state.history = list(stored["history"])
    return epoch + 1, done
