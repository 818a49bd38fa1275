"""MAE against the paper's Eq. 1-3, written out naively, and its own properties."""

from __future__ import annotations

import pytest
import torch
from _tiny import randomized
from einops import rearrange
from references import naive_mae

from lstrl_layers import MAE


@pytest.mark.parametrize(
    "num_frames, height, width, granularities, scale",
    [
        (3, 2, 2, (1, 2, 3, 4), 1.0),
        (2, 3, 1, (2, 4), 0.5),
        (1, 1, 1, (1, 3), 1.0),
    ],
)
@pytest.mark.parametrize("return_maps", [False, True])
def test_matches_the_equations_written_out(
    num_frames: int,
    height: int,
    width: int,
    granularities: tuple[int, ...],
    scale: float,
    return_maps: bool,
    device: torch.device,
) -> None:
    torch.manual_seed(0)
    mae = randomized(MAE(8, num_frames, granularities=granularities, scale=scale)).to(device, torch.float64)
    clips = torch.randn(2, num_frames, 8, height, width, dtype=torch.float64, device=device)
    with torch.no_grad():
        out = mae(clips, return_maps=True)[0] if return_maps else mae(clips)
        expected = torch.stack([naive_mae(mae, clip) for clip in clips])
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("granularities", [(1, 2, 3, 4), (1,), (2, 3), (4,)])
@pytest.mark.parametrize("num_frames, height, width", [(1, 1, 1), (2, 3, 2), (4, 8, 4)])
def test_efficient_path_equals_maps_path_fp32(
    granularities: tuple[int, ...], num_frames: int, height: int, width: int, device: torch.device
) -> None:
    torch.manual_seed(0)
    mae = randomized(MAE(32, num_frames, granularities=granularities)).to(device)
    x = torch.randn(3 * num_frames, 32, height, width, device=device)
    y_maps, maps = mae(x, return_maps=True)
    torch.testing.assert_close(mae(x), y_maps, rtol=1e-5, atol=1e-5)  # float32 round-off, any kernel
    assert sorted(maps) == [f"D{i}" for i in granularities]


def test_maps_shapes_rows_and_granularity_relations(device: torch.device) -> None:
    torch.manual_seed(0)
    mae = randomized(MAE(16, 3)).to(device)
    _, maps = mae(torch.randn(2, 3, 16, 4, 2, device=device), return_maps=True)
    thw, hw = 3 * 4 * 2, 4 * 2
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "D1": (2, thw, thw),
        "D2": (2, hw, thw),
        "D3": (2, 3, thw),
        "D4": (2, 1, thw),
    }
    for d in maps.values():
        torch.testing.assert_close(d.sum(-1), torch.ones(d.shape[:-1], device=device))
        assert (d >= 0).all()
    # with one frame the temporal average X2 is X1 itself, and with 1x1 maps the spatial average X3 is X1
    _, one_frame = mae(torch.randn(2, 1, 16, 4, 2, device=device), return_maps=True)
    torch.testing.assert_close(one_frame["D2"], one_frame["D1"])
    _, one_pixel = mae(torch.randn(2, 3, 16, 1, 1, device=device), return_maps=True)
    torch.testing.assert_close(one_pixel["D3"], one_pixel["D1"])


