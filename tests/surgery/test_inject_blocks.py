"""inject_blocks with a block of one's own in a torchvision model: the guarantees LSTRL's blocks have."""

from __future__ import annotations

import functools

import pytest
import torch
import torchvision
from _tiny import randomized
from einops import rearrange
from torch import nn

from lstrl_layers import ClipBlock, LSTRLBlock, blocks_of, inject_blocks, inject_lstrl, set_num_frames
from lstrl_layers.blocks import LSTRLArgs
from lstrl_layers.surgery import use_num_frames

NUM_FRAMES = 2
CPU = torch.device("cpu")


class TemporalConv(ClipBlock):
    """``x + `` a depthwise convolution over time, zero at construction: a user's block, not the library's."""

    def __init__(self, channels: int, num_frames: int, layout: str = "BTCHW", kernel_size: int = 3) -> None:
        super().__init__(channels, num_frames, layout)
        padding = (kernel_size // 2, 0, 0)
        self.conv = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=padding, groups=channels)
        self.init_identity()

    def init_identity(self) -> None:
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)  # type: ignore[arg-type]

    def branch(self, frames: torch.Tensor, num_frames: int, return_maps: bool) -> tuple[torch.Tensor, dict]:
        clips = rearrange(frames, "(b t) c h w -> b c t h w", t=num_frames)
        return rearrange(self.conv(clips), "b c t h w -> (b t) c h w"), {}


def _resnet(device: torch.device = CPU) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).to(device).eval()


def _frames(num_clips: int = 2, seed: int = 0, device: torch.device = CPU) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_clips * NUM_FRAMES, 3, 64, 32, generator=generator).to(device)


def test_own_block_starts_as_the_identity_and_trains(device: torch.device) -> None:
    model = _resnet(device)
    x = _frames(device=device)
    with torch.no_grad():
        expected = model(x)
    assert inject_blocks(model, ["layer2", "layer3"], TemporalConv, num_frames=NUM_FRAMES) is model
    assert {key: (type(b), b.channels) for key, b in model.lstrl.items()} == {
        "layer2": (TemporalConv, 128),
        "layer3": (TemporalConv, 256),
    }
    with torch.no_grad():
        assert torch.equal(model(x), expected)  # x + 0: exactly the plain model
    model.train()
    model(x).square().mean().backward()
    grads = {name: p.grad for name, p in model.lstrl.named_parameters()}
    assert len(grads) == 4 and all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_a_plain_checkpoint_loads_with_only_the_block_keys_missing() -> None:
    plain = _resnet()
    model = inject_blocks(_resnet(), ["layer2", "layer3"], TemporalConv, num_frames=NUM_FRAMES)
    result = model.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert sorted(result.missing_keys) == sorted(f"lstrl.{k}" for k in model.lstrl.state_dict())
    assert set(model.state_dict()) - set(result.missing_keys) == set(plain.state_dict())


def test_per_block_placement_reads_each_blocks_output(device: torch.device) -> None:
    model = _resnet(device)
    stages = blocks_of(model, "layer3")
    inject_blocks(model, stages, TemporalConv, num_frames=NUM_FRAMES)
    assert stages == ["layer3.0", "layer3.1"] and list(model.lstrl) == ["layer3_0", "layer3_1"]
    randomized(model.lstrl, 0.5)
    seen: dict[str, torch.Tensor] = {}
    model.lstrl["layer3_0"].register_forward_hook(lambda m, args, out: seen.update(block_in=args[0]))
    model.layer3[0].register_forward_hook(lambda m, args, out: seen.update(stage_out=out), prepend=True)
    model.layer3[1].register_forward_pre_hook(lambda m, args: seen.update(next_in=args[0]))
    with torch.no_grad():
        model(_frames(device=device))
    assert torch.equal(seen["block_in"], seen["stage_out"])  # the block reads layer3.0's own output
    assert not torch.equal(seen["next_in"], seen["stage_out"])  # and layer3.1 reads the block's output


def _shared_block_factory() -> object:
    shared = TemporalConv(256, NUM_FRAMES)
    return lambda channels, num_frames, layout: shared


