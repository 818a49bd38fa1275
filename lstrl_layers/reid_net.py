"""The paper's whole video ReID model (Fig. 2): timm backbone + LSTRL blocks, GAP, TAP, BNNeck, classifier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import timm
from einops import rearrange, reduce
from torch import Tensor, nn

from ._clip_block import _check_positive_int
from .inject import (
    BLOCKS_ATTR,
    Stage,
    _feature_dicts,
    _resolve_stage,
    _run_dummy_frame,
    inject_lstrl,
    set_num_frames,
)

ReIDOutput = Union[Tensor, tuple[Tensor, Tensor]]


def _set_last_stride_one(model: nn.Module) -> None:
    """Make the last ``feature_info`` stage keep its input resolution (the ReID "last stride = 1").

    The layers that run after the previous ``feature_info`` point and up to the end of the last stage are
    searched (in registration order, which is execution order in timm's CNNs). Stride-2 convolutions and
    pooling among them whose padding keeps the size at stride 1 get stride 1 (no dilation, as in BoT's and
    LSTRL's ResNet-50); stride-2 pooling that only downsamples (kernel == stride == 2, e.g. ResNet-D
    shortcuts, DenseNet transitions) becomes an identity. Patchify convolutions (kernel == stride == 2,
    ConvNeXt) cannot keep their receptive field at stride 1 and are refused.
    """
    dicts = _feature_dicts(model)
    if len(dicts) < 2 or dicts[-1].get("reduction") == dicts[-2].get("reduction"):
        return  # the last stage does not downsample
    last_name, last_stage, _ = _resolve_stage(model, len(dicts) - 1, dicts)
    _, previous_stage, _ = _resolve_stage(model, len(dicts) - 2, dicts)
    named = list(model.named_modules())
    previous_end, last_end = (_last_index_within(named, stage) for stage in (previous_stage, last_stage))
    changed = []
    for sub_name, module in named[previous_end + 1 : last_end + 1]:
        stride = getattr(module, "stride", None)
        if stride not in (2, (2, 2)) or next(module.children(), None) is not None:
            continue  # blocks store their stride too: only the layers that apply it are changed
        kernel = getattr(module, "kernel_size", None)
        if isinstance(module, (nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d)) and _keeps_size_at_stride_one(module):
            module.stride = (1, 1) if isinstance(module, nn.Conv2d) else 1
        elif isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)) and kernel in (2, (2, 2)):
            parent_name, _, child = sub_name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, nn.Identity())
        else:
            raise ValueError(
                f"last_stride=1 does not know how to remove the stride of {sub_name} "
                f"({type(module).__name__}, kernel {kernel}); use last_stride=2 for this model"
            )
        changed.append(sub_name)
    if not changed:
        raise ValueError(
            f"last_stride=1: found no stride-2 layer up to the last stage {last_name!r}; use last_stride=2"
        )
    _run_dummy_frame(model, f"after last_stride=1 removed the stride of {changed} (use last_stride=2)")


def _last_index_within(named: list[tuple[str, nn.Module]], stage: nn.Module) -> int:
    """Index in ``named`` of the last module that is ``stage`` or one of its submodules."""
    members = {id(m) for m in stage.modules()}
    return max(i for i, (_, m) in enumerate(named) if id(m) in members)


def _keeps_size_at_stride_one(module: nn.Module) -> bool:
    """Whether a conv / pool gives an output of its input's size once its stride is 1."""
    if "Same" in type(module).__name__:  # timm's Conv2dSame / AvgPool2dSame pad for any stride at run time
        return True
    pairs = (getattr(module, "kernel_size", 1), getattr(module, "padding", 0), getattr(module, "dilation", 1))
    kernel, padding, dilation = (v if isinstance(v, tuple) else (v, v) for v in pairs)
    if any(isinstance(p, str) for p in padding):
        return False
    return all(2 * p == d * (k - 1) for k, p, d in zip(kernel, padding, dilation))


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
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
        self.backbone = timm.create_model(model_name, pretrained=pretrained, num_classes=0, **timm_kwargs)
        if last_stride == 1:
            _set_last_stride_one(self.backbone)
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
