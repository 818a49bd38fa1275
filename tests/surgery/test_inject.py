"""inject_lstrl and set_num_frames on timm models: identity at init, checkpoints, errors, export."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from _tiny import randomized
from torch import nn

from lstrl_layers import LSTRLBlock, inject_lstrl, set_num_frames

NUM_FRAMES = 2


CPU = torch.device("cpu")


def _frames(
    num_clips: int = 2, size: tuple[int, int] = (64, 32), seed: int = 0, device: torch.device = CPU
) -> torch.Tensor:
    frames = torch.randn(num_clips * NUM_FRAMES, 3, *size, generator=torch.Generator().manual_seed(seed))
    return frames.to(device)


def _plain(name: str = "resnet18", device: torch.device = CPU, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs).to(device).eval()


# One small model per family; stages are the two before the last feature_info entry, as layer2/layer3 are
# for ResNet-50 (the sweep in the README covers more families at the models' own input sizes).
FAMILIES = {
    "resnet18": (64, 32),
    "seresnet18": (64, 32),
    "resnext26ts": (64, 32),
    "regnetx_002": (64, 32),
    "efficientnet_b0": (64, 32),
    "mobilenetv3_small_050": (64, 32),
    "convnext_atto": (64, 32),
    "densenet121": (64, 32),
    "cs3darknet_focus_s": (64, 32),
    "dla34": (64, 32),
    "repvgg_a0": (64, 32),
    "hrnet_w18_small": (64, 64),
    "ghostnet_050": (64, 32),
    "nf_resnet26": (64, 32),
    "mobileone_s0": (64, 32),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_identity_at_init_then_trainable_across_families(name: str, device: torch.device) -> None:
    x = _frames(size=FAMILIES[name], device=device)
    model = _plain(name, device)
    stages = [len(model.feature_info) - 3, len(model.feature_info) - 2]
    with torch.no_grad():
        expected = model(x)
    inject_lstrl(model, stages, num_frames=NUM_FRAMES)
    with torch.no_grad():
        # BME starts at x + 1e-6, MAE at x: the model's outputs move by what a 1e-6 shift does to them
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
    # trainable from the identity: every block parameter gets a gradient through the whole model
    model.train()
    model(x).square().mean().backward()
    grads = {n: p.grad for n, p in model.lstrl.named_parameters()}
    assert grads and all(g is not None for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if n.endswith("omega2.weight"))
    assert any(g.abs().sum() > 0 for n, g in grads.items() if n.endswith("upsilon.weight"))


def test_block_runs_where_feature_info_points_and_uses_the_models_channels(device: torch.device) -> None:
    model = _plain("resnet18", device)
    inject_lstrl(model, [2, "layer3"], num_frames=NUM_FRAMES)
    assert isinstance(model.lstrl["layer2"], LSTRLBlock) and isinstance(model.lstrl["layer3"], LSTRLBlock)
    assert model.lstrl["layer2"].channels == 128 and model.lstrl["layer3"].channels == 256
    seen = {}
    model.lstrl["layer3"].register_forward_hook(lambda m, args, out: seen.update(inp=args[0], out=out))
    layer3_out = {}
    model.layer3.register_forward_hook(lambda m, args, out: layer3_out.update(out=out), prepend=True)
    x = _frames(device=device)
    randomized(model.lstrl, 0.05)
    model(x)
    assert torch.equal(seen["inp"], layer3_out["out"])  # the block reads layer3's own output
    assert seen["out"].shape == (2 * NUM_FRAMES, 256, 4, 2)


def test_checkpoint_of_plain_model_loads_with_only_block_keys_missing() -> None:
    plain = _plain("resnet18")
    model = inject_lstrl(_plain("resnet18"), [2, 3], num_frames=NUM_FRAMES)
    result = model.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert sorted(result.missing_keys) == sorted(f"lstrl.{k}" for k in model.lstrl.state_dict())
    assert all(k.startswith(("lstrl.layer2.", "lstrl.layer3.")) for k in result.missing_keys)
    assert set(plain.state_dict()) == set(model.state_dict()) - set(result.missing_keys)


def test_stage_names_and_indices_are_the_same_stages() -> None:
    by_index = inject_lstrl(_plain(), [2, 3], num_frames=NUM_FRAMES)
    by_name = inject_lstrl(_plain(), ["layer2", "layer3"], num_frames=NUM_FRAMES)
    assert by_index.state_dict().keys() == by_name.state_dict().keys()


def test_block_options_pass_through() -> None:
    model = inject_lstrl(
        _plain(), [3], num_frames=NUM_FRAMES, bme=False, mae_kwargs=dict(granularities=(1, 4))
    )
    block = model.lstrl["layer3"]
    assert block.bme is None and block.mae is not None and block.mae.granularities == (1, 4)
    model = inject_lstrl(_plain(), [3], num_frames=NUM_FRAMES, mae=False, bme_kwargs=dict(edge="replicate"))
    assert model.lstrl["layer3"].mae is None and model.lstrl["layer3"].bme.edge == "replicate"


def test_features_only_model_agrees_with_the_injected_plain_model(device: torch.device) -> None:
    plain = inject_lstrl(_plain("resnext26ts", device), [2, 3], num_frames=NUM_FRAMES)
    randomized(plain.lstrl, 0.05)
    features = _plain("resnext26ts", device, features_only=True, out_indices=(2, 3))
    inject_lstrl(features, [2, 3], num_frames=NUM_FRAMES)
    missing = features.load_state_dict(plain.state_dict(), strict=False)
    assert not [k for k in missing.missing_keys if k.startswith("lstrl")]  # same block keys in both models
    x = _frames(device=device)
    _, intermediates = plain.forward_intermediates(x, indices=[2, 3])
    for got, expected in zip(features(x), intermediates):
        torch.testing.assert_close(got, expected)


def test_set_num_frames_reaches_every_block(device: torch.device) -> None:
    model = inject_lstrl(_plain(device=device), [1, 2, 3], num_frames=NUM_FRAMES)
    assert set_num_frames(model, 5) is model
    blocks = [m for m in model.modules() if hasattr(m, "num_frames")]
    assert len(blocks) == 9 and all(b.num_frames == 5 for b in blocks)  # 3 LSTRLBlocks with 2 branches each
    randomized(model.lstrl, 0.05)
    x = _frames(num_clips=1, device=device)
    with torch.no_grad():
        set_num_frames(model, 1)
        two_clips_of_one = model(x)  # each frame is its own clip: no interaction
        torch.testing.assert_close(two_clips_of_one[1:], model(x[1:]), atol=1e-5, rtol=1e-5)
        set_num_frames(model, NUM_FRAMES)
        assert not torch.allclose(two_clips_of_one, model(x), atol=1e-3)  # one clip of two frames


def test_set_num_frames_errors() -> None:
    with pytest.raises(ValueError, match="holds no LSTRL block"):
        set_num_frames(_plain(), 4)
    model = inject_lstrl(_plain(), [2], num_frames=NUM_FRAMES)
    with pytest.raises(ValueError, match="num_frames must be an int >= 1, got 0"):
        set_num_frames(model, 0)
    with pytest.raises(TypeError, match=r"num_frames must be an int >= 1, got 2.5 \(float\)"):
        set_num_frames(model, 2.5)  # type: ignore[arg-type]
    assert model.lstrl["layer2"].num_frames == NUM_FRAMES


def test_clips_stay_independent_through_the_injected_model(device: torch.device) -> None:
    model = inject_lstrl(_plain(device=device), [2, 3], num_frames=NUM_FRAMES)
    randomized(model.lstrl, 0.05)
    x = _frames(num_clips=3, device=device)
    with torch.no_grad():
        together = model(x)
        alone = model(x[NUM_FRAMES : 2 * NUM_FRAMES])
    torch.testing.assert_close(together.unflatten(0, (3, NUM_FRAMES))[1], alone, atol=1e-5, rtol=1e-5)


def test_deepcopy_gives_an_independent_model(device: torch.device) -> None:
    """timm's ModelEma deep-copies the model: the copy's hooks must run the copy's blocks."""
    model = inject_lstrl(_plain(device=device), [2, 3], num_frames=NUM_FRAMES)
    clone = copy.deepcopy(model)
    randomized(clone.lstrl, 0.05)
    x = _frames(device=device)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _plain(device=device)(x))  # the original still is the identity
        assert not torch.allclose(clone(x), model(x))
    reference = _plain(device=device)
    inject_lstrl(reference, [2, 3], num_frames=NUM_FRAMES)
    reference.load_state_dict(clone.state_dict())
    with torch.no_grad():
        assert torch.equal(clone(x), reference(x))


