"""VideoReIDNet: Table 3 parameter counts, train/eval outputs, any T, clip independence, last stride."""

from __future__ import annotations

import pytest
import torch

from lstrl_layers import ClipBlock, VideoReIDNet, set_num_frames


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _video(num_clips: int, num_frames: int, size: tuple[int, int] = (64, 32), seed: int = 0) -> torch.Tensor:
    return torch.randn(num_clips, num_frames, 3, *size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("blocks", "paper_millions", "exact"),
    [
        (dict(mae=False, bme=False), 24.79, 24_792_128),
        (dict(mae=True, bme=False), 26.43, 26_432_448),
        (dict(mae=True, bme=True, zero_init=False), 29.06, 29_056_960),
    ],
)
def test_table3_parameter_counts(blocks: dict, paper_millions: float, exact: int) -> None:
    net = VideoReIDNet("resnet50", num_classes=625, stages=(2, 3), **blocks)
    assert round(_count(net) / 1e6, 2) == paper_millions  # Table 3 of the paper
    assert _count(net) == exact


def test_identity_init_keeps_the_paper_parameters() -> None:
    net = VideoReIDNet("resnet50", num_classes=625, stages=(2, 3))
    assert _count(net) == 29_056_960  # Table 3's +MAE+BME with the default (identity) initialization


CPU = torch.device("cpu")


def _small(device: torch.device = CPU) -> VideoReIDNet:
    torch.manual_seed(0)
    net = VideoReIDNet("resnet18", num_classes=7, stages=(2, 3), num_frames=4)
    with torch.no_grad():
        for param in net.backbone.lstrl.parameters():
            param.normal_(std=0.05)  # blocks away from the identity, so clips could interact
    return net.to(device)


def test_train_mode_returns_logits_and_pre_bn_feature(device: torch.device) -> None:
    net = _small(device).train()
    logits, feature = net(_video(3, 4).to(device))
    assert logits.shape == (3, 7) and feature.shape == (3, net.feature_dim) == (3, 512)
    (logits.logsumexp(1).mean() + feature.norm(dim=1).mean()).backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert net.bottleneck.bias.grad is None  # BNNeck: frozen zero bias


@pytest.mark.parametrize("num_frames", [1, 2, 3, 8])
def test_eval_takes_any_number_of_frames(num_frames: int, device: torch.device) -> None:
    net = _small(device).eval()
    video = _video(2, num_frames).to(device)
    with torch.no_grad():
        embedding = net(video)
        assert all(m.num_frames == 4 for m in net.modules() if isinstance(m, ClipBlock))  # T is not stored
        # the same as the backbone's frames path with the blocks set to T
        set_num_frames(net.backbone, num_frames)
        frames = net.backbone(video.flatten(0, 1)).unflatten(0, (2, num_frames)).mean(1)
    assert embedding.shape == (2, 512) and torch.isfinite(embedding).all()
    torch.testing.assert_close(embedding, net.bottleneck(frames), rtol=0, atol=1e-5)


