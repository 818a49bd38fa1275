"""inject_lstrl beyond timm: torchvision and hand-written models, per-block placement, wrappers, refusals."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from _tiny import randomized
from torch import nn

from lstrl_layers import LSTRLBlock, blocks_of, inject_lstrl

NUM_FRAMES = 2
CPU = torch.device("cpu")


def _frames(num_clips: int = 2, seed: int = 0, device: torch.device = CPU) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_clips * NUM_FRAMES, 3, 64, 32, generator=generator).to(device)


def _resnet(depth: int = 50, device: torch.device = CPU) -> nn.Module:
    torch.manual_seed(0)
    factory = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth]
    return factory().to(device).eval()


class TinyNet(nn.Module):
    """A network written by hand: no timm, no feature_info, stages and blocks of its own naming."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.ModuleDict(
            {
                "early": nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 1)),
                "late": nn.Sequential(nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.ReLU()),
            }
        )
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body["late"](self.body["early"](self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))


def _model(kind: str, device: torch.device) -> nn.Module:
    if kind == "resnet50":
        return _resnet(50, device)
    torch.manual_seed(0)
    return TinyNet().to(device).eval()


STAGES = {"resnet50": ["layer2", "layer3"], "tiny": ["stem", "body.early.2", "body.late"]}


@pytest.mark.parametrize("kind", sorted(STAGES))
def test_identity_at_init_and_every_block_trains(kind: str, device: torch.device) -> None:
    model = _model(kind, device)
    x = _frames(device=device)
    with torch.no_grad():
        expected = model(x)
    inject_lstrl(model, STAGES[kind], num_frames=NUM_FRAMES)
    assert sorted(model.lstrl) == sorted(name.replace(".", "_") for name in STAGES[kind])
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)  # BME's x + 1e-6
    model.train()
    model(x).square().mean().backward()
    grads = {n: p.grad for n, p in model.lstrl.named_parameters()}
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values())
    for key in model.lstrl:  # ω2 and υ of every block get a gradient from the first step
        assert grads[f"{key}.mae.omega2.weight"].abs().sum() > 0
        assert grads[f"{key}.bme.upsilon.weight"].abs().sum() > 0


def test_channels_come_from_the_probe_forward() -> None:
    model = inject_lstrl(TinyNet(), ["stem", "body.early", "body.late"], num_frames=NUM_FRAMES)
    assert {key: block.channels for key, block in model.lstrl.items()} == {
        "stem": 8,
        "body_early": 16,
        "body_late": 24,
    }


def test_state_dict_gains_only_the_block_keys() -> None:
    plain = _resnet()
    model = inject_lstrl(_resnet(), ["layer2", "layer3"], num_frames=NUM_FRAMES)
    added = set(model.state_dict()) - set(plain.state_dict())
    assert set(plain.state_dict()) <= set(model.state_dict())
    assert added == {f"lstrl.{key}" for key in model.lstrl.state_dict()}
    result = model.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == [] and set(result.missing_keys) == added


def test_deepcopy_runs_the_copys_blocks(device: torch.device) -> None:
    model = inject_lstrl(_resnet(18, device), ["layer2", "layer3"], num_frames=NUM_FRAMES)
    clone = copy.deepcopy(model)
    randomized(clone.lstrl, 0.05)
    x = _frames(device=device)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _resnet(18, device)(x), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(clone(x), model(x), atol=1e-3)


@pytest.mark.slow
def test_torch_compile_matches_eager(device: torch.device) -> None:
    model = inject_lstrl(_resnet(50, device), ["layer2", "layer3"], num_frames=NUM_FRAMES)
    randomized(model.lstrl, 0.05)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = _frames(device=device)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_onnx_export_matches_onnxruntime(tmp_path) -> None:
    import onnxruntime

    model = inject_lstrl(_resnet(50), ["layer2", "layer3"], num_frames=NUM_FRAMES)
    randomized(model.lstrl, 0.05)
    x = _frames()
    path = tmp_path / "tv_resnet50_lstrl.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["frames"], output_names=["logits"], dynamo=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"frames": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    # torchvision's ResNet-50 at init has logits up to ~25 (no zero-init of the last BN of each block, as in
    # timm): float32 round-off through 50 layers is judged against that scale
    scale = expected.abs().max().item()
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-4 * scale, rtol=1e-3)


