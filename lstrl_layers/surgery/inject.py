"""Insert temporal blocks (LSTRL's or your own) into any CNN after stages or blocks, renaming nothing."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from .._checks import check_int, check_stages, got
from ..blocks.base import TORCHSCRIPT_UNSUPPORTED, ClipBlock, check_layout
from ..blocks.lstrl import LSTRLArgs
from .factory import BlockFactory, build_block, check_block_factory
from .feature_info import feature_dicts
from .probe import probe_input
from .stage_outputs import probe_stage_outputs, stage_channels
from .stages import Stage, StageTarget, resolve_stage
from .wrappers import unwrap_for_injection

__all__ = [
    "BLOCKS_ATTR", "BlockFactory", "Stage", "inject_blocks", "inject_lstrl", "set_num_frames",
    "use_num_frames",
]  # fmt: skip

DATA_PARALLEL_UNSUPPORTED = (
    "Injected blocks run from forward hooks, which nn.DataParallel's replicas share with the original model, "
    "so every GPU would run the blocks of the first one. Use DistributedDataParallel (one process per GPU, "
    "e.g. torchrun): inject into the plain model, then wrap it"
)
BLOCKS_ATTR = "lstrl"  # the one attribute inject_blocks adds to a model: a ModuleDict of the injected blocks


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
        raise NotImplementedError(f"a model with injected blocks: {TORCHSCRIPT_UNSUPPORTED}")


class _StageHook:
    """Forward (or forward-pre) hook that runs ``block`` on a stage's output (or input).

    A callable object rather than a closure, so that ``copy.deepcopy`` (e.g. timm's ``ModelEmaV3``) and
    pickling of the model re-point the hook at the copied block.
    """

    def __init__(self, block: ClipBlock, pre: bool, clip_length: _ClipLength) -> None:
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


def inject_blocks(
    model: nn.Module,
    stages: Iterable[Stage],
    block: BlockFactory,
    num_frames: int = 8,
    layout: str = "BTCHW",
    example_input: Tensor | None = None,
    input_size: Sequence[int] | None = None,
) -> nn.Module:
    """Insert a temporal block (any :class:`~lstrl_layers.ClipBlock`) after each of ``stages`` of a CNN.

    ``model`` is any ``nn.Module``: a timm model, a torchvision model, a 3D video CNN or your own. ``block``
    builds the block of each stage, called with keywords, ``block(channels=C, num_frames=T, layout=layout)``,
    ``C`` the stage's channels: a :class:`~lstrl_layers.ClipBlock` subclass (:class:`MAE`, :class:`BME`,
    :class:`LSTRLBlock` or your own), or a function that returns one (``functools.partial(MAE,
    reduction=8)``). The model is changed in place. Each block runs on the
    output of the module a stage names:

    - an int is an index into timm's ``feature_info`` (timm's ``out_indices``; resnet50: ``2`` is ``layer2``)
      and runs where timm takes that feature (a forward-pre hook where ``feature_info`` says
      ``hook_type="forward_pre"``; HRNet's features after its ``incre_modules``);
    - a str is a name ``feature_info`` lists (same as its index) or the name of any submodule: a stage
      (``"layer3"``) or one block of it (``"layer3.1"``); :func:`blocks_of` lists the blocks of a stage for
      per-block placement (``blocks_of(model, "layer3", every=2)``).

    Nothing in the model is renamed or replaced: the blocks live in one new attribute, ``model.lstrl`` (keyed
    by the module name with ``.`` as ``_``), and run from forward hooks. A checkpoint of the plain model
    therefore loads with ``strict=False`` with only the blocks' keys missing, and a block that starts as the
    identity leaves the model computing what the plain one did until training moves it.

    Channels are found by one probe forward (eval mode, no gradients): ``example_input``, else a zero input
    of ``input_size``, else the size the model says (timm's ``pretrained_cfg``) or its first layer implies
    (``Conv2d``: 224x224 frames, ``Conv3d``: 8 frames of 112x112). The probe also checks that every stage
    gives one feature map in ``layout``: ``"BTCHW"`` (default), a 2D CNN's frames ``(B*T, C, H, W)`` with
    the ``T = num_frames`` frames of each clip contiguous (change ``T`` later with :func:`set_num_frames`, or
    per call with :func:`use_num_frames`), or ``"BCTHW"``, a 3D CNN's clips ``(B, C, T, H, W)``, which carry
    their own ``T``. Each block is built, checked (a ``ClipBlock`` of the channels, ``num_frames`` and
    ``layout`` asked for) and moved to the stage output's device and dtype before any is attached.

    Wrapped models: a ``torch.compile``'d model is injected through its original module; every model
    compiled before (this one or a copy of its modules) compiles again on its next call, since the blocks
    change what it computes (``torch.compiler.reset()`` runs after every injection, which clears all
    compiled code of the process). ``DistributedDataParallel`` and ``DataParallel`` are refused: inject
    into the plain model, then wrap it (DDP); ``DataParallel`` replicas cannot run hooked blocks.

    Injecting into more stages later is allowed with the same ``num_frames`` as the blocks already there
    (every block of a model splits the batch into the same clips).

    Args:
        model: any ``nn.Module`` (a compiled module is injected through ``model._orig_mod``).
        stages: ``feature_info`` indices (timm models) or module names, see above.
        block: builds a stage's block: ``block(channels=C, num_frames=T, layout=layout)`` returns a
            ``ClipBlock``.
        num_frames: ``T``, frames per clip of ``(B*T, C, H, W)`` stage outputs.
        layout: ``"BTCHW"`` (2D CNNs, frames ``(B*T, C, H, W)``) or ``"BCTHW"`` (3D CNNs, clips
            ``(B, C, T, H, W)``).
        example_input: an input the model takes, for the probe forward (a batch of one is enough).
        input_size: the size of one input without the batch (``(3, 256, 128)``), for the probe forward.

    Returns:
        ``model``, with the blocks injected.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``stages`` not a list of ints / str, ``block`` neither
            a ``ClipBlock`` subclass nor a callable (a module instance is refused: one block per stage), a
            ``block(...)`` call that returns something other than a ``ClipBlock``, or an argument of the
            wrong type.
        ValueError: a stage that does not exist (the message lists the valid names nearby), a stage injected
            twice, blocks already in the model at another ``num_frames``, an index on a model without
            ``feature_info``, a probe input that cannot be inferred or that the model fails on, a stage
            whose output is not one feature map in ``layout`` (token sequences, channels-last maps, lists),
            a built block of other ``channels`` / ``num_frames`` / ``layout`` than asked or one already
            used, or a ``DataParallel`` / ``DistributedDataParallel`` model. The model is left unchanged.

    Example:
        >>> model = inject_blocks(torchvision.models.resnet18(), ["layer2", "layer3"], MAE, num_frames=4)
        >>> model(torch.randn(2 * 4, 3, 128, 64)).shape
        torch.Size([8, 1000])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (a CNN), got {got(model)}")
    stages = check_stages("stages", stages, allow_empty=False)
    check_block_factory(block)
    check_int("num_frames", num_frames)
    check_layout(layout)
    target_model = unwrap_for_injection(model)
    injected = getattr(target_model, BLOCKS_ATTR, None)
    if injected is not None and not isinstance(injected, _InjectedBlocks):
        raise ValueError(
            f"{type(target_model).__name__} already has an attribute {BLOCKS_ATTR!r} that is not ours"
        )
    _check_same_num_frames(target_model, num_frames)
    targets = _resolve_targets(target_model, stages, injected)
    inputs = probe_input(target_model, example_input, input_size)
    blocks = _build_blocks(target_model, targets, inputs, block, num_frames, layout)
    _attach(target_model, injected, targets, blocks)
    if "torch._dynamo" in sys.modules:  # code compiled before the injection would not run the blocks
        torch.compiler.reset()
    return model


def _build_blocks(
    model: nn.Module,
    targets: Mapping[str, StageTarget],
    inputs: Tensor,
    block: BlockFactory,
    num_frames: int,
    layout: str,
) -> dict[str, ClipBlock]:
    """One new, checked block per target, from one probe forward of ``inputs``; nothing attached yet."""
    outputs = probe_stage_outputs(model, targets, inputs)
    blocks: dict[str, ClipBlock] = {}
    existing = {id(module) for module in model.modules()}
    for name, target in targets.items():
        calls = outputs[name]
        if len(calls) != 1:
            raise ValueError(
                f"stage {name!r} of {type(model).__name__} ran {len(calls)} times in one forward "
                f"(input of shape {tuple(inputs.shape)}), so its block would run {len(calls)} times"
                + (" (a module the model reuses, such as a shared activation): " if calls else ": ")
                + "pick a module that runs once per forward"
            )
        channels = stage_channels(model, target, calls[0], layout)
        built = build_block(block, name, channels, num_frames, layout, calls[0])
        if id(built) in existing or any(built is other for other in blocks.values()):
            raise ValueError(
                f"block(...) for stage {name!r} returned a {type(built).__name__} that is already in the "
                f"model or built for another stage: block must build a new block on every call"
            )
        blocks[name] = built
    return blocks


def _resolve_targets(
    model: nn.Module, stages: tuple[Any, ...], injected: _InjectedBlocks | None
) -> dict[str, StageTarget]:
    """Where each of ``stages`` goes, each place once (in this call and among the blocks already there)."""
    dicts = feature_dicts(model, required=False)
    targets: dict[str, StageTarget] = {}
    for stage in stages:
        target = resolve_stage(model, stage, dicts)
        same_place = any((t.module, t.pre) == (target.module, target.pre) for t in targets.values())
        if (
            target.name in targets
            or same_place
            or (injected is not None and _stage_key(target.name) in injected)
        ):
            raise ValueError(f"stage {stage!r} ({target.name!r}) is injected twice; stages={list(stages)!r}")
        targets[target.name] = target
    return targets


def _attach(
    model: nn.Module,
    injected: _InjectedBlocks | None,
    targets: Mapping[str, StageTarget],
    blocks: Mapping[str, ClipBlock],
) -> None:
    """Add ``blocks`` to ``model.lstrl`` and hook each on its stage (nothing here can fail)."""
    if injected is None:
        injected = _InjectedBlocks()
        setattr(model, BLOCKS_ATTR, injected)
    for name, block in blocks.items():
        target = targets[name]
        injected[_stage_key(name)] = block
        hook = _StageHook(block, target.pre, injected.clip_length)
        # prepend: run before any hook already there (timm's FeatureHookNet collects features with hooks)
        if target.pre:
            target.module.register_forward_pre_hook(hook, prepend=True)
        else:
            target.module.register_forward_hook(hook, prepend=True)


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

    :func:`inject_blocks` with LSTRL's block: everything said there holds (stages, the probe forward,
    ``layout``, wrapped models, the model left unchanged on a refusal). With ``zero_init`` (default), the
    injected model computes what the plain one did (MAE exactly, BME to within ``1e-6``) until training
    moves the blocks. ``torch.compile``, ``torch.jit.trace`` and ``torch.onnx.export`` work on the injected
    model; ``torch.jit.script`` does not (it refuses with this advice).

    Args:
        model: any ``nn.Module`` (a compiled module is injected through ``model._orig_mod``).
        stages: ``feature_info`` indices (timm models) or module names (see :func:`inject_blocks`).
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
        TypeError: as :func:`inject_blocks`, or block arguments of the wrong type (a flag not a bool, kwargs
            not a dict; see :class:`~lstrl_layers.blocks.LSTRLArgs`).
        ValueError: as :func:`inject_blocks`, or block arguments :class:`~lstrl_layers.blocks.LSTRLArgs`
            refuses (kwargs of a branch that is off, no branch). The model is left unchanged.

    Example:
        >>> model = inject_lstrl(timm.create_model("resnet50"), stages=[2, 3], num_frames=8)
        >>> model.forward_features(torch.randn(2 * 8, 3, 256, 128)).shape
        torch.Size([16, 2048, 8, 4])
    """
    args = LSTRLArgs(mae, bme, zero_init, mae_kwargs, bme_kwargs, layout).require_branch("inject_lstrl")
    return inject_blocks(model, stages, args.build, num_frames, layout, example_input, input_size)


def _check_same_num_frames(model: nn.Module, num_frames: int) -> None:
    """Refuse to add blocks at another ``T`` than the blocks (``ClipBlock``) already in ``model``."""
    blocks = {name: m for name, m in model.named_modules() if isinstance(m, ClipBlock)}
    outermost = {n: m for n, m in blocks.items() if not any(n.startswith(f"{o}.") for o in blocks)}
    differing = {name: m.num_frames for name, m in outermost.items() if m.num_frames != num_frames}
    if differing:
        listed = ", ".join(f"{name} (num_frames={t})" for name, t in differing.items())
        raise ValueError(
            f"num_frames={num_frames} differs from the blocks already in {type(model).__name__}: "
            f"{listed}. All blocks of a model split the batch into the same clips: inject with the same "
            f"num_frames, or call set_num_frames(model, {num_frames}) first"
        )


def set_num_frames(model: nn.Module, num_frames: int) -> nn.Module:
    """Set ``T`` (frames per clip) on every block (``ClipBlock``) in ``model``, e.g. for longer test clips.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``num_frames`` not an int.
        ValueError: ``num_frames < 1``, or ``model`` holds no block.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module holding blocks (ClipBlock), got {got(model)}")
    check_int("num_frames", num_frames)
    blocks = [m for m in model.modules() if isinstance(m, ClipBlock)]
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} holds no LSTRL block (MAE, BME, LSTRLBlock) or other ClipBlock to set "
            f"num_frames on"
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
        model: a model :func:`inject_blocks` or :func:`inject_lstrl` injected into (a model without injected
            blocks is left alone).
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