def test_each_clip_is_independent_of_the_batch_in_eval(device: torch.device) -> None:
    net = _small(device).eval()
    video = _video(3, 4).to(device)
    with torch.no_grad():
        together = net(video)
        for i in range(3):
            torch.testing.assert_close(net(video[i : i + 1])[0], together[i], atol=1e-5, rtol=1e-5)
        other = video.clone()
        other[0] = _video(1, 4, seed=1)[0].to(device)  # change clip 0 only
        changed = net(other)
    torch.testing.assert_close(changed[1:], together[1:], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(changed[0], together[0])


def test_eval_embedding_is_the_bnneck_of_tap_of_gap(device: torch.device) -> None:
    net = _small(device).eval()
    video = _video(2, 3).to(device)
    with torch.no_grad():
        set_num_frames(net.backbone, 3)  # the frames path, at the video's T
        maps = net.backbone.forward_features(video.flatten(0, 1))
        frame_features = maps.mean(dim=(2, 3))  # GAP
        clip_features = frame_features.unflatten(0, (2, 3)).mean(dim=1)  # TAP
        expected = net.bottleneck(clip_features)  # BNNeck (running statistics in eval)
        torch.testing.assert_close(net(video), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("last_stride", "map_size"), [(1, (16, 8)), (2, (8, 4))])
def test_last_stride(last_stride: int, map_size: tuple[int, int]) -> None:
    net = VideoReIDNet("resnet18", num_classes=3, stages=(2,), num_frames=1, last_stride=last_stride).eval()
    with torch.no_grad():
        maps = net.backbone.forward_features(torch.randn(1, 3, 256, 128))
    assert maps.shape[-2:] == map_size  # paper: 16x8 at 256x128 with the last stride removed


def test_last_stride_one_on_resnet_d_replaces_the_shortcut_pool() -> None:
    net = VideoReIDNet("resnet26d", num_classes=3, stages=(3,), num_frames=1).eval()
    assert isinstance(net.backbone.layer4[0].downsample[0], torch.nn.Identity)
    with torch.no_grad():
        assert net.backbone.forward_features(torch.randn(1, 3, 64, 32)).shape[-2:] == (4, 2)


def test_last_stride_one_refused_where_it_cannot_apply() -> None:
    with pytest.raises(ValueError, match="last_stride=1 does not know how to remove the stride of stages.3"):
        VideoReIDNet("convnext_atto", num_classes=3, stages=(2,))
    VideoReIDNet("convnext_atto", num_classes=3, stages=(2,), last_stride=2)  # and the way out works


def test_baseline_has_no_blocks_and_timm_kwargs_pass_through() -> None:
    net = VideoReIDNet("resnet18", num_classes=3, stages=(), drop_rate=0.25)
    assert not hasattr(net.backbone, "lstrl") and net.backbone.drop_rate == 0.25
    assert net.eval()(_video(1, 2)).shape == (1, 512)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(num_classes=0), ValueError, "num_classes must be an int >= 1, got 0"),
        (dict(num_classes=3.0), TypeError, r"num_classes must be an int >= 1, got 3.0 \(float\)"),
        (dict(num_classes=3, last_stride=3), ValueError, "last_stride must be 1 or 2, got 3"),
        (dict(num_classes=3, last_stride=True), TypeError, r"last_stride must be 1 or 2, got True \(bool\)"),
        (dict(num_classes=3, last_stride=1.0), TypeError, r"last_stride must be 1 or 2, got 1.0 \(float\)"),
        (dict(num_classes=3, stages=(9,)), ValueError, "stage index 9 does not exist"),
        (
            dict(num_classes=3, stages=None),
            TypeError,
            r"stages must be a list .*\(empty for none\).* got None",
        ),
        (dict(num_classes=3, stages=2), TypeError, r"stages must be a list .* got 2 \(int\)"),
        (dict(num_classes=3, num_frames=0), ValueError, "num_frames must be an int >= 1, got 0"),
        (dict(num_classes=3, pretrained="no"), TypeError, r"pretrained must be True or False, got 'no'"),
        (dict(num_classes=3, mae=0), TypeError, r"mae must be True or False, got 0 \(int\)"),
        (dict(num_classes=3, bme_kwargs=[1]), TypeError, "bme_kwargs must be a dict of keyword arguments"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        VideoReIDNet("resnet18", **kwargs)


def test_bad_backbone() -> None:
    with pytest.raises(
        ValueError, match=r"backbone must be a timm model, got 'resnet_9000', which timm does"
    ):
        VideoReIDNet("resnet_9000", num_classes=3)
    with pytest.raises(
        TypeError, match=r"backbone must be the name of a timm model, .* or an nn.Module, got 3"
    ):
        VideoReIDNet(3, num_classes=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"cannot tell what input Identity takes .* pass input_size="):
        VideoReIDNet(torch.nn.Identity(), num_classes=3, stages=())


@pytest.mark.parametrize(
    ("video", "error", "message"),
    [
        (
            torch.randn(8, 3, 64, 32),
            ValueError,
            r"expects a video \(B, T, C=3, H, W\) of floats, got shape \(8,",
        ),
        (torch.randn(2, 0, 3, 64, 32), ValueError, r"with T >= 1, got \(2, 0, 3, 64, 32\)"),
        (torch.randn(2, 2, 3, 0, 32), ValueError, r"with H, W >= 1, got \(2, 2, 3, 0, 32\)"),
        (torch.randn(2, 2, 3, 64, 0), ValueError, r"with H, W >= 1, got \(2, 2, 3, 64, 0\)"),
        (torch.randn(2, 2, 1, 64, 32), ValueError, r"got C = 1 in shape \(2, 2, 1, 64, 32\)"),
        (torch.zeros(2, 2, 3, 64, 32, dtype=torch.uint8), TypeError, "got dtype torch.uint8"),
        ([torch.randn(2, 3, 64, 32)], TypeError, r"expects a video .*, got list"),
    ],
)
def test_bad_video(video: object, error: type[Exception], message: str) -> None:
    net = _small()
    for mode in (net.train(), net.eval()):
        with pytest.raises(error, match=message):
            mode(video)


def test_one_clip_in_train_mode_is_refused_and_works_in_eval() -> None:
    net = _small().train()
    with pytest.raises(
        ValueError, match=r"B >= 2 clips in train mode .* call .eval\(\) to embed a single clip"
    ):
        net(_video(1, 2))
    assert net.eval()(_video(1, 2)).shape == (1, 512)
    net.train().bottleneck.eval()  # a frozen BNNeck uses its running statistics: one clip is fine
    logits, feature = net(_video(1, 2))
    assert logits.shape == (1, 7) and feature.shape == (1, 512)


# ---- a ready backbone module (torchvision, your own)


def _torchvision_resnet(depth: int = 50) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    resnet = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth]()
    resnet.fc = torch.nn.Identity()  # the frame feature, not ImageNet logits
    return resnet