@pytest.mark.parametrize(
    ("stages", "error", "message"),
    [
        ([7], ValueError, r"stage index 7 does not exist in ResNet; valid: 0='act1', 1='layer1', 2='layer2'"),
        (["layer9"], ValueError, r"stage 'layer9' does not exist in ResNet; valid: .*4='layer4'"),
        ([2, "layer2"], ValueError, r"stage 'layer2' \('layer2'\) is injected twice"),
        ([], ValueError, r"stages must be a non-empty list of stage indices or names, got \[\]"),
        (None, TypeError, r"stages must be a list of stage indices or names, .* got None \(NoneType\)"),
        (2, TypeError, r"stages must be a list of stage indices or names, .* got 2 \(int\)"),
        ("layer2", TypeError, r"stages must be a list .* got 'layer2' \(str\)"),
        ([2.0], TypeError, r"stages must hold ints or str \(.*\), got 2.0 \(float\)"),
        ([True], TypeError, r"stages must hold ints or str \(.*\), got True \(bool\)"),
    ],
)
def test_bad_stages(stages: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        inject_lstrl(_plain(), stages, num_frames=NUM_FRAMES)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(num_frames=0), ValueError, "num_frames must be an int >= 1, got 0"),
        (dict(num_frames=2.0), TypeError, r"num_frames must be an int >= 1, got 2.0 \(float\)"),
        (dict(mae="no"), TypeError, r"mae must be True or False, got 'no' \(str\)"),
        (dict(zero_init=1), TypeError, r"zero_init must be True or False, got 1 \(int\)"),
        (dict(bme_kwargs="x"), TypeError, r"bme_kwargs must be a dict of keyword arguments or None, got 'x'"),
    ],
)
def test_bad_arguments_leave_the_model_unchanged(kwargs: dict, error: type[Exception], message: str) -> None:
    model = _plain()
    arguments = dict(num_frames=NUM_FRAMES) | kwargs
    with pytest.raises(error, match=message):
        inject_lstrl(model, [2], **arguments)
    assert not hasattr(model, "lstrl") and set(model.state_dict()) == set(_plain().state_dict())


