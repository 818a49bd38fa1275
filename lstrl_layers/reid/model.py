"""The paper's whole video ReID model (Fig. 2): a CNN with LSTRL blocks, GAP, TAP, BNNeck, classifier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from einops import rearrange, reduce
from torch import Tensor, nn

from .._checks import check_bool, check_int, check_last_stride, check_stages, got
from .._compat import import_timm
from ..blocks.lstrl import LSTRLArgs
from ..surgery.inject import inject_blocks, use_num_frames
from ..surgery.last_stride import set_last_stride_one
from ..surgery.probe import probe_input, run_probe
from ..surgery.stages import Stage
from ..surgery.wrappers import unwrap_for_injection

ReIDOutput = Union[Tensor, tuple[Tensor, Tensor]]


def _check_weights_file(path: str, name: str, timm_kwargs: Mapping[str, Any]) -> None:
    """A local file of backbone weights must be a state dict of ``name``: one line naming it if not.

    Keys are compared with the model's own (its classifier's aside, which ``num_classes=0`` drops): timm
    would load a file of another architecture partially, with a log line, and train from the rest.
    """
    timm = import_timm()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # missing, truncated, a pickle with code, not a torch file
        why = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
        raise ValueError(f"backbone weights {path} cannot be read ({type(err).__name__}: {why})") from None
    for key in ("state_dict", "model"):  # checkpoints that wrap the state dict, as timm reads them
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"backbone weights {path} are not a state dict (a dict of tensors, model.state_dict()), got "
            f"{type(state).__name__}"
        )
    with torch.device("meta"):  # the keys and shapes only: nothing allocated, nothing initialized
        own = timm.create_model(name, pretrained=False, num_classes=0, **timm_kwargs).state_dict()
    classifier = str(getattr(timm.models.get_pretrained_cfg(name), "classifier", None) or "")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(
        k for k in set(state) - set(own) if not (classifier and k.startswith(f"{classifier}."))
    )
    if missing or unexpected:
        parts = [f"{len(keys)} {what} (e.g. {keys[0]!r})" for what, keys in (("missing", missing),
                 ("unexpected", unexpected)) if keys]  # fmt: skip
        raise ValueError(f"backbone weights {path} are not {name}'s: {', '.join(parts)} keys")


def _timm_backbone(name: str, pretrained: bool, timm_kwargs: Mapping[str, Any]) -> nn.Module:
    """``timm.create_model(name, num_classes=0)``: the model's own GAP, no classifier.

    Pretrained weights are checked first, so that a wrong file or unreachable weights give one line, not
    timm's traceback or a minute of download retries.
    """
    timm = import_timm()
    overlay = timm_kwargs.get("pretrained_cfg_overlay")
    file = overlay.get("file") if pretrained and isinstance(overlay, Mapping) else None
    if file is not None:
        _check_weights_file(
            str(file), name, {k: v for k, v in timm_kwargs.items() if k != "pretrained_cfg_overlay"}
        )
    elif pretrained and timm.is_model(name):
        from .weights import check_pretrained_available

        check_pretrained_available(name)
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=0, **timm_kwargs)
    except RuntimeError as err:
        if file is not None and "state_dict" in str(err):
            raise ValueError(
                f"backbone weights {file} do not fit {name}: {str(err).splitlines()[1].strip()} ..."
            ) from None
        if not str(err).startswith("Unknown model"):
            raise
        raise ValueError(
            f"backbone must be a timm model, got {name!r}, which timm does not know "
            f"(timm.list_models('resnet*') lists the ResNets, for example)"
        ) from err


class VideoReIDNet(nn.Module):
    r"""LSTRL's video ReID framework (paper Fig. 2): a CNN with LSTRL blocks, GAP, TAP and a BNNeck.

    A video ``(B, T, 3, H, W)`` runs through the backbone as ``B*T`` frames (LSTRL blocks after
    ``stages``), each frame is pooled by global average pooling (GAP), the ``T`` frame features of a clip are
    averaged (TAP), and a BNNeck (``BatchNorm1d`` with a frozen zero bias, then a bias-free linear
    classifier, as in Luo et al.'s "Bag of Tricks") gives the identity logits.

    The backbone is a timm model name (built with ``num_classes=0``: the model's own GAP, no classifier)
    or a ready ``nn.Module`` whose output per frame is the feature: a vector ``(N, D)`` or a map
    ``(N, D, h, w)``, which is average-pooled (GAP). Remove a module's classifier first, e.g.
    ``resnet.fc = nn.Identity()`` for a torchvision ResNet; ``stages`` then name its modules
    (``("layer2", "layer3")``).

    Args:
        backbone: a timm CNN's name (``"resnet50"`` in the paper) or a ready ``nn.Module`` (see above).
        num_classes: training identities (classifier outputs).
        stages: ``feature_info`` indices or names (timm), or module names (any backbone), that get an LSTRL
            block (paper: ``(2, 3)``, ResNet-50's ``layer2`` and ``layer3``). Empty, or ``mae=False`` and
            ``bme=False``, gives the baseline without blocks.
        num_frames: ``T`` of the blocks for frames given to the backbone directly. A video carries its own
            ``T``, read from its shape on every call and never stored, so any ``T >= 1`` works (and stays
            dynamic when the model is exported).
        mae: include the MAE branch.
        bme: include the BME branch.
        pretrained: load timm's pretrained backbone weights (timm names only).
        last_stride: ``1`` (ReID convention: the last stage keeps stride 1, 16x8 maps at 256x128) or ``2``.
            On a module backbone the last stride-2 layers are found by one probe forward.
        zero_init: blocks start as the identity.
        mae_kwargs: further :class:`MAE` arguments.
        bme_kwargs: further :class:`BME` arguments.
        input_size: one frame's size ``(C, H, W)`` for the probe forwards that find the stages' channels, the
            last stride-2 layers and the feature size; default: what the model says (timm) or its first
            convolution implies (224x224).
        **timm_kwargs: passed to :func:`timm.create_model` (e.g. ``pretrained_cfg_overlay=dict(file=...)``).

    ``config`` holds these arguments; :func:`lstrl_layers.reid.save_model` stores them with the weights and
    :func:`lstrl_layers.reid.load_model` rebuilds the model from that file (timm backbones, which are rebuilt
    by name).

    Shape:
        - Input: ``(B, T, C, H, W)``, floats (``B >= 2`` in train mode, for the BNNeck's batch statistics).
        - Output, train mode: ``(logits, feature)``, ``(B, num_classes)`` and the clip feature before the
          BNNeck ``(B, feature_dim)`` (for a triplet loss).
        - Output, eval mode: the BNNeck clip embedding ``(B, feature_dim)``.
    """

    def __init__(
        self,
        backbone: str | nn.Module,
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
        input_size: Sequence[int] | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, (str, nn.Module)):
            raise TypeError(
                f"backbone must be the name of a timm model, e.g. 'resnet50', or an nn.Module, "
                f"got {got(backbone)}"
            )
        check_int("num_classes", num_classes)
        stages = check_stages("stages", stages, allow_empty=True)
        check_int("num_frames", num_frames)
        lstrl = LSTRLArgs(mae, bme, zero_init, mae_kwargs, bme_kwargs)  # mae=bme=False: the baseline
        check_bool("pretrained", pretrained)
        check_last_stride(last_stride)
        for name, enabled, kwargs in (("mae", mae, lstrl.mae_kwargs), ("bme", bme, lstrl.bme_kwargs)):
            if kwargs and not stages:  # kwargs of a branch that is off: refused by LSTRLArgs
                raise ValueError(
                    f"{name}_kwargs apply to the {name.upper()} blocks, and this model has none "
                    f"(stages={stages!r}, {name}={enabled}), got {name}_kwargs={dict(kwargs)!r}"
                )
        self.config: dict[str, Any] = dict(  # the arguments that rebuild this model (see reid.load_model)
            backbone=backbone, num_classes=num_classes, stages=stages, num_frames=num_frames,
            mae=mae, bme=bme, pretrained=pretrained, last_stride=last_stride, zero_init=zero_init,
            mae_kwargs=dict(lstrl.mae_kwargs or {}), bme_kwargs=dict(lstrl.bme_kwargs or {}),
            input_size=None if input_size is None else tuple(input_size), **timm_kwargs,
        )  # fmt: skip
        if isinstance(backbone, str):
            self.backbone = _timm_backbone(backbone, pretrained, timm_kwargs)
        else:
            if pretrained or timm_kwargs:
                given = {"pretrained": pretrained, **timm_kwargs} if pretrained else timm_kwargs
                raise ValueError(
                    f"pretrained and timm keyword arguments apply to a timm model name; a backbone module "
                    f"comes with its own weights, got {given!r}"
                )
            self.backbone = unwrap_for_injection(backbone)
        example = probe_input(self.backbone, input_size=input_size)
        self._in_chans = int(example.shape[1])
        self.feature_dim = self._frame_feature_dim(example)  # before any change: blocks keep shapes
        # a backbone module is the caller's: if anything below is refused, it is left as it came
        undo_last_stride = set_last_stride_one(self.backbone, example) if last_stride == 1 else None
        if stages and (mae or bme):
            try:
                inject_blocks(
                    self.backbone, stages, lstrl.build, num_frames=num_frames, example_input=example
                )
            except (TypeError, ValueError):
                if undo_last_stride is not None:
                    undo_last_stride()
                raise
        self.bottleneck = nn.BatchNorm1d(self.feature_dim)  # BNNeck
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(self.feature_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the model to ``directory``: ``config.json`` (its arguments) and ``model.safetensors``.

        The Hugging Face Hub's layout: the folder can be uploaded as it is (``huggingface_hub.upload_folder``)
        and read back by its id with :meth:`from_pretrained`. Timm backbones only (rebuilt by name).

        Raises:
            ValueError: a backbone module, or arguments that are not plain values (JSON).
        """
        from .pretrained import save_pretrained

        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, name: str | Path, map_location: str | torch.device = "cpu") -> VideoReIDNet:
        """The model :meth:`save_pretrained` wrote, in eval mode (ready to embed a single clip).

        Args:
            name: the folder :meth:`save_pretrained` wrote, or a Hugging Face Hub id ``"owner/name"`` of such
                a folder (from the local cache, else downloaded; with ``HF_HUB_OFFLINE=1`` the cache only).
            map_location: device of the model.

        Raises:
            FileNotFoundError: ``name`` is neither a folder nor a Hub id.
            ValueError: a folder without ``config.json`` or weights, a config of another kind, weights of
                another model, or a Hub id neither cached nor reachable (in a few seconds, not after retries).
        """
        from .pretrained import load_pretrained

        return load_pretrained(cls, name, map_location)

    def _frame_feature_dim(self, example: Tensor) -> int:
        """``D`` of the backbone's frame features, from a timm model's attributes or one probe forward."""
        if isinstance(self.config["backbone"], str):
            # after the backbone's own pooling (and head, e.g. MobileNetV3's conv_head)
            dim: Any = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
            return int(dim)
        out = run_probe(self.backbone, example, "to find the size of its frame features")
        if not isinstance(out, Tensor) or out.ndim not in (2, 4):
            received = f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"backbone {type(self.backbone).__name__} must give one feature vector (N, D) or feature map "
                f"(N, D, h, w) per frame, got {received} for an input of shape {tuple(example.shape)}"
            )
        return int(out.shape[1])

    def forward(self, video: Tensor) -> ReIDOutput:
        num_frames = self._check_video(video)  # T: read from the video, never stored (a symbol on export)
        frames = rearrange(video, "b t c h w -> (b t) c h w")
        with use_num_frames(self.backbone, num_frames):
            frame_features = self.backbone(frames)
        if frame_features.ndim == 4:  # a module backbone's feature maps
            frame_features = reduce(frame_features, "n d h w -> n d", "mean")  # GAP
        feature = reduce(frame_features, "(b t) d -> b d", "mean", t=num_frames)  # TAP
        embedding = self.bottleneck(feature)
        if not self.training:
            return embedding
        return self.classifier(embedding), feature

    def _check_video(self, video: object) -> Any:
        """Validate the input video up front and return its ``T`` (an int, or a symbol while exporting)."""
        expected = f"VideoReIDNet expects a video (B, T, C={self._in_chans}, H, W) of floats"
        if not isinstance(video, Tensor):
            raise TypeError(f"{expected}, got {type(video).__name__}")
        shape = tuple(video.shape)
        if video.ndim != 5:
            raise ValueError(f"{expected}, got shape {shape}")
        if not video.is_floating_point():
            raise TypeError(
                f"{expected}, got dtype {video.dtype} (shape {shape}); convert and normalize the frames first"
            )
        if video.shape[1] < 1:
            raise ValueError(f"{expected} with T >= 1, got {shape}")
        if video.shape[2] != self._in_chans:
            raise ValueError(f"{expected}, got C = {video.shape[2]} in shape {shape}")
        if video.shape[3] < 1 or video.shape[4] < 1:
            raise ValueError(f"{expected} with H, W >= 1, got {shape}")
        if self.bottleneck.training and video.shape[0] < 2:  # unless the BNNeck is frozen (eval)
            raise ValueError(
                f"{expected} with B >= 2 clips in train mode (the BNNeck normalizes with batch statistics), "
                f"got {shape}; call .eval() to embed a single clip"
            )
        return video.shape[1]
