"""The engine when things go wrong or are replaced: signals, non-finite losses, broken frames, another number
of processes, factories, settings checked on construction, atomic files, TensorBoard, pictures, re-ranking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from _processes import run_on_two_processes  # noqa: E402
from _scripts import ROOT  # noqa: E402
from _tiny import TINY_RESNET, tiny_data, tiny_settings

from lstrl_layers import VideoReIDNet
from lstrl_layers._files import atomic_path, write_json
from lstrl_layers.reid import ReIDLoss, Tracklet, VideoReIDData
from lstrl_layers.reid.data import UnreadableFrame
from lstrl_layers.reid.engine import (
    Hook,
    NonFiniteLoss,
    TrainingInterrupted,
    TrainSettings,
    TrainState,
    build_model,
    evaluate_trained,
    fit,
    train_step,
)
from lstrl_layers.reid.engine.checkpoint import load_checkpoint
from lstrl_layers.reid.engine.distributed import World
from lstrl_layers.reid.engine.settings import default_workers

SCRIPT = ROOT / "examples" / "train_video_reid.py"


def _settings(**overrides: Any) -> TrainSettings:
    return tiny_settings(**{"max_steps": 3, "epochs": 2, **overrides})


def _quiet(message: str) -> None:
    pass


# ---- settings


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (
            dict(test_sampling="RRS"),
            ValueError,
            r"test_sampling must be one of \('first', 'even', 'dense'\), got 'RRS'",
        ),
        (dict(metric="l2"), ValueError, r"metric must be one of \('cosine', 'euclidean'\), got 'l2'"),
        (dict(K=1), ValueError, r"triplet loss needs P >= 2 identities of K >= 2 clips .* got P=2, K=1"),
        (
            dict(P=1, K=1, triplet_weight=0.0, lr=-1.0),
            ValueError,
            r"lr must be a positive, finite float, got -1",
        ),
        (dict(epochs=0), ValueError, r"epochs must be an int >= 1, got 0"),
        (dict(workers=-1), ValueError, r"workers must be an int >= 0, got -1"),
        (dict(num_frames=2.0), TypeError, r"num_frames must be an int >= 1, got 2.0 \(float\)"),
        (dict(amp="yes"), TypeError, r"amp must be True or False, got 'yes' \(str\)"),
        (dict(size=(32,)), TypeError, r"size must be \(H, W\), two ints >= 1, got \(32,\)"),
        (dict(erasing=1.5), ValueError, r"erasing must be a probability in \[0, 1\], got 1.5"),
        (dict(stages=[2.5]), TypeError, r"stages must hold ints or str, got 2.5 \(float\)"),
        (dict(weights=3), TypeError, r"weights must be the path of a file \(str\) or None, got 3 \(int\)"),
        # a setting the others leave without effect
        (dict(bme=False, bme_lr_factor=10.0), ValueError,
         r"^bme_lr_factor=10.0 would have no effect: BME's parameters learn at that factor, and this model "
         r"has no BME \(stages=\(2, 3\), bme=False\)$"),
        (dict(stages=(), bme_lr_factor=10.0), ValueError,
         r"^bme_lr_factor=10.0 would have no effect: .*stages=\(\)"),
        (dict(direction_lr_factor=30.0), ValueError,
         r"^direction_lr_factor=30.0 would have no effect: BME's delta learns at that factor, and this "
         r"model's BME has none \(model_kwargs=dict\(bme_kwargs=dict\(antisymmetric=True\)\) adds it\)$"),
        (dict(bme=False, direction_lr_factor=30.0, model_kwargs=dict(bme_kwargs=dict(antisymmetric=True))),
         ValueError, r"^bme_kwargs=\{'antisymmetric': True\} given but bme=False"),  # a branch that is off
        (dict(direction_lr_factor=0.0), ValueError, r"direction_lr_factor must be a positive, finite float"),
        (dict(max_test_clips=4), ValueError,
         r"^max_test_clips=4 would have no effect: it limits the clips of test_sampling='dense', and "
         r"test_sampling is 'first'$"),
        (dict(weights="w.pth"), ValueError,
         r"^weights='w.pth' would have no effect: they are pretrained backbone weights, and "
         r"pretrained=False$"),
        (dict(margin=0.5, triplet_weight=0.0), ValueError,
         r"^margin=0.5 would have no effect: it is the triplet loss's, and triplet_weight=0$"),
        (dict(sync_bn=True, freeze_bn=True), ValueError,
         r"^sync_bn=True would have no effect: it synchronizes"),
    ],
)  # fmt: skip
def test_settings_are_checked_when_made(overrides: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        _settings(**overrides)


def test_cross_entropy_alone_allows_one_clip_per_identity() -> None:
    assert _settings(K=1, triplet_weight=0.0).K == 1


def test_workers_default_to_at_most_the_cores() -> None:
    assert TrainSettings().workers == default_workers() <= max(os.cpu_count() or 1, 0)


def test_weights_file_is_loaded_instead_of_a_download(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(1)
    source = timm.create_model("resnet18", pretrained=False, num_classes=0, **TINY_RESNET)
    torch.save(source.state_dict(), tmp_path / "backbone.pth")
    settings = _settings(pretrained=True, weights=str(tmp_path / "backbone.pth"), stages=())
    model = build_model(settings, num_classes=3)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value, msg=key)


# ---- the loss and the factories


class _DoubledLoss(ReIDLoss):
    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = super().forward(*args, **kwargs)
        return 2 * total, {**parts, "loss": 2 * parts["loss"]}


def test_train_step_forms_the_loss_with_the_criterion_given() -> None:
    torch.manual_seed(0)
    model = VideoReIDNet("resnet18", 2, stages=(), num_frames=2, **TINY_RESNET)
    clips, pids = torch.randn(4, 2, 3, 32, 16), torch.tensor([0, 0, 1, 1])
    plain = train_step(
        model, ReIDLoss(), torch.optim.SGD(model.parameters(), lr=0.0), clips, pids, _settings(), World()
    )
    doubled = train_step(
        model, _DoubledLoss(), torch.optim.SGD(model.parameters(), lr=0.0), clips, pids, _settings(), World()
    )
    assert doubled["loss"] == pytest.approx(2 * plain["loss"]) and doubled["ce"] == pytest.approx(plain["ce"])


def test_fit_trains_with_the_factories_given(tmp_path: Path) -> None:
    built: dict[str, Any] = {}

    def model_factory(settings: TrainSettings, num_classes: int) -> VideoReIDNet:
        built["model"] = VideoReIDNet("resnet18", num_classes, stages=(3,), num_frames=2, **TINY_RESNET)
        return built["model"]

    def optimizer_factory(settings: TrainSettings, model: torch.nn.Module) -> tuple[Any, Any]:
        built["optimizer"] = torch.optim.SGD(model.parameters(), lr=0.01)
        return built["optimizer"], torch.optim.lr_scheduler.ConstantLR(built["optimizer"], factor=1.0)

    history = fit(
        _settings(epochs=1), tiny_data(), out=tmp_path, log=_quiet, model_factory=model_factory,
        loss_factory=lambda settings: _DoubledLoss(), optimizer_factory=optimizer_factory,
    ).history  # fmt: skip
    assert list(built["model"].backbone.lstrl) == ["layer3"]
    group = load_checkpoint(tmp_path / "checkpoint.pt")["optimizer"]["param_groups"][0]
    assert "momentum" in group and "betas" not in group and group["lr"] == 0.01  # SGD's, not Adam's
    assert history[-1]["loss"] > 0


# ---- faults


class _NanOnFourthStep(ReIDLoss):
    calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = super().forward(*args, **kwargs)
        type(self).calls += 1
        if type(self).calls == 4:  # epoch 2, step 2 (4 identities, P = 2: 2 steps per epoch)
            return total * float("nan"), {**parts, "loss": float("nan")}
        return total, parts


def test_a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    _NanOnFourthStep.calls = 0
    with pytest.raises(NonFiniteLoss, match=r"epoch 2, step 2: the loss is nan \(cross-entropy"):
        fit(_settings(), tiny_data(), out=tmp_path, log=_quiet, loss_factory=lambda s: _NanOnFourthStep())
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1 and state["partial"] is None  # the last finished epoch, untouched
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def _broken_frames(tmp_path: Path) -> VideoReIDData:
    """Synthetic identities written as JPEG files, one of them truncated."""
    from PIL import Image

    data = tiny_data()

    def as_files(part: str, tracklets: list[Tracklet]) -> list[Tracklet]:
        written = []
        for t, tracklet in enumerate(tracklets):
            paths = []
            for f, frame in enumerate(tracklet.frames):
                path = tmp_path / f"{part}_{t}_{f}.jpg"
                Image.fromarray(frame.permute(1, 2, 0).numpy()).save(path)
                paths.append(str(path))
            written.append(Tracklet(tuple(paths), tracklet.pid, tracklet.camid))
        return written

    train = as_files("train", data.train)
    for frame in train[1].frames:
        Path(frame).write_bytes(Path(frame).read_bytes()[:200])  # truncated JPEGs
    return VideoReIDData(
        train, as_files("query", data.query), as_files("gallery", data.gallery), 4, name="toy"
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_an_undecodable_frame_names_the_file_in_the_main_process(tmp_path: Path, workers: int) -> None:
    data = _broken_frames(tmp_path)
    tracklet = data.train[1]
    where = rf"toy train: frame (\d+) of tracklet 1 \(identity {tracklet.pid}, camera {tracklet.camid}\)"
    with pytest.raises(UnreadableFrame, match=where + " cannot be decoded: ") as info:
        fit(_settings(workers=workers, epochs=1, max_steps=None, eval_every=5), data, log=_quiet)
    assert str(tmp_path / "train_1_") in str(info.value) and "OSError" in str(info.value)


def _run_cli(args: list[str], **kwargs: Any) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs
    )


CLI_TINY = [
    "--synthetic", "--synthetic-ids", "12", "3", "--size", "32", "16", "-T", "2", "-P", "2", "-K", "2",
    "--backbone", "resnet18", "--test-batch", "8", "--epochs", "3", "--no-progress", "--device", "cpu",
    "--workers", "0", "--threads", "1", "--eval-every", "1",
]  # fmt: skip


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_resume_gives_the_uninterrupted_history(tmp_path: Path) -> None:
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    reference = _run_cli([*CLI_TINY, "--out", str(whole)])
    run = _run_cli([*CLI_TINY, "--out", str(stopped)])
    deadline = time.time() + 120
    while not (stopped / "checkpoint.pt").exists() and time.time() < deadline and run.poll() is None:
        time.sleep(0.02)  # epoch 0 evaluated and saved: training has begun
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM at " in out and f"continue with --resume {stopped}" in out
    state = load_checkpoint(stopped / "checkpoint.pt")
    assert state["epoch"] < 3  # it did stop before the end
    resumed = _run_cli([*CLI_TINY, "--out", str(stopped), "--resume", str(stopped)])
    assert resumed.wait(timeout=300) == 0, resumed.communicate()[1]
    assert reference.wait(timeout=300) == 0, reference.communicate()[1]
    expected = json.loads((whole / "metrics.json").read_text())
    assert json.loads((stopped / "metrics.json").read_text()) == expected


class _SignalOnThirdStep(ReIDLoss):
    """Sends this process SIGTERM during its third step (epoch 2, step 1 of 2): a stop in mid-epoch."""

    calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, dict[str, float]]:
        type(self).calls += 1
        if type(self).calls == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().forward(*args, **kwargs)


@pytest.mark.slow
def test_a_stop_in_mid_epoch_resumes_exactly(tmp_path: Path) -> None:
    settings = _settings(epochs=3, max_steps=None)
    expected = fit(settings, tiny_data(), log=_quiet).history
    _SignalOnThirdStep.calls = 0
    in_api_terms = r"continue with fit\(\.\.\., resume='.*'\)$"  # the script says --resume
    with pytest.raises(
        TrainingInterrupted,
        match=r"^stopped by SIGTERM at epoch 2, step 1: checkpoint written .*" + in_api_terms,
    ) as info:
        fit(settings, tiny_data(), out=tmp_path, log=_quiet, loss_factory=lambda s: _SignalOnThirdStep())
    assert info.value.checkpoint == tmp_path / "checkpoint.pt"
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1 and state["partial"]["steps"] == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the run
    said: list[str] = []
    assert fit(settings, tiny_data(), out=tmp_path, resume=tmp_path, log=said.append).history == expected
    assert any("at epoch 1, step 1 of epoch 2" in line for line in said)


class _SignalAfterFirstEvaluation(Hook):
    """Sends this process SIGTERM once the evaluation before training is done: a stop before epoch 1."""

    def after_evaluation(self, state: TrainState) -> None:
        if state.epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_a_stop_before_the_first_epoch_resumes_without_a_second_evaluation(tmp_path: Path) -> None:
    settings = _settings(epochs=2)
    expected = fit(settings, tiny_data(), log=_quiet).history
    with pytest.raises(TrainingInterrupted, match=r"^stopped by SIGTERM at the end of epoch 0: "):
        fit(settings, tiny_data(), out=tmp_path, log=_quiet, hooks=[_SignalAfterFirstEvaluation()])
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 0
    resumed = fit(settings, tiny_data(), out=tmp_path, resume=tmp_path, log=_quiet).history
    assert [h["epoch"] for h in resumed] == [0, 1, 2]
    assert resumed == expected


def _resume_worker(rank: int, out: str) -> None:
    fit(_settings(epochs=1), tiny_data(), out=out, log=_quiet)


@pytest.mark.slow
def test_resume_on_another_number_of_processes_keeps_the_global_batches(tmp_path: Path) -> None:
    run_on_two_processes(_resume_worker, str(tmp_path))
    assert len(load_checkpoint(tmp_path / "checkpoint.pt")["random_states"]) == 2
    said: list[str] = []
    history = fit(_settings(epochs=2), tiny_data(), out=tmp_path, resume=tmp_path, log=said.append).history
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert any(
        "resuming a run of 2 process(es) on 1: the global batches come in the same order" in s for s in said
    )


# ---- files, TensorBoard, pictures, re-ranking


def test_an_atomic_write_that_fails_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_json(path, {"epochs": [1]})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_text('{"epochs": [1, 2')
            raise RuntimeError("disk full")
    assert json.loads(path.read_text()) == {"epochs": [1]} and sorted(tmp_path.iterdir()) == [path]


def test_fit_writes_mINP_pictures_tensorboard_and_reranked_figures(tmp_path: Path) -> None:
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = fit(
        _settings(epochs=1, rerank=True),
        tiny_data(),
        out=tmp_path / "run",
        log=_quiet,
        tensorboard=tmp_path / "tb",
    ).history
    for entry in history:
        assert 0 < entry["mINP"] <= 1 and 0 < entry["mAP"] <= 1 and 0 < entry["rerank_mAP"] <= 1
    for picture in ("cmc.png", "ranked.png", "history.png"):
        with Image.open(tmp_path / "run" / picture) as image:
            assert image.size[0] > 100 and image.size[1] > 100
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "train/ce",
        "train/triplet",
        "train/lr",
        "eval/mAP",
        "eval/mINP",
        "eval/rank1",
    } <= tags
    assert [e.step for e in events.Scalars("eval/mAP")] == [0, 1]
    assert events.Scalars("eval/mAP")[-1].value == pytest.approx(history[-1]["mAP"])
    metrics = evaluate_trained(
        _settings(), tiny_data(), tmp_path / "run" / "model.pt", out=tmp_path / "eval", log=_quiet
    )
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["mINP"] == metrics["mINP"]
    assert (tmp_path / "eval" / "cmc.png").stat().st_size > 0 and (
        tmp_path / "eval" / "ranked.png"
    ).stat().st_size > 0