def test_model_that_is_not_a_module_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"model must be an nn.Module \(a CNN\), got 'resnet18' \(str\)"):
        inject_lstrl("resnet18", [2])  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"model must be an nn.Module holding blocks \(ClipBlock\), got 'resnet18'"
    ):
        set_num_frames("resnet18", 2)  # type: ignore[arg-type]


def test_a_second_injection_at_another_num_frames_is_refused() -> None:
    model = inject_lstrl(_plain(), [2], num_frames=NUM_FRAMES)
    with pytest.raises(ValueError, match=r"num_frames=4 differs .* lstrl.layer2 \(num_frames=2\)") as info:
        inject_lstrl(model, [3], num_frames=4)
    assert "set_num_frames(model, 4)" in str(info.value)
    assert list(model.lstrl) == ["layer2"]  # nothing added
    set_num_frames(model, 4)  # the way the message gives
    inject_lstrl(model, [3], num_frames=4)
    assert {key: block.num_frames for key, block in model.lstrl.items()} == {"layer2": 4, "layer3": 4}


def test_injecting_a_stage_twice_across_calls_is_refused() -> None:
    model = inject_lstrl(_plain(), [2], num_frames=NUM_FRAMES)
    with pytest.raises(ValueError, match="injected twice"):
        inject_lstrl(model, ["layer2"], num_frames=NUM_FRAMES)
    inject_lstrl(model, [3], num_frames=NUM_FRAMES)  # another stage is fine
    assert list(model.lstrl) == ["layer2", "layer3"]


def test_stage_index_without_feature_info_is_refused_and_names_work() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(ValueError, match=r"integer stages index timm's feature_info, which Sequential does"):
        inject_lstrl(model, [0], num_frames=NUM_FRAMES)
    inject_lstrl(model, ["0"], num_frames=NUM_FRAMES)  # module names work on any model
    assert list(model.lstrl) == ["0"] and model.lstrl["0"].channels == 8


def test_no_branch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one branch"):
        inject_lstrl(_plain(), [2], num_frames=NUM_FRAMES, mae=False, bme=False)