@pytest.mark.parametrize(
    ("stages", "block", "error", "match"),
    [
        (["layer2"], lambda channels, num_frames, layout: nn.Identity(), TypeError,
         r"^block\(channels=128, num_frames=2, layout='BTCHW'\) for stage 'layer2' must return a ClipBlock "
         r".*got Identity\(\) \(Identity\)$"),
        (["layer2", "layer3"], lambda channels, **kw: TemporalConv(channels if channels == 128 else 8, **kw),
         ValueError,
         r"for stage 'layer3' returned a TemporalConv with channels=8: a block must take the channels"),
        (["layer2"], lambda channels, num_frames, layout: TemporalConv(channels, num_frames + 1, layout),
         ValueError,
         r"returned a TemporalConv with num_frames=3"),
        (["layer2"], lambda channels, num_frames, layout: TemporalConv(channels, num_frames, "BCTHW"),
         ValueError,
         r"returned a TemporalConv with layout='BCTHW'"),
        (["layer3.0", "layer3.1"], _shared_block_factory(), ValueError,
         r"for stage 'layer3.1' returned a TemporalConv that is already in the model or built for another"),
        (["layer2"], TemporalConv(128, NUM_FRAMES), TypeError,
         r"block must be a ClipBlock subclass or a callable .* got the module TemporalConv\("),
        (["layer2"], nn.Conv2d, TypeError, r"got the class Conv2d, which is not a ClipBlock"),
        (["layer2"], "temporal", TypeError, r"block must be a ClipBlock subclass .* got 'temporal' \(str\)"),
        (["layer2", "layer9"], TemporalConv, ValueError, r"stage 'layer9' does not exist in ResNet"),
        ([3], TemporalConv, ValueError, r"integer stages index timm's feature_info, which ResNet does not"),
    ],
)  # fmt: skip
def test_refusals_leave_the_model_unchanged(
    stages: list, block: object, error: type[Exception], match: str
) -> None:
    model = _resnet()
    x = _frames()
    with torch.no_grad():
        expected = model(x)
    with pytest.raises(error, match=match):
        inject_blocks(model, stages, block, num_frames=NUM_FRAMES)  # type: ignore[arg-type]
    assert not hasattr(model, "lstrl") and set(model.state_dict()) == set(_resnet().state_dict())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_clips_stay_independent(device: torch.device) -> None:
    model = inject_blocks(_resnet(device), ["layer2", "layer3"], TemporalConv, num_frames=NUM_FRAMES)
    randomized(model.lstrl, 0.5)
    x = _frames(device=device)
    changed = x.clone()
    changed[NUM_FRAMES:] = _frames(num_clips=1, seed=1, device=device)  # clip 1 only
    with torch.no_grad():
        before, after = model(x), model(changed)
    torch.testing.assert_close(after[:NUM_FRAMES], before[:NUM_FRAMES])  # clip 0 does not see clip 1
    assert not torch.allclose(after[NUM_FRAMES:], before[NUM_FRAMES:])
    # a block that mixed the two clips (one clip of 4 frames) would change clip 0's output
    with torch.no_grad(), use_num_frames(model, 2 * NUM_FRAMES):
        assert not torch.allclose(model(changed)[:NUM_FRAMES], before[:NUM_FRAMES])


def test_use_num_frames_splits_by_the_callers_clip_length(device: torch.device) -> None:
    model = inject_blocks(_resnet(device), ["layer2", "layer3"], TemporalConv, num_frames=4)
    randomized(model.lstrl, 0.5)
    x = _frames(device=device)  # 2 clips of 2 frames, to a model injected for clips of 4
    with torch.no_grad():
        one_clip_of_four = model(x)
        with use_num_frames(model, NUM_FRAMES):
            per_call = model(x)
            alone = torch.cat([model(x[:NUM_FRAMES]), model(x[NUM_FRAMES:])])
        assert all(block.num_frames == 4 for block in model.lstrl.values())  # nothing stored
        set_num_frames(model, NUM_FRAMES)
        stored = model(x)
    torch.testing.assert_close(per_call, alone)
    torch.testing.assert_close(per_call, stored)  # the per-call T and the blocks' own T agree
    assert not torch.allclose(per_call, one_clip_of_four)


def test_blocks_move_to_the_stage_outputs_device_and_dtype(device: torch.device) -> None:
    model = _resnet(device).double()
    x = _frames(device=device).double()
    with torch.no_grad():
        expected = model(x)
    inject_blocks(model, ["layer2"], functools.partial(TemporalConv, kernel_size=5), num_frames=NUM_FRAMES)
    weight = model.lstrl["layer2"].conv.weight
    assert weight.dtype == torch.float64 and weight.device == x.device and weight.shape[2] == 5
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_a_3d_model_builds_its_blocks_in_its_own_layout() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 4, 1)).eval()
    calls = []

    def block(channels: int, num_frames: int, layout: str) -> ClipBlock:
        calls.append((channels, num_frames, layout))
        return TemporalConv(channels, num_frames, layout)

    clips = torch.randn(2, 3, 4, 8, 8)  # (B, C, T, H, W)
    with torch.no_grad():
        expected = model(clips)
    inject_blocks(model, ["0"], block, layout="BCTHW", input_size=(3, 4, 8, 8))
    assert calls == [(8, 8, "BCTHW")]
    with torch.no_grad():
        assert torch.equal(model(clips), expected)


def test_inject_lstrl_is_inject_blocks_with_lstrl_blocks() -> None:
    arguments = dict(bme=False, mae_kwargs=dict(granularities=(1, 4)), zero_init=False)  # _resnet() seeds
    through_lstrl = inject_lstrl(_resnet(), ["layer3"], num_frames=NUM_FRAMES, **arguments)  # type: ignore[arg-type]
    args = LSTRLArgs(**arguments)  # type: ignore[arg-type]
    through_blocks = inject_blocks(_resnet(), ["layer3"], args.build, num_frames=NUM_FRAMES)
    assert isinstance(through_blocks.lstrl["layer3"], LSTRLBlock)
    assert through_blocks.lstrl["layer3"].mae.granularities == (1, 4)
    state = through_blocks.state_dict()
    assert all(torch.equal(value, state[key]) for key, value in through_lstrl.state_dict().items())
    assert state.keys() == through_lstrl.state_dict().keys()