def test_torchvision_resnet50_backbone_is_the_papers_model() -> None:
    """Same blocks, last stride, GAP, TAP and BNNeck as the timm model, on torchvision's ResNet-50."""
    net = VideoReIDNet(_torchvision_resnet(), num_classes=625, stages=("layer2", "layer3"), num_frames=2)
    timm_net = VideoReIDNet("resnet50", num_classes=625, stages=(2, 3), num_frames=2)
    assert _count(net) == _count(timm_net) == 29_056_960  # Table 3's +MAE+BME
    assert net.feature_dim == 2048 and {k: b.channels for k, b in net.backbone.lstrl.items()} == {
        "layer2": 512,
        "layer3": 1024,
    }
    assert net.backbone.layer4[0].conv2.stride == net.backbone.layer4[0].downsample[0].stride == (1, 1)
    maps = {}
    net.backbone.layer4.register_forward_hook(lambda m, args, out: maps.update(out=out))
    net.eval()
    video = _video(2, 2, size=(256, 128))
    with torch.no_grad():
        embedding = net(video)
    assert maps["out"].shape[-2:] == (16, 8)  # last stride 1: 16x8 at 256x128, as the paper's ResNet-50
    clip_features = maps["out"].mean(dim=(2, 3)).unflatten(0, (2, 2)).mean(dim=1)  # GAP, then TAP
    torch.testing.assert_close(embedding, net.bottleneck(clip_features), atol=1e-5, rtol=1e-5)


def test_backbone_module_trains_end_to_end(device: torch.device) -> None:
    net = VideoReIDNet(_torchvision_resnet(18), num_classes=5, stages=("layer3.1",), num_frames=3).to(device)
    logits, feature = net.train()(_video(2, 3).to(device))
    assert logits.shape == (2, 5) and feature.shape == (2, 512)
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in net.backbone.lstrl.parameters())


