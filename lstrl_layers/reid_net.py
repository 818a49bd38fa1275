"""The paper's whole video ReID model (Fig. 2): timm backbone + LSTRL blocks, GAP, TAP, BNNeck, classifier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import timm
from einops import rearrange, reduce
from torch import Tensor, nn

from ._clip_block import _check_positive_int
from ._timm import Stage, set_last_stride_one
from .inject import BLOCKS_ATTR, inject_lstrl, set_num_frames

ReIDOutput = Union[Tensor, tuple[Tensor, Tensor]]


class VideoReIDNet(nn.Module):
    r"""LSTRL's video ReID framework (paper Fig. 2): a timm CNN with LSTRL blocks, GAP, TAP and a BNNeck.

    A video ``(B, T, 3, H, W)`` runs through the backbone as ``B*T`` frames (LSTRL blocks after ``stages``),
    each frame is pooled by the backbone's global average pooling (GAP), the ``T`` frame features of a clip
    are averaged (TAP), and a BNNeck (``BatchNorm1d`` with a frozen zero bias, then a bias-free linear
    classifier, as in Luo et al.'s "Bag of Tricks") gives the identity logits.

    Args:
        model_name: a timm CNN (``"resnet50"`` in the paper).
        num_classes: training identities (classifier outputs).
        stages: ``feature_info`` indices or names that get an LSTRL block (paper: ``(2, 3)``, ResNet-50's
            layer2 and layer3). Empty, or ``mae=False`` and ``bme=False``, gives the baseline without blocks.
        num_frames: initial ``T`` of the blocks; every call sets it from the input, so any ``T`` works.
        mae: include the MAE branch.
        bme: include the BME branch.
        pretrained: load timm's pretrained backbone weights.
        last_stride: ``1`` (ReID convention: the last stage keeps stride 1, 16x8 maps at 256x128) or ``2``.
        zero_init: blocks start as the identity.
        mae_kwargs: further :class:`MAE` arguments.
        bme_kwargs: further :class:`BME` arguments.
        **timm_kwargs: passed to :func:`timm.create_model` (e.g. ``pretrained_cfg_overlay=dict(file=...)``).

    ``config`` holds these arguments; :func:`lstrl_layers.reid.save_model` stores them with the weights and
    :func:`lstrl_layers.reid.load_model` rebuilds the model from that file.

    Shape:
        - Input: ``(B, T, 3, H, W)``.
        - Output, train mode: ``(logits, feature)``, ``(B, num_classes)`` and the clip feature before the
          BNNeck ``(B, feature_dim)`` (for a triplet loss).
        - Output, eval mode: the BNNeck clip embedding ``(B, feature_dim)``.
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int,
        stages: Sequence[Stage] = (2, 3),
        num_frames: int = 8,
        mae: bool = True,
        bme: bool = True,
        pretrained: bool = False,
        last_stride: int = 1,
        zero_init: bool = True,
        mae_kwargs: Mapping[str, Any] | None = None,
        bme_kwargs: Mapping[str, Any] | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        _check_positive_int("num_classes", num_classes)
        self.config: dict[str, Any] = dict(  # the arguments that rebuild this model (see reid.load_model)
            model_name=model_name, num_classes=num_classes, stages=stages, num_frames=num_frames,
            mae=mae, bme=bme, pretrained=pretrained, last_stride=last_stride, zero_init=zero_init,
            mae_kwargs=dict(mae_kwargs or {}), bme_kwargs=dict(bme_kwargs or {}), **timm_kwargs,
        )  # fmt: skip
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
        self.backbone = timm.create_model(model_name, pretrained=pretrained, num_classes=0, **timm_kwargs)
        if last_stride == 1:
            set_last_stride_one(self.backbone)
        if len(stages) > 0 and (mae or bme):
            inject_lstrl(
                self.backbone, stages, num_frames=num_frames, mae=mae, bme=bme, zero_init=zero_init,
                mae_kwargs=mae_kwargs, bme_kwargs=bme_kwargs,
            )  # fmt: skip
        # frame feature size after the backbone's own pooling (and head, e.g. MobileNetV3's conv_head)
        dim: Any = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.feature_dim = int(dim)
        self.bottleneck = nn.BatchNorm1d(self.feature_dim)  # BNNeck
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(self.feature_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, video: Tensor) -> ReIDOutput:
        if not isinstance(video, Tensor) or video.ndim != 5:
            got = f"shape {tuple(video.shape)}" if isinstance(video, Tensor) else type(video).__name__
            raise ValueError(f"VideoReIDNet expects a video (B, T, 3, H, W), got {got}")
        num_frames = video.shape[1]
        if num_frames < 1:
            raise ValueError(
                f"VideoReIDNet expects a video (B, T, 3, H, W) with T >= 1, got {tuple(video.shape)}"
            )
        blocks = getattr(self.backbone, BLOCKS_ATTR, None)
        if blocks is not None:
            set_num_frames(blocks, num_frames)  # only the injected blocks, not a scan of the whole backbone
        frames = rearrange(video, "b t c h w -> (b t) c h w")
        frame_features = self.backbone(frames)  # GAP inside the backbone
        feature = reduce(frame_features, "(b t) d -> b d", "mean", t=num_frames)  # TAP
        embedding = self.bottleneck(feature)
        if not self.training:
            return embedding
        return self.classifier(embedding), feature
