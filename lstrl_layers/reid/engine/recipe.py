"""The paper's recipe (§4.2) as the default factories of :func:`~lstrl_layers.reid.engine.fit`: the model,
the loss, the optimizer and its schedule; and seeding every random generator a run draws from.

A variant of the recipe replaces a factory: ``fit(settings, data, model_factory=..., loss_factory=...,
optimizer_factory=...)``, with the signatures of :data:`ModelFactory`, :data:`LossFactory` and
:data:`OptimizerFactory`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ...blocks.bme import BME
from ..losses import ReIDLoss
from ..model import VideoReIDNet
from .settings import TrainSettings

__all__ = [
    "LossFactory",
    "ModelFactory",
    "OptimizerFactory",
    "Scheduler",
    "build_loss",
    "build_model",
    "build_optimizer",
    "seed_everything",
]

Scheduler = torch.optim.lr_scheduler.LRScheduler
ModelFactory = Callable[[TrainSettings, int], nn.Module]
LossFactory = Callable[[TrainSettings], ReIDLoss]
OptimizerFactory = Callable[[TrainSettings, nn.Module], tuple[torch.optim.Optimizer, Scheduler]]


def build_model(settings: TrainSettings, num_classes: int) -> VideoReIDNet:
    """The run's :class:`~lstrl_layers.VideoReIDNet` (the default model factory of ``fit``)."""
    return VideoReIDNet(**settings.model_arguments(num_classes))


def build_loss(settings: TrainSettings) -> ReIDLoss:
    """Cross-entropy + batch-hard triplet loss (the default loss factory of ``fit``)."""
    return ReIDLoss(
        margin=settings.margin,
        label_smoothing=settings.label_smoothing,
        triplet_weight=settings.triplet_weight,
    )


def build_optimizer(settings: TrainSettings, model: nn.Module) -> tuple[torch.optim.Optimizer, Scheduler]:
    """Adam with a step decay (the paper's §4.2; the default optimizer factory of ``fit``).

    The parameters of the BME blocks (alone or in an :class:`~lstrl_layers.LSTRLBlock`) learn at
    ``settings.lr * settings.bme_lr_factor``, their δ (``antisymmetric=True``) at
    ``settings.lr * settings.direction_lr_factor``, all others at ``settings.lr``. A BME with a LayerScale
    (``ls_init_value``) learns without weight decay: Adam adds the decay to the gradient, and the gradients
    of φ, ψ, υ are scaled by γ (``1e-2`` at the start), so with decay they would learn little but the decay.
    """
    trained = [p for p in model.parameters() if p.requires_grad]
    blocks = [m for m in model.modules() if isinstance(m, BME)]
    factors = {id(p): settings.bme_lr_factor for m in blocks for p in m.parameters()}
    factors.update({id(m.delta): settings.direction_lr_factor for m in blocks if m.delta is not None})
    undecayed = {id(p) for m in blocks if m.gamma is not None for p in m.parameters()}
    kinds: dict[tuple[float, bool], list[nn.Parameter]] = {}  # (rate factor, undecayed): one group each
    for param in trained:  # in model order: one group where nothing differs, as in checkpoints of 0.1
        kinds.setdefault((factors.get(id(param), 1.0), id(param) in undecayed), []).append(param)
    groups = [
        {
            "params": params,
            "lr": settings.lr * factor,
            "weight_decay": 0.0 if is_undecayed else settings.weight_decay,
        }
        for (factor, is_undecayed), params in kinds.items()
    ]
    optimizer = torch.optim.Adam(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    return optimizer, torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=settings.step, gamma=settings.gamma
    )


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's ``random`` and NumPy."""
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
