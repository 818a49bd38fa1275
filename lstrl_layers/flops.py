r"""Multiply-accumulate (MAC) counts of a forward pass, in the paper's convention or completely.

Two conventions, because the paper's figures (Table 3: 4.09 / 4.42 / 4.96 "FLOPs (G)") follow the
convention of ``thop``, which only sees layers (modules), never the matrix products written as functions
inside a module's ``forward``, such as MAE's attention:

- ``"paper"``: per-layer rules applied with forward hooks, as thop 0.1.1 does (our own code, no thop needed).
  Convolutions (any dimension, grouped, transposed): one MAC per weight per output position; the bias is
  not counted. ``nn.Linear``: ``in_features`` per output element, bias not counted. Norm layers (batch,
  instance, layer and group norm): 2 per element (subtract the mean, divide by the std), 4 with an affine
  transform. Average pooling: 1 per output element; adaptive average pooling: the pooled window plus 1 per
  output element. Everything else counts 0: activations, max pooling, element-wise arithmetic, and every
  operation called as a function, attention matrix products included. Layers are matched by type,
  subclasses included. On timm's ResNets this gives thop's count exactly (ResNet-50 at 256x128 with last
  stride 1: 4.09 G per frame, the paper's Baseline). Where we differ: thop also counts softmax, upsampling
  and recurrent modules (not used by this library's models); it misses group norm and norm layers that
  timm subclasses or extends (``BatchNormAct2d``, ``LayerNorm2d``), and counts transposed convolutions per
  output position; we count those as described here.
- ``"full"``: every matrix product that runs, wherever it is written, counted by PyTorch's
  :class:`~torch.utils.flop_counter.FlopCounterMode` (convolutions, linear layers, ``matmul``/``bmm``/
  ``einsum``, ``scaled_dot_product_attention``; FLOPs / 2 = MACs), plus the norm and pooling rules above.
  So ``"full"`` = ``"paper"`` + the matrix products the layer rules cannot see. Element-wise operations
  (softmax, residual additions, BME's product) count 0 in both conventions.

``FlopCounterMode`` counts nothing for the CPU flash-attention kernel of
:func:`torch.nn.functional.scaled_dot_product_attention`
(``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward) on the PyTorch versions this was
written for, which would make MAE's attention free on CPU. :func:`flop_counter_mode` (used by ``"full"``)
adds formulas for both through ``FlopCounterMode``'s ``custom_mapping``, so nothing global is changed, and
only where PyTorch has no formula of its own. The CUDA kernels (flash, memory-efficient, cuDNN) are counted
by PyTorch's own formulas.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, get_args

import torch
from torch import Tensor, nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from ._checks import got

__all__ = ["CONVENTIONS", "Convention", "count_macs", "flop_counter_mode"]

Convention = Literal["paper", "full"]
CONVENTIONS: tuple[Convention, ...] = get_args(Convention)
"""The counting conventions of :func:`count_macs`, by name."""


def _conv_macs(module: nn.modules.conv._ConvNd, inputs: tuple[Any, ...], output: Tensor) -> int:
    kernel = math.prod(module.kernel_size)
    if module.transposed:  # every input position scatters through the whole kernel
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    return output.numel() * (module.in_channels // module.groups) * kernel


def _linear_macs(module: nn.Linear, inputs: tuple[Any, ...], output: Tensor) -> int:
    return output.numel() * module.in_features


def _norm_macs(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> int:
    affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
    return output.numel() * (4 if affine else 2)


def _avg_pool_macs(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> int:
    return output.numel()


def _adaptive_avg_pool_macs(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> int:
    dims = next(d for d, cls in _ADAPTIVE_AVG_POOLS.items() if isinstance(module, cls))
    window = math.prod(i / o for i, o in zip(inputs[0].shape[-dims:], output.shape[-dims:]))
    return int((window + 1) * output.numel())


_ADAPTIVE_AVG_POOLS = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}

# (layer types, rule, whether the layer is a matrix product that FlopCounterMode counts by itself)
_RULES: tuple[tuple[tuple[type[nn.Module], ...], Callable[..., int], bool], ...] = (
    ((nn.modules.conv._ConvNd,), _conv_macs, True),
    ((nn.Linear,), _linear_macs, True),
    ((nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm), _norm_macs, False),
    ((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), _avg_pool_macs, False),
    (tuple(_ADAPTIVE_AVG_POOLS.values()), _adaptive_avg_pool_macs, False),
)


def _sdpa_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    """Forward FLOPs of softmax(Q K^T) V: S = Q K^T (Lq x Lk x E) and S V (Lq x Lk x Ev), 2 per MAC.

    Leading dims (batch, heads) come from the query (key/value heads are broadcast); a mask or causality is
    not discounted, like PyTorch's formulas for the CUDA kernels.
    """
    batch = math.prod(query_shape[:-2])
    length_q, embed = query_shape[-2:]
    length_k, embed_v = value_shape[-2:]
    return 2 * batch * length_q * length_k * (embed + embed_v)


def _sdpa_backward_flops(
    grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
) -> int:
    """Backward FLOPs of a flash-style kernel: S = Q K^T recomputed (E), dP = dO V^T (Ev), dV = P^T dO (Ev),
    dQ = dS K (E), dK = dS^T Q (E), each Lq x Lk x (its inner size) MACs, 2 FLOPs each."""
    batch = math.prod(query_shape[:-2])
    length_q, embed = query_shape[-2:]
    length_k, embed_v = value_shape[-2:]
    return 2 * batch * length_q * length_k * (3 * embed + 2 * embed_v)


def _missing_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas for the SDPA kernels PyTorch's flop counter has none for (on this PyTorch)."""
    known = getattr(flop_counter, "flop_registry", {})
    mapping = {}
    for name, formula in (
        ("_scaled_dot_product_flash_attention_for_cpu", _sdpa_flops),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_backward_flops),
    ):
        if hasattr(torch.ops.aten, name) and getattr(torch.ops.aten, name) not in known:
            mapping[getattr(torch.ops.aten, name)] = formula
    return mapping