class _MapBackbone(torch.nn.Module):
    """Gives a feature map per frame: VideoReIDNet pools it (GAP)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.stage = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(self.stem(x))


def test_a_backbone_giving_feature_maps_is_pooled_and_its_last_stride_removed() -> None:
    backbone = _MapBackbone()
    net = VideoReIDNet(backbone, num_classes=3, stages=("stem",), num_frames=2, input_size=(3, 32, 16)).eval()
    assert backbone.stage[0].stride == (1, 1) and backbone.stem.stride == (2, 2)  # only the last one
    video = _video(2, 2, size=(32, 16))
    with torch.no_grad():
        maps = backbone(video.flatten(0, 1))
        assert maps.shape == (4, 16, 16, 8)
        expected = net.bottleneck(maps.mean(dim=(2, 3)).unflatten(0, (2, 2)).mean(dim=1))
        torch.testing.assert_close(net(video), expected)


def test_backbone_module_refusals() -> None:
    with pytest.raises(ValueError, match=r"pretrained and timm keyword arguments apply to a timm model name"):
        VideoReIDNet(_torchvision_resnet(18), num_classes=3, stages=(), pretrained=True)
    with pytest.raises(ValueError, match=r"integer stages index timm's feature_info, which ResNet does not"):
        VideoReIDNet(_torchvision_resnet(18), num_classes=3, stages=(2, 3))
    tokens = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 4, stride=4), torch.nn.Flatten(2))  # (N, C, L)
    with pytest.raises(
        ValueError, match=r"must give one feature vector \(N, D\) or feature map .* got shape"
    ):
        VideoReIDNet(tokens, num_classes=3, stages=(), last_stride=2, input_size=(3, 16, 8))
    with pytest.raises(ValueError, match=r"last_stride=1: found no stride-2 layer in the model"):
        VideoReIDNet(torch.nn.Conv2d(3, 4, 1), num_classes=3, stages=(), input_size=(3, 16, 8))


def test_a_refused_backbone_module_is_left_as_it_came() -> None:
    backbone = _torchvision_resnet(18)
    with pytest.raises(ValueError, match=r"stage 'layer9' does not exist in ResNet"):
        VideoReIDNet(backbone, num_classes=3, stages=("layer2", "layer9"), input_size=(3, 64, 32))
    assert backbone.layer4[0].conv1.stride == backbone.layer4[0].downsample[0].stride == (2, 2)
    assert not hasattr(backbone, "lstrl")
    # a model that fails once its last stride is removed: the strides come back
    fixed = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 4, 6)
    )
    with pytest.raises(
        ValueError, match=r"after last_stride=1 removed the stride of \['0'\] .* made the model fail"
    ):
        VideoReIDNet(fixed, num_classes=3, stages=(), input_size=(3, 16, 8))
    assert fixed[0].stride == (2, 2)
    assert (
        VideoReIDNet(fixed, num_classes=3, stages=(), input_size=(3, 16, 8), last_stride=2).feature_dim == 6
    )


def _weights_file(path, kind: str):  # noqa: ANN001, ANN202
    import timm

    if kind in ("another architecture", "a deeper ResNet", "other widths"):
        name = {"another architecture": "test_resnet", "a deeper ResNet": "resnet34"}.get(kind, "resnet18")
        state = timm.create_model(name).state_dict()
        if kind == "other widths":  # the same keys, another shape
            state["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
        torch.save(state, path)
    elif kind == "not a state dict":
        torch.save({"epoch": 3, "note": "hello"}, path)
    else:  # truncated
        torch.save(timm.create_model("resnet18").state_dict(), path)
        path.write_bytes(path.read_bytes()[:1000])
    return path


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        (
            "another architecture",
            r"^backbone weights .*w.pth are not resnet18's: 64 missing \(e.g. 'conv1.weight'\), "
            r"34 unexpected",
        ),
        (
            "a deeper ResNet",
            r"^backbone weights .*w.pth are not resnet18's: \d+ unexpected \(e.g. 'layer1.2.",
        ),
        (
            "other widths",
            r"^backbone weights .*w.pth do not fit resnet18: size mismatch for layer1.0.conv1.weight: "
            r"copying a param ",
        ),
        ("not a state dict", r"^backbone weights .*w.pth are not a state dict \(a dict of tensors"),
        ("truncated", r"^backbone weights .*w.pth cannot be read \(RuntimeError: PytorchStreamReader failed"),
    ],
)
def test_a_wrong_weights_file_is_refused_in_one_line(kind: str, match: str, tmp_path) -> None:  # noqa: ANN001
    path = _weights_file(tmp_path / "w.pth", kind)
    with pytest.raises(ValueError, match=match) as info:
        VideoReIDNet("resnet18", num_classes=3, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert "\n" not in str(info.value)


def test_pretrained_weights_offline_are_refused_in_seconds(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import socket
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(
        socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(OSError("offline"))
    )
    start = time.perf_counter()
    with pytest.raises(
        ValueError, match=r"^the pretrained weights of resnet18 are not cached and HF_HUB_OFFLINE"
    ):
        VideoReIDNet("resnet18", num_classes=3, pretrained=True)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        (dict(stages=(), mae_kwargs=dict(scale=0.5)),
         r"^mae_kwargs apply to the MAE blocks, and this model has none \(stages=\(\), mae=True\), got "
         r"mae_kwargs=\{'scale': 0.5\}$"),
        (dict(bme=False, bme_kwargs=dict(edge="replicate")), r"^bme_kwargs=\{'edge': 'replicate'\} given but "
         r"bme=False$"),
    ],
)  # fmt: skip
def test_block_arguments_without_the_block_are_refused(arguments: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VideoReIDNet("resnet18", num_classes=3, **arguments)


@pytest.mark.parametrize(
    ("block_arguments", "error"),
    [
        (dict(bme=False, bme_kwargs=dict(edge="replicate")), ValueError),
        (dict(mae_kwargs=dict(channels=8)), ValueError),
        (dict(mae_kwargs=dict(reductoin=2)), ValueError),
        (dict(zero_init="yes"), TypeError),
        (dict(mae_kwargs=[("scale", 0.5)]), TypeError),
        (dict(mae="yes"), TypeError),
        (dict(last_stride=True), TypeError),
        (dict(last_stride=3), ValueError),
    ],
)
def test_the_settings_refuse_model_arguments_as_the_model_does(block_arguments: dict, error: type) -> None:
    from lstrl_layers.reid.engine.settings import TrainSettings

    flags = {k: v for k, v in block_arguments.items() if k in ("mae", "bme", "last_stride")}
    model_kwargs = {k: v for k, v in block_arguments.items() if k not in flags}
    with pytest.raises(error) as by_model:
        VideoReIDNet("resnet18", num_classes=3, **block_arguments)
    with pytest.raises(error) as by_settings:  # when the settings are made, before any model is built
        TrainSettings(pretrained=False, model_kwargs=model_kwargs, **flags)
    assert str(by_settings.value) == str(by_model.value)
