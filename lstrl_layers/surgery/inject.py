"""Insert LSTRL blocks into any CNN (timm, torchvision, your own) after stages or blocks, renaming nothing."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from .._checks import check_branches, check_int, check_stages, got
from ..blocks.base import TORCHSCRIPT_UNSUPPORTED, ClipBlock, check_layout
from ..blocks.lstrl import LSTRLBlock
from .feature_info import feature_dicts
from .probe import probe_input, run_probe
from .stages import Stage, StageTarget, resolve_stage
from .wrappers import unwrap_for_injection

__all__ = ["BLOCKS_ATTR", "Stage", "inject_lstrl", "set_num_frames", "use_num_frames"]

DATA_PARALLEL_UNSUPPORTED = (
    "LSTRL blocks run from forward hooks, which nn.DataParallel's replicas share with the original model, so "
    "every GPU would run the blocks of the first one. Use DistributedDataParallel (one process per GPU, e.g. "
    "torchrun): inject into the plain model, then wrap it"
)
BLOCKS_ATTR = "lstrl"  # the one attribute inject_lstrl adds to a model: a ModuleDict of the injected blocks


class _ClipLength:
    """``T`` of the clips a model is running now, when its caller knows it (:func:`use_num_frames`).

    ``None`` outside such a call: the blocks then split frames by their own ``num_frames``. Inside, it may be
    a symbol (a ``SymInt`` read from an input's shape while exporting), so that ``T`` stays data in the graph.
    """

    def __init__(self) -> None:
        self.num_frames: Any = None


class _InjectedBlocks(nn.ModuleDict):
    """Holds the injected blocks (``model.lstrl[<stage key>]``); they run from hooks on their stages.

    It is an identity if called, because timm's ``features_only`` wrappers (and ``nn.Sequential`` roots) call
    every child of the root in order; the blocks themselves run from the hooks, never from here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clip_length = _ClipLength()  # shared by the hooks of every block of this model

    def forward(self, x: Any) -> Any:
        return x

    def __prepare_scriptable__(self) -> nn.Module:
        """Called by ``torch.jit.script`` before compiling: refuse with the alternatives."""
        raise NotImplementedError(f"a model with injected LSTRL blocks: {TORCHSCRIPT_UNSUPPORTED}")


class _StageHook:
    """Forward (or forward-pre) hook that runs ``block`` on a stage's output (or input).

    A callable object rather than a closure, so that ``copy.deepcopy`` (e.g. timm's ``ModelEmaV3``) and
    pickling of the model re-point the hook at the copied block.
    """

    def __init__(self, block: LSTRLBlock, pre: bool, clip_length: _ClipLength) -> None:
        self.block = block
        self.pre = pre
        self.clip_length = clip_length

    def __call__(self, module: nn.Module, inputs: tuple[Any, ...], *output: Any) -> Any:
        if getattr(module, "_is_replica", False):
            raise RuntimeError(DATA_PARALLEL_UNSUPPORTED)
        if self.pre:
            return (self._run(inputs[0]), *inputs[1:])
        return self._run(output[0])

    def _run(self, x: Any) -> Any:
        num_frames = self.clip_length.num_frames
        if num_frames is None or not isinstance(x, Tensor) or x.ndim != 4:
            return self.block(x)  # frames split by the block's num_frames, or clips that carry their T
        clips = rearrange(x, "(b t) c h w -> b t c h w", t=num_frames)  # T known to the caller
        return rearrange(self.block(clips), "b t c h w -> (b t) c h w")


def _stage_key(module_name: str) -> str:
    return module_name.replace(".", "_")  # ModuleDict keys cannot hold dots


def _probe_stage_outputs(
    model: nn.Module, targets: Mapping[str, StageTarget], inputs: Tensor
) -> dict[str, list[Any]]:
    """Run ``inputs`` through ``model`` and return what each target stage feeds its block, once per call."""
    captured: dict[str, list[Any]] = {name: [] for name in targets}
    handles = []
    for name, target in targets.items():

        def capture(_module: nn.Module, *args: Any, _name: str = name, _pre: bool = target.pre) -> None:
            captured[_name].append(args[0][0] if _pre else args[1])

        module = target.module
        handles.append(
            module.register_forward_pre_hook(capture) if target.pre else module.register_forward_hook(capture)
        )
    try:
        purpose = "to find the output of each stage (pass example_input= or input_size= for another input)"
        run_probe(model, inputs, purpose)
    finally:
        for hook in handles:
            hook.remove()
    return captured


def _stage_channels(model: nn.Module, target: StageTarget, out: Any, layout: str) -> int:
    """The channels of a stage's output, which must be one feature map in ``layout``."""
    expected = "(N, C, H, W) feature map" if layout == "BTCHW" else "(B, C, T, H, W) clip feature map"
    ndim = 4 if layout == "BTCHW" else 5
    if not isinstance(out, Tensor) or out.ndim != ndim:
        received = type(out).__name__
        if isinstance(out, Tensor):
            received = f"a {out.ndim}-D tensor {tuple(out.shape)}"
        hint = ""
        if isinstance(out, Tensor) and out.ndim == 5 and layout == "BTCHW":
            hint = "; for a 3D CNN's (B, C, T, H, W) stages pass layout='BCTHW'"
        raise ValueError(
            f"stage {target.name!r} of {type(model).__name__} does not give one {expected} "
            f"(got {received}): LSTRL blocks need a CNN stage{hint}"
        )
    if target.num_chs is not None:
        widths, source = {target.num_chs}, "in feature_info"
    else:
        widths, source = _token_widths(target.module), "the width of its last Linear / LayerNorm layers"
    if out.shape[1] not in widths and out.shape[-1] in widths:
        listed = out.shape[-1]
        where = "(N, H, W, C)" if layout == "BTCHW" else "(B, T, H, W, C)"
        raise ValueError(
            f"stage {target.name!r} of {type(model).__name__} gives a channels-last {where} map "
            f"{tuple(out.shape)} (C={listed}, {source}): LSTRL blocks need channels first, {expected}"
        )
    return int(out.shape[1])


def _token_widths(module: nn.Module) -> set[int]:
    """Widths of the ``Linear`` / ``LayerNorm`` layers a module ends with (transformer-style stages).

    Such layers work on the last dimension, so a channels-last output's last size is among them; the search
    stops at the last convolution or batch norm (a CNN stage, whose channels are its output's dim 1).
    """
    widths: set[int] = set()
    for layer in reversed(list(module.modules())):
        if isinstance(layer, nn.Linear):
            widths.add(layer.out_features)
        elif isinstance(layer, nn.LayerNorm):
            widths.add(int(layer.normalized_shape[-1]))
        elif isinstance(layer, (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm)):
            break
    return widths


def inject_lstrl(
    model: nn.Module,
    stages: Iterable[Stage],
    num_frames: int = 8,
    mae: bool = True,
    bme: bool = True,
    zero_init: bool = True,
    mae_kwargs: Mapping[str, Any] | None = None,
    bme_kwargs: Mapping[str, Any] | None = None,
    layout: str = "BTCHW",
    example_input: Tensor | None = None,
    input_size: Sequence[int] | None = None,
) -> nn.Module:
    """Insert an :class:`LSTRLBlock` after each of ``stages`` of a CNN, in place.

    ``model`` is any ``nn.Module``: a timm model, a torchvision model, a 3D video CNN or your own. Each block
    runs on the output of the module a stage names:

    - an int is an index into timm's ``feature_info`` (timm's ``out_indices``; resnet50: ``2`` is ``layer2``)
      and runs where timm takes that feature (a forward-pre hook where ``feature_info`` says
      ``hook_type="forward_pre"``; HRNet's features after its ``incre_modules``);
    - a str is a name ``feature_info`` lists (same as its index) or the name of any submodule: a stage
      (``"layer3"``) or one block of it (``"layer3.1"``); :func:`blocks_of` lists the blocks of a stage for
      per-block placement (``blocks_of(model, "layer3", every=2)``).

    Nothing in the model is renamed or replaced: the blocks live in one new attribute, ``model.lstrl`` (keyed
    by the module name with ``.`` as ``_``), and run from forward hooks. A checkpoint of the plain model
    therefore loads with ``strict=False`` with only the blocks' keys missing, and, with ``zero_init``
    (default), the injected model computes what the plain one did (MAE exactly, BME to within ``1e-6``) until
    training moves the blocks.

    Channels are found by one probe forward (eval mode, no gradients): ``example_input``, else a zero input
    of ``input_size``, else the size the model says (timm's ``pretrained_cfg``) or its first layer implies
    (``Conv2d``: 224x224 frames, ``Conv3d``: 8 frames of 112x112). The probe also checks that every stage
    gives one feature map in ``layout``: ``"BTCHW"`` (default), a 2D CNN's frames ``(B*T, C, H, W)`` with
    the ``T = num_frames`` frames of each clip contiguous (change ``T`` later with :func:`set_num_frames`), or
    ``"BCTHW"``, a 3D CNN's clips ``(B, C, T, H, W)``, which carry their own ``T``.

    Wrapped models: a ``torch.compile``'d model is injected through its original module; every model
    compiled before (this one or a copy of its modules) compiles again on its next call, since the blocks
    change what it computes (``torch.compiler.reset()`` runs after every injection, which clears all
    compiled code of the process). ``DistributedDataParallel`` and ``DataParallel`` are refused: inject
    into the plain model, then wrap it (DDP); ``DataParallel`` replicas cannot run hooked blocks.

    Injecting into more stages later is allowed with the same ``num_frames`` as the blocks already there
    (every block of a model splits the batch into the same clips). ``torch.compile``, ``torch.jit.trace`` and
    ``torch.onnx.export`` work on the injected model; ``torch.jit.script`` does not (it refuses with this
    advice).

    Args:
        model: any ``nn.Module`` (a compiled module is injected through ``model._orig_mod``).
        stages: ``feature_info`` indices (timm models) or module names, see above.
        num_frames: ``T``, frames per clip of ``(B*T, C, H, W)`` stage outputs.
        mae: include the :class:`MAE` branch.
        bme: include the :class:`BME` branch.
        zero_init: identity at injection (see the blocks).
        mae_kwargs: further :class:`MAE` arguments (``reduction``, ``granularities``, ``scale``).
        bme_kwargs: further :class:`BME` arguments (``reduction``, ``directions``, ``mode``, ``edge``, ...).
        layout: ``"BTCHW"`` (2D CNNs, frames ``(B*T, C, H, W)``) or ``"BCTHW"`` (3D CNNs, clips
            ``(B, C, T, H, W)``).
        example_input: an input the model takes, for the probe forward (a batch of one is enough).
        input_size: the size of one input without the batch (``(3, 256, 128)``), for the probe forward.

    Returns:
        ``model``, with the blocks injected.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``stages`` not a list of ints / str, or an argument
            of the wrong type (``num_frames`` not an int, a flag not a bool, kwargs not a dict).
        ValueError: a stage that does not exist (the message lists the valid names nearby), a stage injected
            twice, blocks already in the model at another ``num_frames``, an index on a model without
            ``feature_info``, a probe input that cannot be inferred or that the model fails on, a stage
            whose output is not one feature map in ``layout`` (token sequences, channels-last maps, lists), or
            a ``DataParallel`` / ``DistributedDataParallel`` model. The model is left unchanged.

    Example:
        >>> model = inject_lstrl(timm.create_model("resnet50"), stages=[2, 3], num_frames=8)
        >>> model.forward_features(torch.randn(2 * 8, 3, 256, 128)).shape
        torch.Size([16, 2048, 8, 4])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (a CNN), got {got(model)}")
    stages = check_stages("stages", stages, allow_empty=False)
    check_int("num_frames", num_frames)
    check_branches("inject_lstrl", mae, bme, zero_init, mae_kwargs, bme_kwargs)
    check_layout(layout)
    target_model = unwrap_for_injection(model)
    dicts = feature_dicts(target_model, required=False)
    injected = getattr(target_model, BLOCKS_ATTR, None)
    if injected is not None and not isinstance(injected, _InjectedBlocks):
        raise ValueError(
            f"{type(target_model).__name__} already has an attribute {BLOCKS_ATTR!r} that is not ours"
        )
    _check_same_num_frames(target_model, num_frames)
    targets: dict[str, StageTarget] = {}
    for stage in stages:
        target = resolve_stage(target_model, stage, dicts)
        same_place = any((t.module, t.pre) == (target.module, target.pre) for t in targets.values())
        if (
            target.name in targets
            or same_place
            or (injected is not None and _stage_key(target.name) in injected)
        ):
            raise ValueError(f"stage {stage!r} ({target.name!r}) is injected twice; stages={list(stages)!r}")
        targets[target.name] = target

    inputs = probe_input(target_model, example_input, input_size)
    outputs = _probe_stage_outputs(target_model, targets, inputs)
    blocks: dict[str, LSTRLBlock] = {}
    for name, target in targets.items():
        calls = outputs[name]
        if len(calls) != 1:
            raise ValueError(
                f"stage {name!r} of {type(target_model).__name__} ran {len(calls)} times in one forward "
                f"(input of shape {tuple(inputs.shape)}), so its block would run {len(calls)} times"
                + (" (a module the model reuses, such as a shared activation): " if calls else ": ")
                + "pick a module that runs once per forward"
            )
        out = calls[0]
        channels = _stage_channels(target_model, target, out, layout)
        blocks[name] = LSTRLBlock(
            channels, num_frames, mae=mae, bme=bme, zero_init=zero_init, mae_kwargs=mae_kwargs,
            bme_kwargs=bme_kwargs, layout=layout, device=out.device, dtype=out.dtype,
        )  # fmt: skip

    if injected is None:
        injected = _InjectedBlocks()
        setattr(target_model, BLOCKS_ATTR, injected)
    for name, block in blocks.items():
        target = targets[name]
        injected[_stage_key(name)] = block
        hook = _StageHook(block, target.pre, injected.clip_length)
        # prepend: run before any hook already there (timm's FeatureHookNet collects features with hooks)
        if target.pre:
            target.module.register_forward_pre_hook(hook, prepend=True)
        else:
            target.module.register_forward_hook(hook, prepend=True)
    if "torch._dynamo" in sys.modules:  # code compiled before the injection would not run the blocks
        torch.compiler.reset()
    return model


def _check_same_num_frames(model: nn.Module, num_frames: int) -> None:
    """Refuse to add blocks at another ``T`` than the LSTRL blocks already in ``model``."""
    blocks = {name: m for name, m in model.named_modules() if isinstance(m, ClipBlock)}
    outermost = {n: m for n, m in blocks.items() if not any(n.startswith(f"{o}.") for o in blocks)}
    differing = {name: m.num_frames for name, m in outermost.items() if m.num_frames != num_frames}
    if differing:
        listed = ", ".join(f"{name} (num_frames={t})" for name, t in differing.items())
        raise ValueError(
            f"num_frames={num_frames} differs from the LSTRL blocks already in {type(model).__name__}: "
            f"{listed}. All blocks of a model split the batch into the same clips: inject with the same "
            f"num_frames, or call set_num_frames(model, {num_frames}) first"
        )


def set_num_frames(model: nn.Module, num_frames: int) -> nn.Module:
    """Set ``T`` (frames per clip) on every LSTRL block in ``model``, e.g. for longer clips at test time.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``num_frames`` not an int.
        ValueError: ``num_frames < 1``, or ``model`` holds no LSTRL block.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module holding LSTRL blocks, got {got(model)}")
    check_int("num_frames", num_frames)
    blocks = [m for m in model.modules() if isinstance(m, ClipBlock)]
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} holds no LSTRL block (MAE, BME, LSTRLBlock) to set num_frames on"
        )
    for block in blocks:
        block.num_frames = num_frames
    return model