_EXTRA_FORMULAS = _missing_formulas()


def flop_counter_mode() -> FlopCounterMode:
    """A :class:`~torch.utils.flop_counter.FlopCounterMode` (``display=False``) that also counts SDPA on CPU.

    PyTorch's counter has no formula for ``aten._scaled_dot_product_flash_attention_for_cpu`` (nor its
    backward), so ``scaled_dot_product_attention`` on CPU counts 0 with it. This one adds both, through
    ``custom_mapping`` (no global registration). Use it to count backward passes, which :func:`count_macs`
    does not::

        with flop_counter_mode() as counter:
            model(x).sum().backward()
        macs = counter.get_total_flops() // 2
    """
    return FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)


def count_macs(model: nn.Module, *inputs: Any, convention: Convention) -> int:
    r"""Multiply-accumulates of one forward pass ``model(*inputs)``.

    The pass runs under :func:`torch.no_grad` in the model's current mode (call ``model.eval()`` to count
    inference; in train mode BatchNorm updates its running statistics as in any forward pass).

    Args:
        model: any module; its layers are found by type (subclasses included, e.g. timm's ``BatchNormAct2d``
            counts as a batch norm), and a matched layer's children are not visited.
        *inputs: the positional arguments of ``model``.
        convention: ``"paper"``, the layer-level convention of thop behind the paper's Table 3 (convolutions,
            linear layers, norms and average pooling; matrix products inside a ``forward``, such as MAE's
            attention, are not seen); or ``"full"``, every matrix product that runs (PyTorch's
            ``FlopCounterMode``, with CPU SDPA counted, see :func:`flop_counter_mode`) plus the same norm and
            pooling rules. The module docstring gives every rule.

    Returns:
        The MAC count for the whole batch in ``inputs`` (divide by the number of frames for "per frame").

    Raises:
        TypeError: ``model`` not an ``nn.Module``, ``convention`` not a str.
        ValueError: ``convention`` not one of :data:`CONVENTIONS`.

    Example:
        >>> count_macs(nn.Conv2d(8, 4, kernel_size=1), torch.randn(2, 8, 5, 3), convention="paper")
        960
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {got(model)}")
    if not isinstance(convention, str):
        raise TypeError(f"convention must be one of {CONVENTIONS}, got {got(convention)}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    counts: list[int] = []
    handles = []

    def hook(rule: Callable[..., int]) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        return lambda module, args, output: counts.append(rule(module, args, output))

    def visit(module: nn.Module) -> None:
        for types, rule, is_matmul in _RULES:
            if isinstance(module, types):
                if not (convention == "full" and is_matmul):  # "full": FlopCounterMode counts these
                    handles.append(module.register_forward_hook(hook(rule)))
                return  # a matched layer's children belong to it
        for child in module.children():
            visit(child)

    visit(model)
    try:
        with torch.no_grad():
            if convention == "paper":
                model(*inputs)
                return sum(counts)
            with flop_counter_mode() as counter:
                model(*inputs)
            return sum(counts) + counter.get_total_flops() // 2
    finally:
        for handle in handles:
            handle.remove()
