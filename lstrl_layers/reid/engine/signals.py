"""Stopping a training run cleanly: SIGTERM (a preempted job) or Ctrl-C end it after the current step.

The loop asks :class:`StopRequest` after every step; every process takes the same decision (a signal on any
rank stops them all), writes the checkpoint and raises :class:`TrainingInterrupted`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from .distributed import World, any_over_ranks

__all__ = ["StopRequest", "TrainingInterrupted", "stop_on_signals"]


class TrainingInterrupted(RuntimeError):
    """Training stopped by a signal (SIGTERM, SIGINT) after finishing its step; the checkpoint is written.

    ``fit(..., resume=checkpoint)`` continues the run as if it had not stopped. Attributes: ``signal_name``
    (``"SIGTERM"``, ``"SIGINT"``), ``epoch`` and ``step`` (the step of that epoch trained last, 0: none),
    ``where`` (the two in words), ``checkpoint`` (the file written; ``None`` without an output folder).
    """

    def __init__(self, signal_name: str, epoch: int, step: int, checkpoint: Path | None) -> None:
        where = f"epoch {epoch}, step {step}" if step else f"the end of epoch {epoch - 1}"
        saved = (
            f"checkpoint written to {checkpoint}; continue with fit(..., resume={str(checkpoint.parent)!r})"
            if checkpoint is not None
            else "no output folder, so no checkpoint"
        )
        super().__init__(f"stopped by {signal_name} at {where}: {saved}")
        self.signal_name, self.epoch, self.step, self.checkpoint = signal_name, epoch, step, checkpoint
        self.where = where


class StopRequest:
    """Set by SIGTERM / SIGINT (it is their handler while :func:`stop_on_signals` runs); a second SIGINT
    stops at once (``KeyboardInterrupt``)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def requested(self, world: World) -> bool:
        """Whether a stop was requested on any rank (the same answer on every rank)."""
        return any_over_ranks(self.signal_name is not None, world)


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """SIGTERM and SIGINT request a stop after the current step (main thread only; elsewhere, no change);
    the previous handlers are restored on leaving."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
