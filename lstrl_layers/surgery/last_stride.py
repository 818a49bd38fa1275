"""The ReID "last stride = 1": the last downsampling of a CNN removed, so its last stage keeps twice the size.

On timm models the layers are found from ``feature_info`` (those between its last two points); on any other
model, by one probe forward (the stride-2 layers that give the network's last, smallest resolution).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

from .feature_info import feature_dicts
from .probe import probe_input, run_probe
from .stages import resolve_stage

_STRIDE_TWO = (2, (2, 2))


def set_last_stride_one(model: nn.Module, example_input: Tensor | None = None) -> Callable[[], None]:
    """Make the last stage of ``model`` keep its input resolution, in place.

    Stride-2 convolutions and pooling whose padding keeps the size at stride 1 get stride 1 (no dilation, as
    in BoT's and LSTRL's ResNet-50); stride-2 pooling that only downsamples (kernel == stride == 2, e.g.
    ResNet-D shortcuts, DenseNet transitions) becomes an identity. Patchify convolutions (kernel == stride ==
    2, ConvNeXt) cannot keep their receptive field at stride 1 and are refused.

    Which layers: on a timm model, those that run after the second-to-last ``feature_info`` point and up to
    the end of the last stage (in registration order, which is execution order in timm's CNNs). On any other
    model, one probe forward (``example_input``, or the input :func:`probe_input` infers) finds the stride-2
    layers whose output has the size of the last stride-2 layer that runs: ResNet's ``layer4.0.conv2`` and
    ``layer4.0.downsample.0``.

    Returns:
        A function that undoes the change (for a caller that fails later and leaves the model as it was).

    Raises:
        ValueError: a stride-2 layer it cannot change, none found, or a model that fails once changed; the
            model is left unchanged.
    """
    inputs = probe_input(model, example_input)
    dicts = feature_dicts(model, required=False)
    if dicts is not None:
        if len(dicts) < 2 or dicts[-1].get("reduction") == dicts[-2].get("reduction"):
            return lambda: None  # the last stage does not downsample
        names = _between_last_feature_points(model, dicts)
        where = f"up to the last stage {dicts[-1]['module']!r}"
    else:
        names = _last_downsampling(model, inputs)
        where = "in the model"
    named = dict(model.named_modules())
    changes = [(name, _change(name, named[name])) for name in names]
    if not changes:
        raise ValueError(f"last_stride=1: found no stride-2 layer {where}; use last_stride=2")
    done: list[tuple[str, nn.Module, Any]] = []  # (name, module, its stride) in the order changed
    for name, change in changes:
        module = named[name]
        done.append((name, module, module.stride))
        if change == "identity":
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, nn.Identity())
        else:
            module.stride = (1, 1) if isinstance(module, nn.Conv2d) else 1

    def undo_all() -> None:
        for name, module, stride in reversed(done):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module)  # back in place of an Identity
            module.stride = stride

    changed = [name for name, _ in changes]
    try:
        run_probe(model, inputs, f"after last_stride=1 removed the stride of {changed} (use last_stride=2)")
    except ValueError:
        undo_all()
        raise
    return undo_all


def _between_last_feature_points(model: nn.Module, dicts: list[dict[str, Any]]) -> list[str]:
    """Leaf layers with stride 2 between the last two ``feature_info`` points (registration order)."""
    last = resolve_stage(model, len(dicts) - 1, dicts).module
    previous = resolve_stage(model, len(dicts) - 2, dicts).module
    named = list(model.named_modules())
    previous_end, last_end = (_last_index_within(named, stage) for stage in (previous, last))
    return [name for name, module in named[previous_end + 1 : last_end + 1] if _is_strided_leaf(module)]


def _last_downsampling(model: nn.Module, inputs: Tensor) -> list[str]:
    """Stride-2 leaf layers whose output has the size of the last one that runs (one probe forward)."""
    sizes: list[tuple[str, tuple[int, ...]]] = []  # in execution order
    handles = []
    for name, module in model.named_modules():
        if _is_strided_leaf(module):

            def record(_module: nn.Module, _args: Any, output: Any, _name: str = name) -> None:
                if isinstance(output, Tensor):
                    sizes.append((_name, tuple(output.shape[-2:])))

            handles.append(module.register_forward_hook(record))
    try:
        run_probe(model, inputs, "to find its last stride-2 layers (last_stride=1)")
    finally:
        for handle in handles:
            handle.remove()
    if not sizes:
        return []
    smallest = sizes[-1][1]
    return list(dict.fromkeys(name for name, size in sizes if size == smallest))


def _is_strided_leaf(module: nn.Module) -> bool:
    # blocks store their stride too: only the layers that apply it (no children) are changed
    return getattr(module, "stride", None) in _STRIDE_TWO and next(module.children(), None) is None


def _change(name: str, module: nn.Module) -> str:
    """How ``module`` loses its stride: ``"stride"`` (stride 1, same size) or ``"identity"`` (a 2x2 pool)."""
    kernel = getattr(module, "kernel_size", None)
    if isinstance(module, (nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d)) and _keeps_size_at_stride_one(module):
        return "stride"
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)) and kernel in _STRIDE_TWO:
        return "identity"
    raise ValueError(
        f"last_stride=1 does not know how to remove the stride of {name} "
        f"({type(module).__name__}, kernel {kernel}); use last_stride=2 for this model"
    )


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
