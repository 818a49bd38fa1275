"""MAC counting (``lstrl_layers.flops``) against counts by hand (scripts: test_benchmarks.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lstrl_layers import BME, MAE, VideoReIDNet
from lstrl_layers.flops import Convention, count_macs, flop_counter_mode

CONVENTIONS: tuple[Convention, ...] = ("paper", "full")
aten = torch.ops.aten


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_1x1_conv_by_hand(convention: Convention) -> None:
    conv = nn.Conv2d(8, 4, kernel_size=1)  # the bias is not counted
    assert count_macs(conv, torch.randn(2, 8, 5, 3), convention=convention) == 2 * 5 * 3 * 8 * 4


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(
    ("layer", "shape", "expected"),
    [
        # grouped, strided 3x3: output (2, 6, 4, 3), each output sums 8/2 channels x 9 taps
        (nn.Conv2d(8, 6, 3, stride=2, padding=1, groups=2), (2, 8, 7, 5), 2 * 6 * 4 * 3 * 4 * 9),
        # transposed: every input position scatters through 6 output channels x 2x2 taps
        (nn.ConvTranspose2d(4, 6, 2, stride=2), (1, 4, 3, 3), 1 * 4 * 3 * 3 * 6 * 4),
        (nn.Conv1d(3, 5, 3, bias=False), (2, 3, 10), 2 * 5 * 8 * 3 * 3),
        (nn.Linear(10, 7), (3, 5, 10), 3 * 5 * 7 * 10),
        (nn.BatchNorm2d(4), (2, 4, 3, 3), 4 * 72),  # 2 per element, 2 more for the affine transform
        (nn.BatchNorm2d(4, affine=False), (2, 4, 3, 3), 2 * 72),
        (nn.LayerNorm(10), (3, 10), 4 * 30),
        (nn.GroupNorm(2, 4), (2, 4, 3, 3), 4 * 72),
        (nn.AdaptiveAvgPool2d(1), (2, 4, 6, 4), (24 + 1) * 8),  # window + 1 per output
        (nn.AvgPool2d(2), (2, 4, 6, 4), 2 * 4 * 3 * 2),  # 1 per output
        (nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Dropout()), (2, 4, 6, 4), 0),
    ],
)
def test_layers_by_hand(
    convention: Convention, layer: nn.Module, shape: tuple[int, ...], expected: int
) -> None:
    assert count_macs(layer, torch.randn(shape), convention=convention) == expected


class _WithMaps(nn.Module):
    def __init__(self, mae: MAE) -> None:
        super().__init__()
        self.mae = mae

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mae(x, return_maps=True)[0]


@pytest.mark.parametrize("return_maps", [False, True])
def test_mae_full_count_is_paper_count_plus_attention(return_maps: bool) -> None:
    clips, frames, channels, height, width = 2, 3, 16, 4, 2
    mae = MAE(channels, frames)
    model = _WithMaps(mae) if return_maps else mae
    x = torch.randn(clips * frames, channels, height, width)
    positions, reduced = frames * height * width, channels // 4
    omega1 = clips * positions * channels * reduced  # ω1: C -> C/4 at every position
    omega2 = clips * positions * 4 * reduced * channels  # ω2: [A1..A4] -> C
    assert count_macs(model, x, convention="paper") == omega1 + omega2
    # Eq. 1-2: X_i X1^T and D^i X1 for the THW + HW + T + 1 query rows against the THW keys, C/4 deep each
    queries = positions + height * width + frames + 1
    attention = clips * (queries * positions * reduced + queries * positions * reduced)
    assert count_macs(model, x, convention="full") == omega1 + omega2 + attention


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_bme_count_by_hand(convention: Convention) -> None:
    clips, frames, channels, height, width = 2, 3, 8, 4, 2
    x = torch.randn(clips * frames, channels, height, width)
    n, half, positions = clips * frames, channels // 2, height * width
    phi = n * channels * half  # on the 1x1 pooled frame
    psi = n * positions * channels * half  # once per frame
    upsilon = n * positions * 2 * half * channels
    for antisymmetric in (False, True):  # δ runs folded into υ: no multiply-add of its own
        bme = BME(channels, frames, antisymmetric=antisymmetric)
        assert count_macs(bme, x, convention=convention) == phi + psi + upsilon


def test_cpu_sdpa_forward_and_backward_are_counted() -> None:
    batch, heads, length_q, length_k, embed = 2, 3, 10, 7, 8
    q = torch.randn(batch, heads, length_q, embed, requires_grad=True)
    k, v = (torch.randn(batch, heads, length_k, embed, requires_grad=True) for _ in range(2))
    with flop_counter_mode() as counter:
        F.scaled_dot_product_attention(q, k, v).sum().backward()
    counts = counter.get_flop_counts()["Global"]
    products = batch * heads * length_q * length_k * embed  # MACs of one Lq x Lk x E product
    if aten._scaled_dot_product_flash_attention_for_cpu in counts:
        assert counts[aten._scaled_dot_product_flash_attention_for_cpu] == 2 * 2 * products  # QK^T, PV
        # backward: QK^T recomputed, dP, dV, dQ, dK
        assert counts[aten._scaled_dot_product_flash_attention_for_cpu_backward] == 2 * 5 * products
    assert counter.get_total_flops() == 2 * 7 * products  # whichever kernel ran, math or flash


def test_cpu_sdpa_formulas_agree_with_torchs_cuda_formulas() -> None:
    registry = flop_counter_mode().flop_registry
    q, k, v = (torch.empty(2, 3, n, 8, device="meta") for n in (10, 7, 7))
    grad_out = torch.empty(2, 3, 10, 8, device="meta")
    cpu, cuda = aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_efficient_attention
    assert registry[cpu](q, k, v) == registry[cuda](q, k, v, None, False)
    cpu_bwd = aten._scaled_dot_product_flash_attention_for_cpu_backward
    cuda_bwd = aten._scaled_dot_product_efficient_attention_backward
    assert registry[cpu_bwd](grad_out, q, k, v) == registry[cuda_bwd](grad_out, q, k, v)


def test_cuda_sdpa_kernels_have_formulas() -> None:
    """The CUDA kernels (flash, memory-efficient, cuDNN where this torch has it) are counted, fwd and bwd."""
    names = [
        f"_scaled_dot_product_{kernel}_attention{suffix}"
        for kernel in ("flash", "efficient", "cudnn")
        for suffix in ("", "_backward")
    ]
    present = [name for name in names if hasattr(aten, name)]
    assert set(names[:4]) <= set(present)  # flash and memory-efficient exist in every supported torch
    registry = flop_counter_mode().flop_registry
    assert [name for name in present if getattr(aten, name) not in registry] == []


@pytest.mark.parametrize(
    ("model", "convention", "error", "match"),
    [
        (nn.Linear(2, 2), "thop", ValueError, r"convention must be one of \('paper', 'full'\), got 'thop'$"),
        (nn.Linear(2, 2), None, TypeError, r"convention must be one of .* got None \(NoneType\)$"),
        (lambda x: x, "paper", TypeError, r"model must be an nn.Module, got <function .* \(function\)$"),
    ],
)
def test_bad_arguments(model: object, convention: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        count_macs(model, torch.randn(1, 2), convention=convention)  # type: ignore[arg-type]


def test_hooks_are_removed() -> None:
    conv = nn.Conv2d(2, 2, 1)
    count_macs(conv, torch.randn(1, 2, 3, 3), convention="paper")
    assert not conv._forward_hooks


@pytest.mark.parametrize(
    ("blocks", "paper_gmacs"), [(dict(mae=False, bme=False), 4.09), (dict(bme=False), 4.42)]
)
def test_table3_paper_convention_per_frame(blocks: dict, paper_gmacs: float) -> None:
    """The paper's Table 3 FLOPs for Baseline and +MAE (per frame; the convolutions do not depend on T)."""
    net = VideoReIDNet("resnet50", num_classes=625, stages=(2, 3), last_stride=1, **blocks).eval()
    macs = count_macs(net, torch.randn(1, 1, 3, 256, 128), convention="paper")
    assert round(macs / 1e9, 2) == paper_gmacs
