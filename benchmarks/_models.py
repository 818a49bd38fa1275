"""What the benchmark sections measure: the model's injected stages, and the reference paths its blocks
are compared with (MAE through its attention maps, BME with two ψ passes as Eq. 4-5 are written: the
paper-literal form the tests check BME against, ``tests/references.py``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from lstrl_layers import MAE, LSTRLBlock, VideoReIDNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from references import TwoPsiBME  # noqa: E402  (the paper's Eq. 4-6 as written)

__all__ = ["NUM_CLASSES", "MAEWithMaps", "StageShape", "TwoPsiBME", "param_count", "stage_shapes", "variant"]

NUM_CLASSES = 625  # MARS training identities, the classifier of the paper's Table 3
StageShape = tuple[str, int, int, int]  # (stage name, C, H, W) at the input of an injected block


def stage_shapes(model_name: str, stages: Sequence[int | str], size: Sequence[int]) -> list[StageShape]:
    """``(stage name, C, H, W)`` at the input of every injected block, from one frame through the model.

    Raises:
        ValueError, RuntimeError: timm or the library cannot build the model or run a frame of ``size``.
    """
    height, width = size
    model = VideoReIDNet(model_name, NUM_CLASSES, stages=stages, num_frames=1, last_stride=1).eval()
    shapes: list[StageShape] = []
    for name, module in model.named_modules():
        if isinstance(module, LSTRLBlock):
            module.register_forward_pre_hook(
                lambda _m, inputs, name=name: shapes.append((name.rsplit(".", 1)[-1], *inputs[0].shape[-3:]))
            )
    with torch.no_grad():
        model(torch.zeros(1, 1, 3, height, width))
    return shapes


def variant(args: argparse.Namespace, flags: Mapping[str, bool]) -> VideoReIDNet:
    """A Table 3 variant (``flags``: ``mae``, ``bme``) of the paper's model at the run's backbone, stages and
    T: last stride 1, the blocks as the paper has them (``zero_init=False``), the same start every time."""
    torch.manual_seed(0)
    return VideoReIDNet(
        args.backbone,
        NUM_CLASSES,
        stages=args.stages,
        num_frames=args.num_frames,
        last_stride=1,
        zero_init=False,
        **flags,
    )


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class MAEWithMaps(nn.Module):
    """MAE through its materializing path (``return_maps=True``, every D^i formed); returns the output."""

    def __init__(self, mae: MAE) -> None:
        super().__init__()
        self.mae = mae

    def forward(self, frames: Tensor) -> Tensor:
        out, _ = self.mae(frames, return_maps=True)
        return out
