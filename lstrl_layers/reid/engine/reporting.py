"""What a training or evaluation run writes: metrics, plots, pictures, TensorBoard scalars.

Every file is written atomically (:mod:`~lstrl_layers._files`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from ..._files import atomic_path, write_json
from .hooks import Hook, TrainState

__all__ = ["Reporter", "frame_for_picture", "plot_history"]


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_history(history: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Training loss, and mAP / mINP / rank-1 per evaluation, as a PNG (skipped without matplotlib)."""
    plt = _pyplot()
    if plt is None:
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    trained = [h for h in history if "loss" in h]
    left.plot([h["epoch"] for h in trained], [h["loss"] for h in trained], marker="o")
    left.set(xlabel="epoch", ylabel="training loss (CE + triplet)")
    for key, label in (("mAP", "mAP"), ("mINP", "mINP"), ("rank1", "rank-1")):
        points = [h for h in history if key in h]
        right.plot([h["epoch"] for h in points], [100 * h[key] for h in points], marker="o", label=label)
    right.set(xlabel="epoch", ylabel="%")
    right.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)


class Reporter(Hook):
    """The files of one run in ``out`` (``None``: none), and TensorBoard scalars in ``tensorboard``.

    ``metrics.json`` and ``history.png`` after every evaluation; ``cmc.png`` and ``ranked.png`` from
    :meth:`pictures`; with ``tensorboard``, the training loss terms, accuracy and learning rate per epoch and
    every evaluation figure (``eval/mAP``, ``eval/rank1``, ...), against the epoch: a training run's
    :class:`~lstrl_layers.reid.engine.Hook` (rank 0's; the other ranks' write nothing).

    Raises:
        ImportError: ``tensorboard`` given without the ``tensorboard`` package installed.
    """

    def __init__(self, out: str | Path | None, tensorboard: str | Path | None = None) -> None:
        self.out = None if out is None else Path(out)
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
        self.writer = None
        if tensorboard is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError(
                    f"TensorBoard logging needs the tensorboard package: pip install tensorboard ({err})"
                ) from None
            self.writer = SummaryWriter(str(tensorboard))

    def after_epoch(self, state: TrainState) -> None:
        """TensorBoard: the epoch's mean loss terms and accuracy (``train/...``) and its learning rate."""
        if self.writer is not None:
            for name, value in (state.stats or {}).items():
                self.writer.add_scalar(f"train/{name}", value, state.epoch)
            self.writer.add_scalar("train/lr", state.lr, state.epoch)
            self.writer.flush()

    def after_evaluation(self, state: TrainState) -> None:
        """TensorBoard: every figure of the evaluation (``eval/...``), the counts left out."""
        if self.writer is not None:
            for name, value in (state.metrics or {}).items():
                if not name.startswith("num_"):
                    self.writer.add_scalar(f"eval/{name}", value, state.epoch)
            self.writer.flush()

    def history(self, history: Sequence[Mapping[str, Any]]) -> None:
        """``metrics.json`` (``{"epochs": history}``) and ``history.png``."""
        if self.out is not None:
            write_json(self.out / "metrics.json", {"epochs": list(history)})
            plot_history(history, self.out / "history.png")

    def json(self, name: str, value: Any) -> None:
        """``value`` as the JSON file ``name`` in ``out``."""
        if self.out is not None:
            write_json(self.out / name, value)

    def pictures(self, draw: Callable[[Path, Path], None]) -> None:
        """``draw(cmc_path, ranked_path)`` writes the two pictures (skipped without ``out`` or matplotlib)."""
        if self.out is not None and _pyplot() is not None:
            draw(self.out / "cmc.png", self.out / "ranked.png")

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()


def frame_for_picture(frames: Sequence[str] | Tensor) -> Tensor:
    """The middle frame of a tracklet as a float ``(3, H, W)`` image in ``[0, 1]``."""
    from ..data import read_rgb

    middle = frames[len(frames) // 2]
    image = middle if isinstance(middle, Tensor) else read_rgb(middle)
    return image.float() / 255
