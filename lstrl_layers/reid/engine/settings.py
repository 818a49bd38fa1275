"""The settings of a training run: plain values, checked when they are made, stored in every checkpoint."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..._checks import check_bool, check_float, check_int, check_last_stride, check_size, got
from ..._deprecated import current_settings
from ...blocks import LSTRLArgs
from ..sampling import TEST_SAMPLINGS

__all__ = ["RESUMABLE", "TEST_SAMPLINGS", "TrainSettings", "check_resume", "default_workers"]

METRICS = ("cosine", "euclidean")
# What a resumed run may change: how long it trains, how often and how it evaluates (nothing of what it
# trains), and where it runs. Everything else is the stopped run's (the optimizer's state carries its
# learning rate, the checkpoint its model): a resumed run continues the run that stopped, or is refused.
RESUMABLE = (
    "epochs", "eval_every", "test_sampling", "max_test_clips", "metric", "rerank", "test_batch", "workers",
    "device", "progress",
)  # fmt: skip


def default_workers() -> int:
    """Data loader processes by default: 4, or fewer on a machine with fewer cores."""
    return max(0, min(4, (os.cpu_count() or 1)))


@dataclass
class TrainSettings:
    """Everything a training run depends on, as plain values (stored in every checkpoint).

    Defaults are the paper's §4.2 recipe: ResNet-50 with LSTRL blocks after ``layer2`` and ``layer3``,
    256 x 128 frames, ``T = 8``, ``P x K = 8 x 4``, Adam at ``3e-4`` decayed by 10 every 70 epochs, 400
    epochs, cross-entropy + batch-hard triplet loss with margin 0.3. ``backbone``: the timm model, by name
    (:class:`~lstrl_layers.VideoReIDNet`'s ``backbone``; checkpoints of 0.1 and 0.2.0.dev0 stored it as
    ``model``, and :meth:`from_dict` reads them). ``bme_lr_factor`` multiplies the
    learning rate of the BME blocks' parameters (1: one rate for all, the paper's recipe): BME starts as the
    identity with both directions alike, and telling them apart waits on it (see the ablation in the docs).
    ``direction_lr_factor`` multiplies the learning rate of BME's δ (``bme_kwargs=dict(
    antisymmetric=True)``: the part of the block that tells the two directions apart) instead, so that part
    alone can learn fast.
    ``channels_last``: the model's weights and activations in the channels-last memory format (oneDNN's and
    the tensor cores' preferred layout for convolutions; the numbers are the same up to round-off).
    ``amp``: the forward pass under bfloat16 autocast, on CUDA or the CPU (on the CPU it pays where the CPU
    has bfloat16 instructions, AVX512-BF16 or AMX; others emulate them); the loss is computed in float32.
    ``model_kwargs`` holds further :class:`~lstrl_layers.VideoReIDNet` arguments (``zero_init``,
    ``mae_kwargs``, ``bme_kwargs``), plain values only. ``weights``: a local file of backbone weights
    (timm's ``pretrained_cfg_overlay=dict(file=...)``), used instead of a download.

    Every field is checked when the settings are made: a wrong type is a ``TypeError``, a value out of
    range (an unknown ``test_sampling``, ``P < 2`` with a triplet loss, ...) a ``ValueError``.
    """

    # model
    backbone: str = "resnet50"
    stages: tuple[int | str, ...] = (2, 3)
    mae: bool = True
    bme: bool = True
    pretrained: bool = True
    weights: str | None = None
    last_stride: int = 1
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # data
    num_frames: int = 8
    size: tuple[int, int] = (256, 128)
    P: int = 8
    K: int = 4
    erasing: float = 0.5
    test_sampling: str = "first"
    max_test_clips: int | None = None
    workers: int = field(default_factory=default_workers)
    # optimization
    epochs: int = 400
    lr: float = 3e-4
    bme_lr_factor: float = 1.0
    direction_lr_factor: float = 1.0
    weight_decay: float = 5e-4
    step: int = 70
    gamma: float = 0.1
    margin: float = 0.3
    triplet_weight: float = 1.0
    label_smoothing: float = 0.0
    amp: bool = False
    channels_last: bool = True
    max_steps: int | None = None
    sync_bn: bool = False
    freeze_bn: bool = False
    # evaluation and run
    eval_every: int = 10
    metric: str = "cosine"
    rerank: bool = False
    test_batch: int = 32
    device: str = "cpu"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, str):
            raise TypeError(f"backbone must be the name of a timm model (str), got {got(self.backbone)}")
        if not self.backbone:
            raise ValueError(f"backbone must be the name of a timm model, got {self.backbone!r}")
        if isinstance(self.stages, (str, bytes)) or not isinstance(self.stages, (list, tuple)):
            raise TypeError(f"stages must be a list of stage indices or names, got {got(self.stages)}")
        self.stages = tuple(self.stages)
        for stage in self.stages:
            if isinstance(stage, bool) or not isinstance(stage, (int, str)):
                raise TypeError(f"stages must hold ints or str, got {got(stage)}")
        for name in (
            "pretrained",
            "amp",
            "channels_last",
            "sync_bn",
            "freeze_bn",
            "rerank",
            "progress",
        ):
            check_bool(name, getattr(self, name))
        if self.weights is not None and not isinstance(self.weights, str):
            raise TypeError(f"weights must be the path of a file (str) or None, got {got(self.weights)}")
        check_last_stride(self.last_stride)
        if not isinstance(self.model_kwargs, Mapping):
            raise TypeError(f"model_kwargs must be a dict, got {got(self.model_kwargs)}")
        # the block arguments (mae, bme and those in model_kwargs), checked as the model checks them
        block_arguments = ("zero_init", "mae_kwargs", "bme_kwargs")
        LSTRLArgs(self.mae, self.bme, **{k: v for k, v in self.model_kwargs.items() if k in block_arguments})
        for name in ("num_frames", "P", "K", "epochs", "step", "eval_every", "test_batch"):
            check_int(name, getattr(self, name))
        check_int("workers", self.workers, minimum=0)
        check_int("seed", self.seed, minimum=0)
        for name in ("max_test_clips", "max_steps"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name))
        self.size = check_size("size", self.size)
        check_float("erasing", self.erasing, "a probability in [0, 1]", low=0.0, high=1.0)
        check_float("lr", self.lr, "a positive, finite float", low=0.0, low_inclusive=False)
        for name in ("bme_lr_factor", "direction_lr_factor"):
            check_float(name, getattr(self, name), "a positive, finite float", low=0.0, low_inclusive=False)
        check_float("weight_decay", self.weight_decay, "a finite float >= 0", low=0.0)
        check_float("gamma", self.gamma, "a float in (0, 1]", low=0.0, high=1.0, low_inclusive=False)
        check_float("margin", self.margin, "a finite float >= 0", low=0.0)
        check_float("triplet_weight", self.triplet_weight, "a finite float >= 0", low=0.0)
        check_float("label_smoothing", self.label_smoothing, "a float in [0, 1]", low=0.0, high=1.0)
        for name, allowed in (("test_sampling", TEST_SAMPLINGS), ("metric", METRICS)):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be one of {allowed}, got {got(value)}")
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not isinstance(self.device, str):
            raise TypeError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {got(self.device)}")
        self._check_every_setting_applies()
        if self.triplet_weight > 0 and (self.P < 2 or self.K < 2):
            raise ValueError(
                f"the batch-hard triplet loss needs P >= 2 identities of K >= 2 clips in a batch (a "
                f"positive and a negative for every clip), got P={self.P}, K={self.K}, where it would be 0 "
                f"throughout: use P, K >= 2, or triplet_weight=0 for cross-entropy alone"
            )

    def _check_every_setting_applies(self) -> None:
        """Refuse a setting that the other settings leave without effect (it would be ignored)."""
        has_bme = bool(self.stages) and self.bme
        has_delta = has_bme and bool(self.model_kwargs.get("bme_kwargs", {}).get("antisymmetric", False))
        unused = [
            (self.bme_lr_factor != 1.0 and not has_bme, "bme_lr_factor", self.bme_lr_factor,
             f"BME's parameters learn at that factor, and this model has no BME (stages={self.stages}, "
             f"bme={self.bme})"),
            (self.direction_lr_factor != 1.0 and not has_delta, "direction_lr_factor",
             self.direction_lr_factor, "BME's delta learns at that factor, and this model's BME has none "
             "(model_kwargs=dict(bme_kwargs=dict(antisymmetric=True)) adds it)"),
            (self.max_test_clips is not None and self.test_sampling != "dense", "max_test_clips",
             self.max_test_clips, f"it limits the clips of test_sampling='dense', and test_sampling is "
             f"{self.test_sampling!r}"),
            (self.weights is not None and not self.pretrained, "weights", self.weights,
             "they are pretrained backbone weights, and pretrained=False"),
            (self.margin != type(self).margin and self.triplet_weight == 0, "margin", self.margin,
             "it is the triplet loss's, and triplet_weight=0"),
            (self.sync_bn and self.freeze_bn, "sync_bn", self.sync_bn,
             "it synchronizes BatchNorm statistics, and freeze_bn=True freezes them"),
        ]  # fmt: skip
        for applies_not, name, value, why in unused:
            if applies_not:
                raise ValueError(f"{name}={value!r} would have no effect: {why}")

    def model_arguments(self, num_classes: int) -> dict[str, Any]:
        """The :class:`~lstrl_layers.VideoReIDNet` arguments of this run."""
        arguments = dict(
            backbone=self.backbone,
            num_classes=num_classes,
            stages=tuple(self.stages),
            num_frames=self.num_frames,
            mae=self.mae,
            bme=self.bme,
            pretrained=self.pretrained,
            last_stride=self.last_stride,
            **self.model_kwargs,
        )
        if self.weights is not None and self.pretrained:
            arguments["pretrained_cfg_overlay"] = dict(file=self.weights)
        return arguments

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainSettings:
        """Settings from plain values (a checkpoint's ``settings``, any version); unknown names refused."""
        values = current_settings(values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**values)


def check_resume(
    settings: TrainSettings, checkpoint: Mapping[str, Any], name: Callable[[str], str] = str
) -> None:
    """Refuse to resume a training checkpoint with ``settings`` other than its own, or with nothing to train.

    ``checkpoint`` is a training checkpoint's contents (its ``settings`` and last finished ``epoch``).
    Only the settings in :data:`RESUMABLE` may differ from the stopped run's; ``settings.epochs`` must go past
    the checkpoint's epoch. ``name`` spells a setting in the message (a script passes its flag names).

    Raises:
        ValueError: naming each differing setting with the checkpoint's value and the one given, or the
            epochs (one line).
    """
    stored = TrainSettings.from_dict(checkpoint["settings"])
    differing = [
        f"{name(f.name)} {getattr(stored, f.name)!r} (given: {getattr(settings, f.name)!r})"
        for f in fields(TrainSettings)
        if f.name not in RESUMABLE and getattr(stored, f.name) != getattr(settings, f.name)
    ]
    if differing:
        changeable = ", ".join(name(n) for n in RESUMABLE)
        raise ValueError(
            f"the checkpoint's run was trained with {'; '.join(differing)}: a resumed run continues that "
            f"run, so only {changeable} may change (start a new run for other settings)"
        )
    done = int(checkpoint["epoch"])
    if done >= settings.epochs:
        raise ValueError(
            f"the checkpoint has trained {done} of the {settings.epochs} epochs asked for: nothing to train "
            f"(raise {name('epochs')} past {done} to train further, or evaluate the checkpoint)"
        )