def test_token_stages_are_refused_at_injection() -> None:
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2)
    with pytest.raises(ValueError, match=r"does not give one \(N, C, H, W\) feature map \(got a 3-D tensor"):
        inject_lstrl(vit, [1], num_frames=NUM_FRAMES)


def test_channels_last_stage_outputs_are_refused_at_injection() -> None:
    swin = timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, img_size=64, window_size=4, depths=(1, 1, 1, 1)
    )
    with pytest.raises(ValueError, match=r"channels-last \(N, H, W, C\)"):
        inject_lstrl(swin, [1], num_frames=NUM_FRAMES)


def test_features_only_model_missing_the_stage_is_refused() -> None:
    features = _plain("resnet18", features_only=True, out_indices=(1,))
    with pytest.raises(ValueError, match="listed in feature_info but not present"):
        inject_lstrl(features, [3], num_frames=NUM_FRAMES)


def test_local_checkpoint_loads_through_timm_and_injection_keeps_its_outputs(tmp_path) -> None:
    trained = _plain("resnet18")
    with torch.no_grad():
        for param in trained.parameters():
            param.add_(0.01 * torch.randn_like(param))  # not timm's initialization any more
    path = tmp_path / "resnet18_reid.pth"
    torch.save(trained.state_dict(), path)
    loaded = timm.create_model(
        "resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
    ).eval()
    x = _frames()
    with torch.no_grad():
        expected = trained(x)
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
        inject_lstrl(loaded, [2, 3], num_frames=NUM_FRAMES)
        torch.testing.assert_close(loaded(x), expected, rtol=1e-4, atol=1e-5)  # BME's x + 1e-6


def _injected_resnet50(device: torch.device = CPU) -> nn.Module:
    model = inject_lstrl(_plain("resnet50", device), [2, 3], num_frames=NUM_FRAMES)
    randomized(model.lstrl, 0.05)
    return model


def test_channels_last_matches_contiguous(device: torch.device) -> None:
    model = _injected_resnet50(device)
    x = _frames(device=device)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_bf16_autocast_stays_close(device: torch.device) -> None:
    model = _injected_resnet50(device)
    x = _frames(device=device)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            got = model(x)
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
    assert torch.nn.functional.cosine_similarity(got.float(), expected).min() > 0.99


@pytest.mark.slow
def test_torch_compile_matches_eager(device: torch.device) -> None:
    model = inject_lstrl(_plain("resnet18", device), [2, 3], num_frames=NUM_FRAMES)
    randomized(model.lstrl, 0.05)
    x = _frames(device=device)
    # fullgraph: the hooks, einops patterns and SDPA trace without a graph break. aot_eager keeps the suite
    # fast; inductor compiles the same graph (checked by hand, see the README, minutes on 2 CPU cores).
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_is_refused_with_the_alternatives() -> None:
    model = inject_lstrl(_plain(), [2], num_frames=NUM_FRAMES)
    with pytest.raises(
        NotImplementedError, match=r"TorchScript \(torch.jit.script\) is not supported"
    ) as info:
        torch.jit.script(model)
    assert "torch.compile" in str(info.value) and "torch.onnx.export" in str(info.value)


# the blocks' shape checks become constants; torch.jit.trace is deprecated in recent torch but still works
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_torch_jit_trace_matches_eager(device: torch.device) -> None:
    model = inject_lstrl(_plain(device=device), [2, 3], num_frames=NUM_FRAMES)
    randomized(model.lstrl, 0.05)
    with torch.no_grad():
        traced = torch.jit.trace(model, (_frames(device=device),))
        other = _frames(seed=1, device=device)
        torch.testing.assert_close(traced(other), model(other), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_onnx_export_matches_onnxruntime(tmp_path) -> None:
    import onnxruntime  # the dev extra installs it

    model = _injected_resnet50()
    x = _frames()
    path = tmp_path / "lstrl_resnet50.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["frames"], output_names=["logits"], dynamo=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"frames": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), atol=1e-4, rtol=1e-3)


def test_branch_arguments_for_a_branch_that_is_off_are_refused_before_the_model_changes() -> None:
    model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    before = [name for name, _ in model.named_modules()]
    with pytest.raises(ValueError, match=r"bme_kwargs=\{'reduction': 4\} given but bme=False"):
        inject_lstrl(model, stages=[2], num_frames=2, bme=False, bme_kwargs=dict(reduction=4))
    assert [name for name, _ in model.named_modules()] == before
