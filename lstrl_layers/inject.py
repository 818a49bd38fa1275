"""Insert LSTRL blocks into a timm CNN at the stages its ``feature_info`` names, without renaming anything."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor, nn

from ._checks import check_bool, check_int, check_optional_mapping, check_stages, got
from ._clip_block import TORCHSCRIPT_UNSUPPORTED, _ClipBlock
from ._timm import Stage, feature_dicts, resolve_stage, run_dummy_frame
from .block import LSTRLBlock

__all__ = ["BLOCKS_ATTR", "Stage", "inject_lstrl", "set_num_frames"]

BLOCKS_ATTR = "lstrl"  # the one attribute inject_lstrl adds to a model: a ModuleDict of the injected blocks


class _InjectedBlocks(nn.ModuleDict):
    """Holds the injected blocks (``model.lstrl[<stage key>]``); they run from hooks on their stages.

    It is an identity if called, because timm's ``features_only`` wrappers (and ``nn.Sequential`` roots) call
    every child of the root in order; the blocks themselves run from the hooks, never from here.
    """

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

    def __init__(self, block: LSTRLBlock, pre: bool) -> None:
        self.block = block
        self.pre = pre

    def __call__(self, module: nn.Module, inputs: tuple[Any, ...], *output: Any) -> Any:
        if self.pre:
            return (self.block(inputs[0]), *inputs[1:])
        return self.block(output[0])


def _stage_key(module_name: str) -> str:
    return module_name.replace(".", "_")  # ModuleDict keys cannot hold dots


def _probe_stage_outputs(model: nn.Module, targets: Mapping[str, tuple[nn.Module, bool]]) -> dict[str, Any]:
    """Run one dummy frame through ``model`` and return what each target stage feeds its block."""
    captured: dict[str, Any] = {}
    handles = []
    for name, (module, pre) in targets.items():

        def capture(_module: nn.Module, *args: Any, _name: str = name, _pre: bool = pre) -> None:
            captured[_name] = args[0][0] if _pre else args[1]

        hook = module.register_forward_pre_hook(capture) if pre else module.register_forward_hook(capture)
        handles.append(hook)
    try:
        run_dummy_frame(model, "to find the output of each stage to inject")
    finally:
        for hook in handles:
            hook.remove()
    return captured


def inject_lstrl(
    model: nn.Module,
    stages: Iterable[Stage],
    num_frames: int = 8,
    mae: bool = True,
    bme: bool = True,
    zero_init: bool = True,
    mae_kwargs: Mapping[str, Any] | None = None,
    bme_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Insert an :class:`LSTRLBlock` after each of ``stages`` of a timm CNN, in place.

    Each block runs on the stage's output, at the place timm's ``feature_info`` points to (the tensor a
    ``features_only`` model returns for that stage; a forward-pre hook where ``feature_info`` says
    ``hook_type="forward_pre"``). Nothing in the model is renamed or replaced: the blocks live in one new
    attribute, ``model.lstrl`` (keyed by the stage's module name with ``.`` as ``_``), and run from forward
    hooks. A checkpoint of the plain model therefore loads with ``strict=False`` with only the blocks' keys
    missing, and, with ``zero_init`` (default), the injected model computes exactly what the plain one did
    until training moves the blocks.

    The model then expects frames ``(B*T, C, H, W)`` with the ``T = num_frames`` frames of each clip
    contiguous; change ``T`` later with :func:`set_num_frames`. Injecting into more stages later is allowed
    with the same ``num_frames`` as the blocks already there (every block of a model splits the batch into
    the same clips).

    ``torch.compile``, ``torch.jit.trace`` and ``torch.onnx.export`` work on the injected model;
    ``torch.jit.script`` does not (it refuses with this advice).

    Args:
        model: a timm model with ``feature_info`` (plain or ``features_only=True``).
        stages: indices into ``feature_info`` (timm's ``out_indices``; resnet50: ``2`` is ``layer2``) or the
            module names it lists (``"layer2"``).
        num_frames: ``T``, frames per clip.
        mae: include the :class:`MAE` branch.
        bme: include the :class:`BME` branch.
        zero_init: identity at injection (see the blocks).
        mae_kwargs: further :class:`MAE` arguments (``reduction``, ``granularities``, ``scale``).
        bme_kwargs: further :class:`BME` arguments (``reduction``, ``directions``, ``mode``, ``edge``, ...).

    Returns:
        ``model``, with the blocks injected.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``stages`` not a list of ints / str, or an argument
            of the wrong type (``num_frames`` not an int, a flag not a bool, kwargs not a dict).
        ValueError: a stage that does not exist (the message lists the valid ones), a stage injected twice,
            blocks already in the model at another ``num_frames``, a model without ``feature_info``, or a
            stage whose output is not one ``(N, C, H, W)`` map (token sequences, lists): checked at injection
            by running one dummy frame through the model. The model is left unchanged.

    Example:
        >>> model = inject_lstrl(timm.create_model("resnet50"), stages=[2, 3], num_frames=8)
        >>> model.forward_features(torch.randn(2 * 8, 3, 256, 128)).shape
        torch.Size([16, 2048, 8, 4])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a timm model (an nn.Module with feature_info), got {got(model)}")
    stages = check_stages("stages", stages, allow_empty=False)
    check_int("num_frames", num_frames)
    for flag_name, flag in (("mae", mae), ("bme", bme), ("zero_init", zero_init)):
        check_bool(flag_name, flag)
    if not (mae or bme):
        raise ValueError("inject_lstrl needs at least one branch, got mae=False and bme=False")
    check_optional_mapping("mae_kwargs", mae_kwargs)
    check_optional_mapping("bme_kwargs", bme_kwargs)
    dicts = feature_dicts(model)
    injected = getattr(model, BLOCKS_ATTR, None)
    if injected is not None and not isinstance(injected, _InjectedBlocks):
        raise ValueError(f"{type(model).__name__} already has an attribute {BLOCKS_ATTR!r} that is not ours")
    _check_same_num_frames(model, num_frames)
    targets: dict[str, tuple[nn.Module, bool]] = {}
    for stage in stages:
        name, module, pre = resolve_stage(model, stage, dicts)
        if name in targets or (injected is not None and _stage_key(name) in injected):
            raise ValueError(f"stage {stage!r} ({name!r}) is injected twice; stages={list(stages)!r}")
        targets[name] = (module, pre)

    outputs = _probe_stage_outputs(model, targets)
    blocks: dict[str, LSTRLBlock] = {}
    for name in targets:
        out = outputs.get(name)
        if not isinstance(out, Tensor) or out.ndim != 4:
            received = (
                f"a {out.ndim}-D tensor {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
            )
            raise ValueError(
                f"stage {name!r} of {type(model).__name__} does not give one (N, C, H, W) feature map "
                f"(got {received}): LSTRL blocks need a CNN stage"
            )
        listed = next(d.get("num_chs") for d in dicts if d["module"] == name)
        if listed is not None and out.shape[1] != listed and out.shape[-1] == listed:
            raise ValueError(
                f"stage {name!r} of {type(model).__name__} gives a channels-last (N, H, W, C) map "
                f"{tuple(out.shape)} (C={listed} in feature_info): LSTRL blocks need (N, C, H, W)"
            )
        blocks[name] = LSTRLBlock(
            out.shape[1], num_frames, mae=mae, bme=bme, zero_init=zero_init,
            mae_kwargs=mae_kwargs, bme_kwargs=bme_kwargs,
        ).to(device=out.device, dtype=out.dtype)  # fmt: skip

    if injected is None:
        injected = _InjectedBlocks()
        setattr(model, BLOCKS_ATTR, injected)
    for name, block in blocks.items():
        module, pre = targets[name]
        injected[_stage_key(name)] = block
        hook = _StageHook(block, pre)
        # prepend: run before any hook already there (timm's FeatureHookNet collects features with hooks)
        if pre:
            module.register_forward_pre_hook(hook, prepend=True)
        else:
            module.register_forward_hook(hook, prepend=True)
    return model


def _check_same_num_frames(model: nn.Module, num_frames: int) -> None:
    """Refuse to add blocks at another ``T`` than the LSTRL blocks already in ``model``."""
    blocks = {name: m for name, m in model.named_modules() if isinstance(m, _ClipBlock)}
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
    blocks = [m for m in model.modules() if isinstance(m, _ClipBlock)]
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} holds no LSTRL block (MAE, BME, LSTRLBlock) to set num_frames on"
        )
    for block in blocks:
        block.num_frames = num_frames
    return model
