"""Tiny models, training settings and data shared by the tests: a ResNet-18 at an eighth of its width on
32 x 16 frames, clips of 2 frames, a few synthetic identities; and blocks moved away from their start."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lstrl_layers.reid import TrainSettings, VideoReIDData, synthetic_video_reid

TINY_RESNET = dict(channels=(8, 16, 16, 16), stem_width=8)  # timm resnet18 keyword arguments
SIZE = (32, 16)


def tiny_settings(**overrides: Any) -> TrainSettings:
    """Settings of a run of seconds on the CPU: the tiny ResNet, 2 steps of P x K = 2 x 2 clips of 2 frames
    per epoch, 3 epochs, an evaluation after each; ``overrides`` replace any of them."""
    values: dict[str, Any] = dict(
        backbone="resnet18", pretrained=False, model_kwargs=dict(TINY_RESNET), size=SIZE, num_frames=2, P=2,
        K=2, workers=0, progress=False, max_steps=2, test_batch=8, epochs=3, eval_every=1, lr=1e-3,
    )  # fmt: skip
    return TrainSettings(**{**values, **overrides})


def tiny_data() -> VideoReIDData:
    """4 training and 3 test identities in 2 cameras, tracklets of 3 to 5 frames."""
    return synthetic_video_reid(4, 3, num_cams=2, length=(3, 5), size=SIZE, seed=0)


def randomized(module: nn.Module, std: float = 0.3) -> nn.Module:
    """``module`` with every parameter drawn from ``N(0, std^2)``: no identity at start, every path on."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * std)
    return module