@pytest.mark.parametrize("return_maps", [False, True])
def test_equivariant_to_permuting_frames_within_a_clip(return_maps: bool, device: torch.device) -> None:
    torch.manual_seed(0)
    mae = randomized(MAE(16, 5)).to(device)
    clips = torch.randn(2, 5, 16, 3, 2, device=device)
    order = torch.tensor([3, 0, 4, 1, 2], device=device)
    run = (lambda x: mae(x, return_maps=True)[0]) if return_maps else mae
    torch.testing.assert_close(run(clips[:, order]), run(clips)[:, order], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("return_maps", [False, True])
def test_fp16_autocast_with_logits_beyond_fp16_range(return_maps: bool, device: torch.device) -> None:
    """X1 holds +-200 in 4 channels: the logits X1 X1^T reach 160000 > 65504, the fp16 maximum."""
    torch.manual_seed(0)
    mae = randomized(MAE(16, 2))
    with torch.no_grad():
        mae.omega1.weight.zero_()
        mae.omega1.bias.zero_()
        mae.omega1.weight[:, :4, 0, 0] = torch.eye(4)  # X1 = the first 4 input channels
    mae.to(device)
    x = torch.randn(4, 16, 3, 3, device=device).sign() * 200
    x1 = rearrange(x[:, :4], "(b t) c h w -> b (t h w) c", t=2)
    assert (x1 @ x1.transpose(1, 2)).max() > torch.finfo(torch.float16).max
    with torch.autocast(device.type, dtype=torch.float16):
        out = mae(x, return_maps=True)[0] if return_maps else mae(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), mae(x), rtol=1e-2, atol=1e-2 * mae(x).abs().max().item())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_paths_agree_and_train(dtype: torch.dtype, device: torch.device) -> None:
    """Under autocast the fused path (float32 attention on the CPU) and the float32 paper-literal path agree
    to the precision of their half-precision inputs and pass finite gradients."""
    torch.manual_seed(0)
    mae = randomized(MAE(16, 3)).to(device)
    x = torch.randn(6, 16, 4, 2, device=device, requires_grad=True)
    with torch.autocast(device.type, dtype=dtype):
        fused, literal = mae(x), mae(x, return_maps=True)[0]
    torch.testing.assert_close(
        fused.float(), literal.float(), rtol=2e-2, atol=2e-2 * literal.abs().max().item()
    )
    fused.float().square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in mae.parameters())


def test_parameter_counts_of_table_3() -> None:
    """Two MAEs after resnet50's layer2 (512 ch) and layer3 (1024 ch): 24.79M -> 26.43M, i.e. +1.64M."""
    added = sum(p.numel() for c in (512, 1024) for p in MAE(c, 8).parameters())
    assert added == sum(c * c // 4 + c // 4 + c * c + c for c in (512, 1024)) == 1_640_320
    assert round((24_792_128 + added) / 1e6, 2) == 26.43


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(granularities=()), ValueError, "granularities must be a non-empty subset"),
        (dict(granularities=(1, 1)), ValueError, r"got \(1, 1\)"),
        (dict(granularities=(0, 5)), ValueError, r"got \(0, 5\)"),
        (dict(granularities=(True,)), TypeError, r"\(ints\), got \(True,\)"),
        (dict(granularities=(1.0, 2)), TypeError, r"\(ints\), got \(1.0, 2\)"),
        (dict(granularities=1), TypeError, r"got 1 \(int\)"),
        (dict(granularities="12"), TypeError, r"got '12' \(str\)"),
        (dict(reduction=0), ValueError, "reduction must be an int >= 1, got 0"),
        (dict(reduction=2.0), TypeError, r"reduction must be an int >= 1, got 2.0 \(float\)"),
        (dict(reduction=32), ValueError, "reduction must be <= channels"),
        (dict(scale=0.0), ValueError, "scale must be a positive, finite float, got 0.0"),
        (dict(scale=-1.0), ValueError, "got -1.0"),
        (dict(scale=float("inf")), ValueError, "got inf"),
        (dict(scale=float("nan")), ValueError, "got nan"),
        (dict(scale="1"), TypeError, r"got '1' \(str\)"),
        (dict(zero_init="no"), TypeError, r"zero_init must be True or False, got 'no' \(str\)"),
        (dict(channels=0), ValueError, "channels must be an int >= 1, got 0"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    arguments = dict(channels=16, num_frames=2) | kwargs
    with pytest.raises(error, match=match):
        MAE(**arguments)


def test_granularities_accept_any_integer_iterable() -> None:
    assert MAE(16, 2, granularities=[4, 2]).granularities == (2, 4)
    assert MAE(16, 2, granularities=range(1, 3)).granularities == (1, 2)
