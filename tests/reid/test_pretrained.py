"""save_pretrained / from_pretrained: config.json + model.safetensors, back in eval mode; wrong folders, files
and Hub ids refused in one line (the Hub is never reached: local folders, an empty cache and no network)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import torch
import torchvision

from lstrl_layers import VideoReIDNet
from lstrl_layers.reid import load_model, save_model


def _net(**kwargs: object) -> VideoReIDNet:
    torch.manual_seed(0)
    net = VideoReIDNet("test_resnet", num_classes=3, stages=(2, 3), num_frames=4, **kwargs)  # type: ignore[arg-type]
    with torch.no_grad():
        for param in net.backbone.lstrl.parameters():
            param.normal_(std=0.05)
        net.bottleneck.running_mean.normal_()  # eval-mode statistics that differ from a fresh model's
    return net


def _clip() -> torch.Tensor:
    return torch.randn(1, 3, 3, 32, 16, generator=torch.Generator().manual_seed(1))


_BLOCK_ARGUMENTS = [dict(mae_kwargs=dict(granularities=(1, 4))), dict(bme_kwargs=dict(ls_init_value=0.1))]


@pytest.mark.parametrize("kwargs", _BLOCK_ARGUMENTS)
def test_round_trip_in_eval_mode(kwargs: dict, tmp_path: Path) -> None:
    net = _net(**kwargs)
    net.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors"]
    loaded = VideoReIDNet.from_pretrained(tmp_path / "model")
    assert not loaded.training
    assert json.dumps(loaded.config) == json.dumps(net.config)  # the same arguments (tuples as JSON lists)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(_clip()), net.eval()(_clip()), rtol=0, atol=0
        )  # one clip, as deployed


@pytest.mark.parametrize("kwargs", [dict(), *_BLOCK_ARGUMENTS])
def test_load_model_returns_eval_mode(kwargs: dict, tmp_path: Path) -> None:
    net = _net(**kwargs)
    save_model(tmp_path / "model.pt", net)
    loaded = load_model(tmp_path / "model.pt")
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(_clip()), net.eval()(_clip()), rtol=0, atol=0)


def test_a_backbone_module_is_refused(tmp_path: Path) -> None:
    resnet = torchvision.models.resnet18()
    resnet.fc = torch.nn.Identity()
    net = VideoReIDNet(resnet, num_classes=3, stages=("layer3",), input_size=(3, 32, 16))
    with pytest.raises(ValueError, match=r"^save_pretrained stores a timm backbone by name.*ResNet"):
        net.save_pretrained(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def _saved(tmp_path: Path) -> Path:
    return _net().save_pretrained(tmp_path / "model")


def test_a_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ValueError, match=r"empty has no config.json: it is not a folder written by save_pretrained$"
    ):
        VideoReIDNet.from_pretrained(tmp_path / "empty")


def test_a_config_of_another_kind(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(
        ValueError, match=r"config.json is not a lstrl_layers.video_reid_net/1 config \(its format is None\)"
    ):
        VideoReIDNet.from_pretrained(folder)


def test_weights_of_another_model(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    other = VideoReIDNet("test_resnet", num_classes=5, stages=(3,), num_frames=4).save_pretrained(
        tmp_path / "other"
    )
    (other / "config.json").replace(folder / "config.json")
    with pytest.raises(
        ValueError,
        match=r"the weights in .*model.safetensors are not those of VideoReIDNet as configured: "
        r"\d+ unexpected \(e.g. 'backbone.lstrl.layer2.*'\), "
        r"1 of another shape \(e.g. 'classifier.weight'\) keys",
    ):
        VideoReIDNet.from_pretrained(folder)


def test_truncated_weights(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model.safetensors cannot be read as safetensors"):
        VideoReIDNet.from_pretrained(folder)


def test_no_such_folder(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"no such directory: .*nowhere/model \(nor a Hugging Face Hub id"
    ):
        VideoReIDNet.from_pretrained(tmp_path / "nowhere" / "model")


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)  # "owner/name" is not a local folder


def test_a_hub_id_offline_is_refused_in_seconds(
    empty_hub_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(
        ValueError,
        match=r"^someone/lstrl-mars is not in the Hugging Face cache and HF_HUB_OFFLINE is set: pass",
    ):
        VideoReIDNet.from_pretrained("someone/lstrl-mars")
    assert time.perf_counter() - start < 5


def test_a_hub_id_without_network_is_refused_in_seconds(
    empty_hub_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    start = time.perf_counter()
    with pytest.raises(
        ValueError,
        match=r"^someone/lstrl-mars is not in the Hugging Face cache and huggingface.co cannot be "
        r"reached \(OSError: Network is unreachable\): pass the local directory",
    ):
        VideoReIDNet.from_pretrained("someone/lstrl-mars")
    assert time.perf_counter() - start < 5
