"""Training and evaluation of a video ReID model: settings, the loop, evaluation, checkpoints, processes."""

from .checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from .evaluation import evaluate, evaluate_trained, load_trained
from .loop import (
    NonFiniteLoss,
    TrainingInterrupted,
    build_loss,
    build_model,
    build_optimizer,
    fit,
    seed_everything,
    train_step,
)
from .settings import TrainSettings

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
    "load_checkpoint",
    "load_model",
    "load_trained",
    "save_checkpoint",
    "save_model",
    "seed_everything",
    "train_step",
]
