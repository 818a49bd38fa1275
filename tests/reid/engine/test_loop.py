"""The training engine: a step on two processes equals one process on the union, exact resume, safe files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from _processes import run_on_two_processes  # noqa: E402
from _tiny import TINY_RESNET, tiny_data, tiny_settings  # noqa: E402
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lstrl_layers import VideoReIDNet
from lstrl_layers.reid import ReIDLoss
from lstrl_layers.reid.engine import evaluate, evaluate_trained, fit, train_step
from lstrl_layers.reid.engine.checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from lstrl_layers.reid.engine.distributed import RankBatchSampler, World, joined_world
from lstrl_layers.reid.engine.settings import RESUMABLE
from lstrl_layers.reid.sampling import PKBatchSampler


def _model_and_batch() -> tuple[VideoReIDNet, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = VideoReIDNet("resnet18", 4, stages=(2, 3), num_frames=2, zero_init=False, **TINY_RESNET)
    clips = torch.randn(8, 2, 3, 32, 16, generator=torch.Generator().manual_seed(1))
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])  # P x K = 4 x 2, identities whole
    return model, clips, pids


def _freeze_batchnorm(model: nn.Module) -> None:
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _one_step(
    model: nn.Module, net: nn.Module, clips: torch.Tensor, pids: torch.Tensor, world: World
) -> None:
    _freeze_batchnorm(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    train_step(net, ReIDLoss(), optimizer, clips, pids, tiny_settings(), world)


def _worker(rank: int, out: str) -> None:
    with joined_world("cpu") as world:
        model, clips, pids = _model_and_batch()
        share = len(clips) // world.size  # this rank's whole identities, as RankBatchSampler gives them
        part = slice(rank * share, (rank + 1) * share)
        _one_step(model, DistributedDataParallel(model), clips[part], pids[part], world)
        metrics = evaluate(model, tiny_data(), tiny_settings(), world)  # sharded extraction
        if world.is_main:
            torch.save({"state": model.state_dict(), "metrics": metrics}, out)


@pytest.mark.slow
def test_two_processes_step_like_one_process_on_the_union(tmp_path: Path) -> None:
    """gloo, BatchNorm statistics frozen (so that the split cannot change them): a wrong sampler split, a loss
    averaged twice or a gradient that skips a rank would all change the parameters after one step."""
    out = tmp_path / "ddp.pt"
    run_on_two_processes(_worker, str(out))
    ddp = torch.load(out, weights_only=True)
    model, clips, pids = _model_and_batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _one_step(model, model, clips, pids, World())
    single = model.state_dict()
    moved = [k for k in single if not torch.equal(single[k], before[k])]
    assert len(moved) > 20  # the step changed the backbone, the blocks and the classifier
    for key, value in single.items():
        torch.testing.assert_close(ddp["state"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert ddp["metrics"] == evaluate(model, tiny_data(), tiny_settings())


def test_rank_batches_partition_the_global_batch_in_whole_identities() -> None:
    labels = [i // 3 for i in range(30)]  # 10 identities, 3 tracklets each
    sampler = PKBatchSampler(labels, P=4, K=2, seed=3)
    shares = [RankBatchSampler(PKBatchSampler(labels, 4, 2, seed=3), World(r, 2)) for r in range(2)]
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        for share in shares:
            share.set_epoch(epoch)
        for whole, *parts in zip(sampler, *shares):
            assert sum(parts, []) == whole
            for part in parts:
                ids = [labels[i] for i in part]
                assert len(set(ids)) == 2 and all(ids.count(i) == 2 for i in set(ids))
    with pytest.raises(ValueError, match="P=3 .* 2 processes"):
        RankBatchSampler(PKBatchSampler(labels, 3, 2), World(0, 2))


class _Stop(Exception):
    pass


@pytest.mark.slow
def test_resume_after_any_epoch_gives_the_same_metrics(tmp_path: Path) -> None:
    data = tiny_data()
    settings = tiny_settings()
    fit(settings, data, out=tmp_path / "straight", log=lambda m: None)

    def stop_in_epoch_2(message: str) -> None:
        if message.startswith("epoch 2/"):  # epoch 2 trained, its checkpoint not written yet
            raise _Stop

    with pytest.raises(_Stop):
        fit(settings, data, out=tmp_path / "stopped", log=stop_in_epoch_2)
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["epoch"] == 1
    torch.manual_seed(123)  # whatever the process did in between
    fit(settings, data, out=tmp_path / "stopped", resume=tmp_path / "stopped", log=lambda m: None)
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "stopped" / "metrics.json").read_text())
    assert [e["epoch"] for e in straight["epochs"]] == [0, 1, 2, 3]
    assert resumed == straight


def test_evaluations_between_epochs_do_not_change_what_is_trained() -> None:
    data = tiny_data()
    every = fit(tiny_settings(eval_every=1), data, log=lambda m: None)  # evaluates after epochs 1, 2, 3
    last = fit(tiny_settings(eval_every=3), data, log=lambda m: None)  # after epoch 3 only
    assert [e["epoch"] for e in every.history] == [0, 1, 2, 3]
    assert [e["epoch"] for e in last.history] == [0, 3]
    assert every.history[-1] == last.history[-1]
    for (name, a), b in zip(every.model.state_dict().items(), last.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_every_file_loads_with_weights_only_and_the_model_file_rebuilds_the_model(tmp_path: Path) -> None:
    history = fit(tiny_settings(epochs=1), tiny_data(), out=tmp_path, log=lambda m: None).history
    for trained in ("model.pt", "checkpoint.pt"):  # --eval-only on either file: the final evaluation again
        metrics = evaluate_trained(tiny_settings(), tiny_data(), tmp_path / trained, out=tmp_path)
        assert metrics == {k: v for k, v in history[-1].items() if k not in ("epoch", "loss")}
        assert json.loads((tmp_path / "eval.json").read_text())["mAP"] == metrics["mAP"]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["settings"]["model_kwargs"]["stem_width"] == 8
    assert (tmp_path / "history.png").stat().st_size > 0
    model = load_model(tmp_path / "model.pt").eval()
    assert isinstance(model, VideoReIDNet) and model.config["stem_width"] == 8
    torch.manual_seed(0)
    rebuilt = VideoReIDNet("resnet18", 4, stages=(2, 3), num_frames=2, **TINY_RESNET)
    rebuilt.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"])
    video = torch.randn(2, 2, 3, 32, 16)
    torch.testing.assert_close(model(video), rebuilt.eval()(video))
    save_model(tmp_path / "again.pt", model)
    torch.testing.assert_close(load_model(tmp_path / "again.pt").eval()(video), model(video))


class _Payload:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("touch pwned",))


def test_files_that_are_not_ours_are_refused_without_running_code(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "lstrl_layers.train_checkpoint/1", "x": _Payload()}, evil)
    with pytest.raises(ValueError, match="not a file written by lstrl_layers"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a lstrl_layers.train_checkpoint/1 file"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="video_reid_net"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="not a file written by lstrl_layers"):
        load_checkpoint(tmp_path / "text.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_single_process_world_needs_no_process_group() -> None:
    with joined_world("cpu") as world:
        assert world == World(0, 1, "cpu") and world.is_main and not world.distributed


def test_save_model_refuses_a_backbone_module(tmp_path: Path) -> None:
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU())
    own = VideoReIDNet(backbone, 4, stages=("0",), num_frames=2, input_size=(3, 32, 16))
    with pytest.raises(
        ValueError, match=r"save_model stores a timm backbone by name, .* \(Sequential\); save"
    ):
        save_model(tmp_path / "own.pt", own)
    assert not (tmp_path / "own.pt").exists()


def test_bme_learns_at_its_own_rate() -> None:
    from lstrl_layers import BME
    from lstrl_layers.reid.engine import build_model, build_optimizer

    settings = tiny_settings(bme_lr_factor=10.0)
    model = build_model(settings, 4)
    optimizer, _ = build_optimizer(settings, model)
    blocks = {id(p) for m in model.modules() if isinstance(m, BME) for p in m.parameters()}
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    mae = {id(p) for p in model.backbone.lstrl.parameters()} - blocks  # the MAE branches: the base rate
    assert blocks and mae and set(rates) == {id(p) for p in model.parameters() if p.requires_grad}
    assert all(rates[i] == pytest.approx(1e-2 if i in blocks else 1e-3) for i in rates)
    optimizer, _ = build_optimizer(tiny_settings(), model)
    assert len(optimizer.param_groups) == 1  # as in the checkpoints of version 0.1


@pytest.mark.parametrize("bme_lr_factor", [1.0, 10.0])
def test_bme_delta_learns_at_the_direction_rate_and_the_rest_of_bme_at_its_own(bme_lr_factor: float) -> None:
    from lstrl_layers import BME
    from lstrl_layers.reid.engine import build_model, build_optimizer

    model_kwargs = {**tiny_settings().model_kwargs, "bme_kwargs": dict(antisymmetric=True)}
    settings = tiny_settings(bme_lr_factor=bme_lr_factor, direction_lr_factor=30.0, model_kwargs=model_kwargs)
    model = build_model(settings, 4)
    optimizer, _ = build_optimizer(settings, model)
    bmes = [m for m in model.modules() if isinstance(m, BME)]
    deltas = {id(m.delta) for m in bmes}
    blocks = {id(p) for m in bmes for p in m.parameters()} - deltas
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert len(deltas) == 2 and set(rates) == {id(p) for p in model.parameters() if p.requires_grad}
    for i, rate in rates.items():
        factor = 30.0 if i in deltas else bme_lr_factor if i in blocks else 1.0
        assert rate == pytest.approx(settings.lr * factor)
    assert len(optimizer.param_groups) == (2 if bme_lr_factor == 1.0 else 3)


@pytest.mark.parametrize("bme_lr_factor", [1.0, 10.0])
def test_bme_with_a_layer_scale_learns_without_weight_decay(bme_lr_factor: float) -> None:
    from lstrl_layers import BME
    from lstrl_layers.reid.engine import build_model, build_optimizer

    model_kwargs = {**tiny_settings().model_kwargs, "bme_kwargs": dict(ls_init_value=1e-2)}
    settings = tiny_settings(bme_lr_factor=bme_lr_factor, weight_decay=5e-4, model_kwargs=model_kwargs)
    model = build_model(settings, 4)
    optimizer, _ = build_optimizer(settings, model)
    blocks = {id(p) for m in model.modules() if isinstance(m, BME) for p in m.parameters()}
    groups = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    assert blocks and set(groups) == {id(p) for p in model.parameters() if p.requires_grad}
    for i, group in groups.items():
        assert group["weight_decay"] == (0.0 if i in blocks else 5e-4)
        assert group["lr"] == pytest.approx(settings.lr * (bme_lr_factor if i in blocks else 1.0))
    assert len(optimizer.param_groups) == 2


def test_channels_last_gives_the_outputs_and_gradients_of_the_contiguous_layout() -> None:
    model, clips, pids = _model_and_batch()
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        model.zero_grad()
        logits, features = model.to(memory_format=layout).train()(clips)
        (logits.logsumexp(1).mean() + features.square().mean()).backward()
        results.append(
            [logits, features] + [p.grad.clone() for p in model.parameters() if p.grad is not None]
        )
    for contiguous, channels_last in zip(*results):
        torch.testing.assert_close(channels_last, contiguous, rtol=1e-4, atol=1e-5)
    history = fit(tiny_settings(channels_last=True, epochs=1), tiny_data(), log=lambda m: None).history
    assert [entry["epoch"] for entry in history] == [0, 1]


def test_amp_runs_the_forward_in_bfloat16_on_the_cpu_and_keeps_the_loss() -> None:
    losses, dtypes = [], []
    for amp in (False, True):
        model, clips, pids = _model_and_batch()
        _freeze_batchnorm(model)
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        handle = conv.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        parts = train_step(model, ReIDLoss(), optimizer, clips, pids, tiny_settings(amp=amp), World("cpu"))
        handle.remove()
        losses.append(parts["loss"])
    assert dtypes == [torch.float32, torch.bfloat16]
    assert losses[1] == pytest.approx(losses[0], rel=0.05)


@pytest.mark.parametrize(
    ("changes", "epoch", "message"),
    [
        (dict(lr=3e-4), 0,
         r"the checkpoint's run was trained with lr 0.001 \(given: 0.0003\): a resumed run continues that "
         r"run, so only epochs, eval_every, test_sampling, max_test_clips, metric, rerank, test_batch, "
         r"workers, device, progress may change"),
        (dict(num_frames=3, erasing=0.0), 0,
         r"the checkpoint's run was trained with num_frames 2 \(given: 3\); erasing 0.5 \(given: 0.0\):"),
        ({}, 3,
         r"the checkpoint has trained 3 of the 3 epochs asked for: nothing to train \(raise epochs past 3"),
    ],
)  # fmt: skip
def test_resume_with_other_settings_or_nothing_to_train_is_refused(
    changes: dict[str, Any], epoch: int, message: str, tmp_path: Path
) -> None:
    settings = tiny_settings()
    save_checkpoint(
        tmp_path / "checkpoint.pt", settings=settings.__dict__, num_classes=3, model={}, epoch=epoch
    )
    with pytest.raises(ValueError, match=rf"^resume='.*checkpoint.pt': {message}"):
        fit(tiny_settings(**changes), tiny_data(), resume=tmp_path, log=lambda m: None)
    assert set(RESUMABLE) < set(settings.__dict__)  # every name a setting


@pytest.mark.parametrize(
    ("blocks", "said"),
    [
        (dict(mae=False, bme=False), "resnet18 without LSTRL blocks (the baseline): "),
        (dict(stages=()), "resnet18 without LSTRL blocks (the baseline): "),
        (dict(bme=False), "resnet18 with LSTRL at stages [2, 3] (MAE=True, BME=False): "),
    ],
)
def test_the_log_names_the_model_that_trains(blocks: dict[str, Any], said: str) -> None:
    lines: list[str] = []

    def first_line(message: str) -> None:
        lines.append(message)
        raise _Stop

    with pytest.raises(_Stop):
        fit(tiny_settings(**blocks), tiny_data(), log=first_line)
    assert lines[0].startswith(said)