class use_num_frames:  # noqa: N801 (a context manager, used like a function)
    """Within this ``with`` block, the injected blocks of ``model`` split frames into clips of ``num_frames``.

    For a caller that reshapes its own videos ``(B, T, C, H, W)`` into frames ``(B*T, C, H, W)`` before the
    backbone, as :class:`~lstrl_layers.VideoReIDNet` does: ``T`` is read from the video on every call, so any
    clip length works, nothing is stored on the blocks, and under ``torch.export`` / ONNX export ``T`` stays a
    symbol of the input's shape instead of becoming a constant of the graph. Outside the block, each block
    splits frames by its own ``num_frames`` (:func:`set_num_frames`).

    Args:
        model: a model :func:`inject_lstrl` injected into (a model without injected blocks is left alone).
        num_frames: ``T``, e.g. ``video.shape[1]``.

    Example:
        >>> model = inject_lstrl(timm.create_model("resnet18"), stages=[3], num_frames=8)
        >>> video = torch.randn(2, 4, 3, 64, 32)
        >>> with use_num_frames(model, video.shape[1]):
        ...     logits = model(video.flatten(0, 1))
        >>> logits.shape
        torch.Size([8, 1000])
    """

    def __init__(self, model: nn.Module, num_frames: Any) -> None:
        blocks = getattr(model, BLOCKS_ATTR, None)
        self._clip_length = blocks.clip_length if isinstance(blocks, _InjectedBlocks) else _ClipLength()
        self._num_frames = num_frames

    def __enter__(self) -> None:
        self._clip_length.num_frames = self._num_frames

    def __exit__(self, *exc: object) -> None:
        self._clip_length.num_frames = None
