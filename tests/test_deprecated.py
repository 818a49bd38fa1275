"""Code and files of earlier versions: old import paths warn and work, old checkpoints and models load."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
from _tiny import TINY_RESNET, tiny_data

from lstrl_layers import VideoReIDNet
from lstrl_layers._deprecated import MOVED_MODULES, REMOVED_IN
from lstrl_layers.reid import TrainSettings, fit, load_model
from lstrl_layers.reid.engine import load_checkpoint

OLD_FILES = Path(__file__).parent / "data" / "v0_2_0_dev0"  # written by 0.2.0.dev0, see its README


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_an_old_module_path_warns_once_and_gives_the_new_modules_names(old: str) -> None:
    new = importlib.import_module(MOVED_MODULES[old])
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {MOVED_MODULES[old]}; .* {REMOVED_IN}"):
        module = importlib.import_module(old)
    public = [name for name in vars(new) if not name.startswith("_")]
    assert public and all(getattr(module, name) is getattr(new, name) for name in public)
    assert sorted(dir(module)) == sorted(dir(new))


def test_a_model_file_of_0_2_0_dev0_gives_the_embeddings_it_gave_then() -> None:
    stored = torch.load(OLD_FILES / "embeddings.pt", weights_only=True)
    model = load_model(OLD_FILES / "model.pt")
    assert not model.training
    with torch.no_grad():
        torch.testing.assert_close(model(stored["video"]), stored["embeddings"], rtol=1e-5, atol=1e-6)


def test_a_training_checkpoint_of_0_2_0_dev0_resumes(tmp_path: Path) -> None:
    checkpoint = load_checkpoint(OLD_FILES / "checkpoint.pt")
    assert "model" in checkpoint["settings"]  # the name of the backbone setting then
    settings = TrainSettings.from_dict({**checkpoint["settings"], "epochs": 2})
    assert settings.backbone == "resnet18"
    data = tiny_data()
    history = fit(settings, data, resume=OLD_FILES / "checkpoint.pt", log=lambda message: None).history
    assert [entry["epoch"] for entry in history] == [0, 1, 2]
    assert history[:2] == checkpoint["history"]


def test_files_of_0_1_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = VideoReIDNet("resnet18", 4, stages=(2,), num_frames=2, **TINY_RESNET).eval()
    old_arguments = {("model_name" if k == "backbone" else k): v for k, v in model.config.items()}
    del old_arguments["input_size"]  # 0.1 had neither "backbone" nor "input_size"
    old = {
        "format": "lstrl_layers.video_reid_net/1",
        "arguments": old_arguments,
        "state_dict": model.state_dict(),
    }
    torch.save(old, tmp_path / "old.pt")
    video = torch.randn(2, 2, 3, 32, 16)
    torch.testing.assert_close(load_model(tmp_path / "old.pt")(video), model(video))
    settings = TrainSettings.from_dict({"model": "resnet18", "pretrained": False, "test_sampling": "rrs"})
    assert (settings.backbone, settings.test_sampling) == ("resnet18", "first")  # "rrs": 0.1's "first"
