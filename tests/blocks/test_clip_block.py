"""Properties every LSTRL block must have: layouts, clip independence, identity init, training, bad input."""

from __future__ import annotations

import re
from contextlib import nullcontext
from typing import Callable

import numpy as np
import pytest
import torch
from einops import rearrange
from torch import nn

from lstrl_layers import BME, MAE, ClipBlock, LSTRLBlock

CHANNELS = 16
Factory = Callable[..., nn.Module]
FACTORIES: dict[str, Factory] = {
    "mae": lambda **kw: MAE(CHANNELS, **kw),
    "bme": lambda **kw: BME(CHANNELS, **kw),
    "block": lambda **kw: LSTRLBlock(CHANNELS, **kw),
}


@pytest.fixture(params=sorted(FACTORIES))
def factory(request: pytest.FixtureRequest) -> Factory:
    return FACTORIES[request.param]


def _randomize(block: nn.Module) -> nn.Module:
    """Move a zero-initialized block away from the identity, as training would."""
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return block


@pytest.mark.parametrize("num_frames, height, width", [(1, 3, 2), (2, 1, 1), (3, 4, 2)])
def test_5d_and_4d_layouts_agree(
    factory: Factory, num_frames: int, height: int, width: int, device: torch.device
) -> None:
    block = _randomize(factory(num_frames=num_frames)).to(device).eval()  # no training: T = 1 would warn
    clips = torch.randn(2, num_frames, CHANNELS, height, width, device=device)
    out5 = block(clips)
    out4 = block(rearrange(clips, "b t c h w -> (b t) c h w"))
    assert out5.shape == clips.shape
    torch.testing.assert_close(rearrange(out5, "b t c h w -> (b t) c h w"), out4)