# ---- per-block placement


def test_blocks_of_lists_every_other_block() -> None:
    model = _resnet()
    assert blocks_of(model, "layer3") == [f"layer3.{i}" for i in range(6)]
    assert blocks_of(model, "layer3", every=2) == ["layer3.0", "layer3.2", "layer3.4"]
    assert blocks_of(model, "layer3", every=2, start=1) == ["layer3.1", "layer3.3", "layer3.5"]
    assert blocks_of(TinyNet(), "body") == ["body.early", "body.late"]


def test_blocks_of_uses_a_timm_stages_blocks_container() -> None:
    import timm

    convnext = timm.create_model("convnext_atto", pretrained=False)
    assert blocks_of(convnext, "stages.2", every=3) == ["stages.2.blocks.0", "stages.2.blocks.3"]
    assert blocks_of(convnext, 3) == ["stages.3.blocks.0", "stages.3.blocks.1"]  # feature_info index


def test_a_block_after_single_residual_blocks_reads_their_output(device: torch.device) -> None:
    model = _resnet(50, device)
    names = blocks_of(model, "layer3", every=2)
    inject_lstrl(model, names, num_frames=NUM_FRAMES)
    assert list(model.lstrl) == ["layer3_0", "layer3_2", "layer3_4"]
    randomized(model.lstrl, 0.05)
    seen: dict[str, torch.Tensor] = {}
    model.lstrl["layer3_2"].register_forward_hook(lambda m, args, out: seen.update(inp=args[0], out=out))
    model.layer3[2].register_forward_hook(lambda m, args, out: seen.update(block=out), prepend=True)
    model.layer3[3].register_forward_pre_hook(lambda m, args: seen.update(next=args[0]))
    with torch.no_grad():
        model(_frames(device=device))
    assert torch.equal(seen["inp"], seen["block"])  # the LSTRL block reads layer3.2's own output
    assert torch.equal(seen["next"], seen["out"])  # and layer3.3 reads the LSTRL block's
    assert not torch.equal(seen["out"], seen["inp"])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(stage="layer3", every=0), ValueError, r"every must be an int >= 1, got 0"),
        (
            dict(stage="layer3", start=2),
            ValueError,
            r"start must be < 2, the number of blocks in 'layer3', got 2",
        ),
        (dict(stage="layer3", start=-1), ValueError, r"start must be an int >= 0, got -1"),
        (dict(stage="layer3", every=1.5), TypeError, r"every must be an int >= 1, got 1.5 \(float\)"),
        (dict(stage="conv1"), ValueError, r"stage 'conv1' \('conv1'\) of ResNet has no blocks"),
        (dict(stage="layer7"), ValueError, r"stage 'layer7' does not exist in ResNet; did you mean"),
    ],
)
def test_blocks_of_bad_arguments(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        blocks_of(_resnet(18), **kwargs)


# ---- refusals, each leaving the model as it was


def _assert_unchanged(model: nn.Module, keys: set[str]) -> None:
    assert not hasattr(model, "lstrl") and set(model.state_dict()) == keys
    hooked = [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    assert hooked == []


@pytest.mark.parametrize(
    ("stages", "kwargs", "message"),
    [
        (
            ["layer9"],
            {},
            r"stage 'layer9' does not exist in ResNet; did you mean .*'layer4'.* 'avgpool', 'fc'",
        ),
        (
            ["layer3.7"],
            {},
            r"stage 'layer3.7' does not exist .* the modules in 'layer3': 'layer3.0', 'layer3.1'",
        ),
        (
            ["layer2", 3],
            {},
            r"stage index 3: integer stages index timm's feature_info, which ResNet does not",
        ),
        (["fc"], {}, r"stage 'fc' of ResNet does not give one \(N, C, H, W\) feature map \(got a 2-D tensor"),
        (["layer3.1.relu"], {}, r"stage 'layer3.1.relu' of ResNet ran 2 times in one forward"),
        (["layer2", "layer2"], {}, r"stage 'layer2' \('layer2'\) is injected twice"),
        (["layer2"], dict(input_size=(1, 64, 32)), r"an input of shape \(1, 1, 64, 32\) run through ResNet"),
        (
            ["layer2"],
            dict(layout="BCTHW"),
            r"does not give one \(B, C, T, H, W\) clip feature map \(got a 4-D",
        ),
        (["layer2"], dict(layout="NCHW"), r"layout must be one of \('BTCHW', 'BCTHW'\), got 'NCHW'"),
    ],
)
def test_refused_injections_leave_the_model_unchanged(stages: list, kwargs: dict, message: str) -> None:
    model = _resnet(18)
    keys = set(model.state_dict())
    with pytest.raises(ValueError, match=message):
        inject_lstrl(model, stages, num_frames=NUM_FRAMES, **kwargs)
    _assert_unchanged(model, keys)


def test_probe_input_that_cannot_be_inferred_says_what_to_pass() -> None:
    model = nn.Sequential(nn.Linear(6, 3 * 8 * 8), nn.Unflatten(1, (3, 8, 8)), nn.Conv2d(3, 4, 1))
    with pytest.raises(
        ValueError, match=r"cannot tell what input Sequential takes .* input_size= .* example_input="
    ):
        inject_lstrl(model, ["2"], num_frames=NUM_FRAMES)
    _assert_unchanged(model, set(model.state_dict()))
    inject_lstrl(model, ["2"], num_frames=NUM_FRAMES, example_input=torch.zeros(1, 6))
    assert model.lstrl["2"].channels == 4
    other = nn.Sequential(nn.Linear(6, 3 * 8 * 8), nn.Unflatten(1, (3, 8, 8)), nn.Conv2d(3, 4, 1))
    inject_lstrl(other, ["2"], num_frames=NUM_FRAMES, input_size=(6,))
    with pytest.raises(
        TypeError, match=r"example_input must be a tensor the model takes, got \[1, 2\] \(list\)"
    ):
        inject_lstrl(other, ["1"], num_frames=NUM_FRAMES, example_input=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"input_size must be the size of one input .* got 'big' \(str\)"):
        inject_lstrl(other, ["1"], num_frames=NUM_FRAMES, input_size="big")  # type: ignore[arg-type]


def test_channels_last_stages_without_feature_info_are_refused() -> None:
    swin = torchvision.models.swin_t().eval()  # its stages give (N, H, W, C)
    keys = set(swin.state_dict())
    with pytest.raises(
        ValueError, match=r"'features.3' of SwinTransformer gives a channels-last \(N, H, W, C\) map"
    ):
        inject_lstrl(swin, ["features.3"], num_frames=NUM_FRAMES, input_size=(3, 64, 32))
    _assert_unchanged(swin, keys)


class _ChannelsLastVideo(nn.Module):
    """A video transformer-style stage: (B, C, T, H, W) in, (B, T, H, W, C) out."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv3d(3, 12, kernel_size=(1, 4, 4), stride=(1, 4, 4))
        self.norm = nn.LayerNorm(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.embed(x).permute(0, 2, 3, 4, 1))


def test_channels_last_video_stages_are_refused() -> None:
    model = nn.Sequential(_ChannelsLastVideo())
    with pytest.raises(ValueError, match=r"channels-last \(B, T, H, W, C\) map \(1, 4, 4, 2, 12\) \(C=12, "):
        inject_lstrl(model, ["0"], layout="BCTHW", input_size=(3, 4, 16, 8))


# ---- wrappers


def test_data_parallel_is_refused_with_the_way_out() -> None:
    model = _resnet(18)
    keys = set(model.state_dict())
    with pytest.raises(
        ValueError, match=r"nn.DataParallel, whose replicas share the forward hooks .* Distributed"
    ):
        inject_lstrl(nn.DataParallel(model), ["layer2"], num_frames=NUM_FRAMES)
    _assert_unchanged(model, keys)


def test_a_data_parallel_replica_refuses_to_run_the_first_gpus_block() -> None:
    model = inject_lstrl(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Identity()), ["1"], num_frames=NUM_FRAMES)
    replica = model[1]._replicate_for_data_parallel()  # what DataParallel makes for every other GPU
    with pytest.raises(RuntimeError, match=r"DataParallel's replicas share .* Use DistributedDataParallel"):
        replica(torch.zeros(2, 4, 3, 3))


def test_distributed_data_parallel_is_refused_with_the_way_out(tmp_path) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = _resnet(18)
        keys = set(model.state_dict())
        ddp = nn.parallel.DistributedDataParallel(model)
        with pytest.raises(
            ValueError, match=r"DistributedDataParallel, which registers the parameters .* first"
        ):
            inject_lstrl(ddp, ["layer2"], num_frames=NUM_FRAMES)
        _assert_unchanged(model, keys)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("into", ["original", "compiled"])
def test_a_model_compiled_and_run_before_the_injection_runs_the_blocks(
    into: str, device: torch.device
) -> None:
    model = _resnet(18, device)
    compiled = torch.compile(model, backend="aot_eager")
    x = _frames(device=device)
    with torch.no_grad():
        before = compiled(x)  # compiled code exists for the plain model
    returned = inject_lstrl(model if into == "original" else compiled, ["layer3"], num_frames=NUM_FRAMES)
    assert returned is (model if into == "original" else compiled)
    assert isinstance(
        model.lstrl["layer3"], LSTRLBlock
    )  # the compiled model's original module has the blocks
    randomized(model.lstrl, 0.05)
    with torch.no_grad():
        eager = model(x)
        assert not torch.allclose(eager, before, atol=1e-3)
        torch.testing.assert_close(compiled(x), eager, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_a_model_injected_then_compiled_runs_the_blocks(device: torch.device) -> None:
    model = inject_lstrl(_resnet(18, device), ["layer3"], num_frames=NUM_FRAMES)
    randomized(model.lstrl, 0.05)
    compiled = torch.compile(model, backend="aot_eager")
    x = _frames(device=device)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-4, rtol=1e-4)
        inject_lstrl(model, ["layer2"], num_frames=NUM_FRAMES)  # more blocks after the first compiled call
        randomized(model.lstrl, 0.05)
        torch.testing.assert_close(compiled(x), model(x), atol=1e-4, rtol=1e-4)


# ---- video layout: 3D CNNs


def test_r3d_18_with_blocks_in_its_own_layout_trains(device: torch.device) -> None:
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(num_classes=4).to(device)
    clips = torch.randn(2, 3, 8, 32, 32, device=device)  # (B, C, T, H, W): T = 4 at layer2, 2 at layer3
    model.eval()
    with torch.no_grad():
        expected = model(clips)
    with pytest.raises(ValueError, match=r"got a 5-D tensor .* pass layout='BCTHW'"):
        inject_lstrl(model, ["layer2"])
    inject_lstrl(model, ["layer2", "layer3"], layout="BCTHW", example_input=clips[:1])
    assert model.lstrl["layer2"].channels == 128 and model.lstrl["layer2"].layout == "BCTHW"
    with torch.no_grad():
        torch.testing.assert_close(model(clips), expected, rtol=1e-4, atol=1e-4)
    model.train()
    optimizer = torch.optim.SGD(model.lstrl.parameters(), lr=0.1)
    before = {n: p.detach().clone() for n, p in model.lstrl.named_parameters()}
    loss = nn.functional.cross_entropy(model(clips), torch.tensor([0, 1], device=device))
    loss.backward()
    optimizer.step()
    moved = [n for n, p in model.lstrl.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.endswith("omega2.weight") for n in moved) and any(
        n.endswith("upsilon.weight") for n in moved
    )


def test_a_clip_block_in_a_3d_model_sees_each_clip_alone(device: torch.device) -> None:
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(num_classes=4).to(device).eval()
    inject_lstrl(model, ["layer2"], layout="BCTHW", input_size=(3, 4, 32, 32))
    randomized(model.lstrl, 0.05)
    clips = torch.randn(3, 3, 4, 32, 32, device=device)
    with torch.no_grad():
        together = model(clips)
        alone = model(clips[1:2])
    torch.testing.assert_close(together[1:2], alone, atol=1e-4, rtol=1e-4)
