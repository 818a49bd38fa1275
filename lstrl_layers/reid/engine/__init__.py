"""Training and evaluation of a video ReID model: settings, the loop and its hooks, evaluation, checkpoints.

One concept per module: :mod:`.settings` (what a run depends on), :mod:`.recipe` (the paper's model, loss and
optimizer: the default factories), :mod:`.step` (the data loader, a step, an epoch), :mod:`.hooks` (your code
in the loop), :mod:`.loop` (:func:`fit`), :mod:`.resume` (a run's state in its checkpoint), :mod:`.signals`
(stopping cleanly), :mod:`.evaluation`, :mod:`.checkpoint` (the file formats), :mod:`.distributed`
(``torchrun``), :mod:`.reporting` (the files and TensorBoard scalars of a run), :mod:`.runtime`.
"""

from .checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from .evaluation import evaluate, evaluate_trained, extract, load_trained, test_loader
from .hooks import Hook, TrainState
from .loop import FitResult, fit
from .recipe import build_loss, build_model, build_optimizer, seed_everything
from .settings import RESUMABLE, TrainSettings, check_resume
from .signals import TrainingInterrupted
from .step import NonFiniteLoss, train_loader, train_step

__all__ = [
    "RESUMABLE",
    "FitResult",
    "Hook",
    "NonFiniteLoss",
    "TrainSettings",
    "TrainState",
    "TrainingInterrupted",
    "build_loss",
    "build_model",
    "build_optimizer",
    "check_resume",
    "evaluate",
    "evaluate_trained",
    "extract",
    "fit",
    "load_checkpoint",
    "load_model",
    "load_trained",
    "save_checkpoint",
    "save_model",
    "seed_everything",
    "test_loader",
    "train_loader",
    "train_step",
]