@pytest.mark.parametrize("return_maps", [False, True])
def test_bcthw_layout_agrees_with_the_other_layouts(
    factory: Factory, return_maps: bool, device: torch.device
) -> None:
    """A 3D CNN's (B, C, T, H, W) clips give what the same clips give as frames and as (B, T, C, H, W)."""
    torch.manual_seed(0)
    block = _randomize(factory(num_frames=3)).to(device)
    video = factory(num_frames=3, layout="BCTHW").to(device)
    video.load_state_dict(block.state_dict())
    clips = torch.randn(2, CHANNELS, 3, 4, 2, device=device)  # (B, C, T, H, W)
    frames = rearrange(clips, "b c t h w -> (b t) c h w")

    def run(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return module(x, return_maps=True) if return_maps else (module(x), {})

    out, maps = run(video, clips)
    assert out.shape == clips.shape
    expected, expected_maps = run(block, frames)
    torch.testing.assert_close(rearrange(out, "b c t h w -> (b t) c h w"), expected)
    by_clips, _ = run(block, rearrange(clips, "b c t h w -> b t c h w"))
    torch.testing.assert_close(out, rearrange(by_clips, "b t c h w -> b c t h w"))
    assert maps.keys() == expected_maps.keys()
    for name in maps:
        torch.testing.assert_close(maps[name], expected_maps[name])


def test_bcthw_bad_input_names_the_layout(factory: Factory) -> None:
    block = factory(num_frames=2, layout="BCTHW")
    with pytest.raises(ValueError, match=r"got 3 channels in shape \(2, 3, 16, 4, 4\)") as info:
        block(torch.randn(2, 3, CHANNELS, 4, 4))  # (B, T, C, H, W) given to a (B, C, T, H, W) block
    assert "(B, C=16, T, H, W) (layout='BCTHW')" in str(info.value)
    with pytest.raises(ValueError, match=r"got T = 0 frames in shape \(2, 16, 0, 4, 4\)"):
        block(torch.randn(2, CHANNELS, 0, 4, 4))


@pytest.mark.parametrize("layout, error", [("bcthw", ValueError), ("NCTHW", ValueError), (5, TypeError)])
def test_bad_layout(factory: Factory, layout: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"layout must be one of \('BTCHW', 'BCTHW'\), got"):
        factory(num_frames=2, layout=layout)


def test_meta_device_build_then_reset_parameters_is_the_identity(factory: Factory) -> None:
    block = factory(num_frames=2, device="meta")
    assert all(p.is_meta for p in block.parameters())
    block = block.to_empty(device="cpu")
    block.reset_parameters()
    x = torch.randn(4, CHANNELS, 3, 2)
    torch.testing.assert_close(block(x), x, rtol=0, atol=2e-6)
    assert all(torch.isfinite(p).all() for p in block.parameters())  # no uninitialized memory left
    assert all(
        p.abs().sum() > 0 for n, p in block.named_parameters() if n.endswith(("omega1.weight", "phi.weight"))
    )


def test_dtype_argument_builds_the_parameters_in_it(factory: Factory) -> None:
    block = factory(num_frames=2, dtype=torch.float64)
    assert {p.dtype for p in block.parameters()} == {torch.float64}
    x = torch.randn(4, CHANNELS, 3, 2, dtype=torch.float64)
    assert block(x).dtype == torch.float64


def test_an_input_of_another_dtype_or_device_is_refused_up_front(factory: Factory) -> None:
    block = factory(num_frames=2)
    name = type(block).__name__
    with pytest.raises(
        TypeError,
        match=rf"^{name}'s parameters are torch.float32, got an input of torch.float64: "
        r"convert one to the other \(block.to\(torch.float64\), x.to\(torch.float32\)\)",
    ):
        block(torch.randn(4, CHANNELS, 3, 2, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts for the convolutions itself
        assert block(torch.randn(4, CHANNELS, 3, 2, dtype=torch.bfloat16)).shape == (4, CHANNELS, 3, 2)
    with pytest.raises(ValueError, match=rf"^{name}'s parameters are on meta, got an input on cpu: move one"):
        factory(num_frames=2, device="meta")(torch.randn(4, CHANNELS, 3, 2))


def test_5d_input_takes_num_frames_from_the_tensor(factory: Factory, device: torch.device) -> None:
    block = _randomize(factory(num_frames=2)).to(device)
    clips = torch.randn(2, 5, CHANNELS, 3, 2, device=device)
    out = block(clips)
    block.num_frames = 5
    torch.testing.assert_close(
        out, rearrange(block(rearrange(clips, "b t c h w -> (b t) c h w")), "(b t) c h w -> b t c h w", t=5)
    )


@pytest.mark.parametrize("return_maps", [False, True])
def test_clips_are_independent(factory: Factory, return_maps: bool, device: torch.device) -> None:
    torch.manual_seed(0)
    block = _randomize(factory(num_frames=3)).to(device)
    clips = torch.randn(3, 3, CHANNELS, 4, 2, device=device)
    changed = clips.clone()
    changed[1] = torch.randn_like(changed[1]) * 5
    out, out_changed = (block(c, return_maps=True)[0] if return_maps else block(c) for c in (clips, changed))
    torch.testing.assert_close(out[[0, 2]], out_changed[[0, 2]])
    assert not torch.allclose(out[1], out_changed[1])


def test_identity_at_init_and_trainable_from_it(factory: Factory, device: torch.device) -> None:
    torch.manual_seed(0)
    block = factory(num_frames=4).to(device)
    x = torch.randn(8, CHANNELS, 4, 3, device=device)
    # the identity, to within BME's 1e-6 (see test_bme.py); MAE exactly
    torch.testing.assert_close(block(x), x, rtol=0, atol=2e-6)
    target = torch.randn_like(x)
    optimizer = torch.optim.SGD(block.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = (block(x) - target).pow(2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert not torch.allclose(block(x), x)
    # after the first steps every parameter receives gradient (nothing is stuck behind a zero)
    block.zero_grad()
    (block(x) - target).pow(2).mean().backward()
    stuck = [n for n, p in block.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not stuck


def test_zero_init_false_is_not_identity(factory: Factory, device: torch.device) -> None:
    block = factory(num_frames=2, zero_init=False).to(device)
    x = torch.randn(4, CHANNELS, 3, 3, device=device)
    assert not torch.allclose(block(x), x)


@pytest.mark.parametrize("return_maps", [False, True])
def test_gradcheck_float64(factory: Factory, return_maps: bool, device: torch.device) -> None:
    torch.manual_seed(0)
    block = _randomize(factory(num_frames=2)).to(device, torch.float64)
    x = torch.randn(4, CHANNELS, 2, 2, dtype=torch.float64, device=device, requires_grad=True)

    def fn(inp: torch.Tensor) -> torch.Tensor:
        return block(inp, return_maps=True)[0] if return_maps else block(inp)

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((2, CHANNELS, 3), r"got a 3-D tensor of shape \(2, 16, 3\)"),
        ((1, 2, 2, CHANNELS, 3, 3), "got a 6-D tensor"),
        ((5, CHANNELS, 3, 3), "batch of 5 frames, which is not divisible by num_frames=2"),
        ((4, CHANNELS + 1, 3, 3), "got 17 channels"),
        ((2, 2, CHANNELS + 1, 3, 3), "got 17 channels"),
        ((2, 0, CHANNELS, 3, 3), "T = 0"),
    ],
)
def test_bad_input_names_the_expected_layout(factory: Factory, shape: tuple[int, ...], match: str) -> None:
    block = factory(num_frames=2)
    with pytest.raises(ValueError, match=match) as info:
        block(torch.randn(shape))
    assert "(B*T, C=16, H, W)" in str(info.value) and "(B, T, C=16, H, W)" in str(info.value)


@pytest.mark.parametrize(
    "shape", [(4, CHANNELS, 0, 3), (4, CHANNELS, 3, 0), (2, 2, CHANNELS, 0, 3), (2, 2, CHANNELS, 3, 0)]
)
def test_empty_maps_are_refused_up_front(factory: Factory, shape: tuple[int, ...]) -> None:
    block = factory(num_frames=2)
    with pytest.raises(
        ValueError, match=r"with H, W >= 1; got an empty map in shape \(" + ", ".join(map(str, shape))
    ):
        block(torch.randn(shape))


@pytest.mark.parametrize("layout", [(0, CHANNELS, 3, 2), (0, 2, CHANNELS, 3, 2)])
@pytest.mark.parametrize("return_maps", [False, True])
def test_empty_batch_gives_an_empty_output(
    factory: Factory, layout: tuple[int, ...], return_maps: bool, device: torch.device
) -> None:
    block = _randomize(factory(num_frames=2)).to(device)
    x = torch.randn(layout, device=device)
    out = block(x, return_maps=True)[0] if return_maps else block(x)
    assert out.shape == x.shape


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((4, CHANNELS, 3, 3), dtype=np.float32), "; got ndarray"),
        (torch.zeros(4, CHANNELS, 3, 3, dtype=torch.long), "in a floating-point dtype; got torch.int64"),
        (torch.zeros(4, CHANNELS, 3, 3, dtype=torch.bool), "in a floating-point dtype; got torch.bool"),
    ],
)
def test_input_of_the_wrong_type_is_a_type_error(factory: Factory, x: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        factory(num_frames=2)(x)


@pytest.mark.parametrize("return_maps", ["yes", 1, None])
def test_return_maps_must_be_a_bool(factory: Factory, return_maps: object) -> None:
    with pytest.raises(TypeError, match=f"return_maps must be True or False, got {return_maps!r}"):
        factory(num_frames=2)(torch.randn(4, CHANNELS, 3, 3), return_maps=return_maps)


@pytest.mark.parametrize("num_frames", [0, -1])
def test_num_frames_below_one(factory: Factory, num_frames: int) -> None:
    with pytest.raises(ValueError, match=f"num_frames must be an int >= 1, got {num_frames}"):
        factory(num_frames=num_frames)
    block = factory(num_frames=2)
    with pytest.raises(ValueError, match=f"got {num_frames}"):
        block.num_frames = num_frames
    assert block.num_frames == 2


@pytest.mark.parametrize("num_frames", [2.0, True, "2", None])
def test_num_frames_of_the_wrong_type(factory: Factory, num_frames: object) -> None:
    with pytest.raises(TypeError, match="num_frames must be an int >= 1"):
        factory(num_frames=num_frames)
    block = factory(num_frames=2)
    with pytest.raises(TypeError, match=re.escape(f"got {num_frames!r} ({type(num_frames).__name__})")):
        block.num_frames = num_frames


@pytest.mark.parametrize("channels, error", [(0, ValueError), (16.0, TypeError), ("16", TypeError)])
def test_bad_channels(channels: object, error: type[Exception]) -> None:
    for cls in (MAE, BME, LSTRLBlock):
        with pytest.raises(error, match=re.escape(f"channels must be an int >= 1, got {channels!r}")):
            cls(channels, 2)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_is_refused_with_the_alternatives(factory: Factory) -> None:
    block = factory(num_frames=2)
    with pytest.raises(
        NotImplementedError, match=r"TorchScript \(torch.jit.script\) is not supported"
    ) as info:
        torch.jit.script(block)
    ways = ("torch.compile", "torch.export", "torch.onnx.export", "torch.jit.trace")
    assert all(way in str(info.value) for way in ways)


# the shape checks are constants in a trace; torch.jit.trace is deprecated in recent torch but still works
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_torch_jit_trace_matches_eager(factory: Factory, device: torch.device) -> None:
    block = _randomize(factory(num_frames=2)).to(device).eval()
    x = torch.randn(4, CHANNELS, 3, 2, device=device)
    traced = torch.jit.trace(block, (x,))
    other = torch.randn(
        4, CHANNELS, 3, 2, device=device
    )  # same shape, other values: the trace is not a constant
    torch.testing.assert_close(traced(other), block(other))


@pytest.mark.parametrize(
    "dtype, magnitude", [(torch.float32, 300.0), (torch.bfloat16, 300.0), (torch.float16, 30.0)]
)
@pytest.mark.parametrize("return_maps", [False, True])
def test_large_magnitude_features_stay_finite(
    factory: Factory, dtype: torch.dtype, magnitude: float, return_maps: bool, device: torch.device
) -> None:
    """Logits X_i X1^T reach ~1e5 at magnitude 300: an unstabilized softmax would give inf/nan.

    fp16 gets smaller features because BME's products phi * psi of 300-sized features exceed fp16's range
    by themselves; test_mae.py checks MAE under fp16 with logits beyond fp16's range.
    """
    torch.manual_seed(0)
    block = _randomize(factory(num_frames=2, zero_init=False)).to(device)
    x = torch.randn(4, CHANNELS, 4, 4, device=device) * magnitude
    with nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype):
        out = block(x, return_maps=True)[0] if return_maps else block(x)
    assert torch.isfinite(out).all()


class _Doubling(ClipBlock):
    """A block of one's own: the branch adds the frame itself, so the block doubles its input."""

    def branch(self, frames: torch.Tensor, num_frames: int, return_maps: bool) -> tuple[torch.Tensor, dict]:
        return frames, {}


def test_a_block_of_ones_own_gets_the_layouts_and_checks_from_clip_block() -> None:
    block = _Doubling(CHANNELS, num_frames=2, layout="BCTHW")
    clips = torch.randn(2, CHANNELS, 3, 4, 2)
    torch.testing.assert_close(block(clips), 2 * clips)
    torch.testing.assert_close(block(torch.ones(4, CHANNELS, 1, 1)), 2 * torch.ones(4, CHANNELS, 1, 1))
    with pytest.raises(ValueError, match=r"_Doubling expects frames \(B\*T, C=16, H, W\)"):
        block(torch.randn(3, CHANNELS, 2, 2))


def test_a_block_without_a_branch_is_refused_with_what_to_implement() -> None:
    class NoBranch(ClipBlock):
        pass

    with pytest.raises(
        TypeError, match=r"^NoBranch must implement branch\(frames, num_frames, return_maps\)"
    ):
        NoBranch(CHANNELS, num_frames=2)
    with pytest.raises(TypeError, match=r"^ClipBlock must implement branch"):
        ClipBlock(CHANNELS, num_frames=2)
