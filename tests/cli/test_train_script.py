"""examples/train_video_reid.py (``lstrl train`` as a script) refuses every wrong flag or data root at once,
before any training.

Each refusal: exit status 2, one ``train_video_reid.py: error: ...`` line naming the flag or the missing file
(after argparse's usage lines where the parser refuses), no traceback, nothing on stdout, and no ``--out``
folder left behind. Three cases run the script as a command (started together, to share the cost of
importing torch); the others call ``main(argv)`` in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import pytest
import torch
from _scripts import (
    ROOT,  # noqa: E402
    load_script,
)

from lstrl_layers import VideoReIDNet
from lstrl_layers.reid import synthetic_video_reid
from lstrl_layers.reid.engine import TrainSettings
from lstrl_layers.reid.engine.checkpoint import save_checkpoint, save_model

pytestmark = pytest.mark.usefixtures("keep_threads")  # the training command sets it

SCRIPT = ROOT / "examples" / "train_video_reid.py"
PROG = "train_video_reid.py"

# a run that trains (tests/test_examples.py trains with the same flags), so each case below differs from a
# valid run by the one wrong flag it adds (argparse keeps the last value of a repeated flag)
TINY = [
    "--synthetic", "--synthetic-ids", "4", "3", "--size", "32", "16", "-T", "2", "-P", "2", "-K", "2",
    "--backbone", "resnet18", "--max-steps", "1", "--test-batch", "8", "--epochs", "1", "--no-progress",
    "--device", "cpu",
]  # fmt: skip
TRAIN_IDS = 4


class _RunsCode:
    """Unpickling this object would create ``marker`` (any code could run there)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.makedirs, (str(self.marker),)


@pytest.fixture(scope="module")
def cli() -> ModuleType:
    return load_script(SCRIPT, "example_train_video_reid_cli")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files and folders the wrong flags point at."""
    root = tmp_path_factory.mktemp("inputs")
    paths = {
        "plain": root / "plain.pt",
        "code": root / "code.pt",
        "marker": root / "code-ran",
        "not_a_dataset": root / "photos",
        "checkpoint": root / "run" / "checkpoint.pt",
    }
    torch.save({"a": 1}, paths["plain"])
    torch.save({"model": _RunsCode(paths["marker"])}, paths["code"])
    paths["not_a_dataset"].mkdir()
    (paths["not_a_dataset"] / "holiday.jpg").write_bytes(b"\xff\xd8\xff")
    # a training checkpoint in our format: what --resume reads before training (settings, classes)
    # (TINY's settings, saved after the evaluation before training)
    stored = TrainSettings(
        backbone="resnet18", size=(32, 16), num_frames=2, P=2, K=2, pretrained=False, epochs=1, device="cuda",
        max_steps=1, test_batch=8,
    )  # fmt: skip
    paths["checkpoint"].parent.mkdir()
    save_checkpoint(paths["checkpoint"], settings=asdict(stored), num_classes=TRAIN_IDS, model={}, epoch=0)
    paths["finished"] = root / "finished" / "checkpoint.pt"
    paths["finished"].parent.mkdir()
    save_checkpoint(paths["finished"], settings=asdict(stored), num_classes=TRAIN_IDS, model={}, epoch=1)
    paths["model_file"] = root / "model.pt"
    save_model(
        paths["model_file"], VideoReIDNet("resnet18", num_classes=TRAIN_IDS, stages=(2, 3), num_frames=2)
    )
    return paths


def _one_error_line(err: str) -> str:
    """The refusal's one line; anything before it is argparse's usage."""
    assert "Traceback" not in err
    lines = err.rstrip("\n").splitlines()
    assert lines and lines[-1].startswith(f"{PROG}: error: "), err
    assert sum("error:" in line for line in lines) == 1, err
    assert len(lines) == 1 or lines[0].startswith(f"usage: {PROG} "), err
    return lines[-1]


def _refused(cli: ModuleType, argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--out", str(out)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert not out.exists()
    return _one_error_line(captured.err)


def _most_tracklets() -> int:
    """The most training tracklets of any identity in TINY's synthetic data."""
    train = synthetic_video_reid(TRAIN_IDS, 3, size=(32, 16)).train
    return max(sum(t.pid == pid for t in train) for pid in {t.pid for t in train})


# (argv, words the error line must hold); {name} is replaced by the path of files[name]
FOLDER, CHECKPOINT = "{not_a_dataset}", "{checkpoint}"
CASES = {
    "no data": ([], ["--data-root", "--synthetic"]),
    "unknown --dataset": ([*TINY, "--dataset", "prid2011"], ["--dataset", "'prid2011'"]),
    "--epochs 0": ([*TINY, "--epochs", "0"], ["--epochs", "'0'"]),
    "--epochs -1": ([*TINY, "--epochs", "-1"], ["--epochs", "'-1'"]),
    "--eval-every 0": ([*TINY, "--eval-every", "0"], ["--eval-every", "'0'"]),
    "--size 0 0": ([*TINY, "--size", "0", "0"], ["--size", "'0'"]),
    "--size 32": ([*TINY, "--size", "32"], ["--size", "2 arguments"]),
    "--test-batch 0": ([*TINY, "--test-batch", "0"], ["--test-batch", "'0'"]),
    "--max-steps 0": ([*TINY, "--max-steps", "0"], ["--max-steps", "'0'"]),
    "-T 0": ([*TINY, "-T", "0"], ["-T", "'0'"]),
    "-T 2.5": ([*TINY, "-T", "2.5"], ["-T", "'2.5'"]),
    "--lr 0": ([*TINY, "--lr", "0"], ["--lr", "'0'"]),
    "--lr inf": ([*TINY, "--lr", "inf"], ["--lr", "'inf'"]),
    "--lr nan": ([*TINY, "--lr", "nan"], ["--lr", "'nan'"]),
    "--margin inf": ([*TINY, "--margin", "inf"], ["--margin", "'inf'"]),
    "--erasing 1.5": ([*TINY, "--erasing", "1.5"], ["--erasing", "'1.5'"]),
    "--stages 2,3": ([*TINY, "--stages", "2,3"], ["--stages", "'2,3'", "--stages 2 3"]),
    "--tensorboard a file": (
        [*TINY, "--tensorboard", "{plain}"],
        ["--tensorboard {plain}: a file, not a folder"],
    ),
    # a flag of another mode
    "--split with synthetic data": (
        [*TINY, "--split", "1"],
        ["--split choose an iLIDS-VID split", "--synthetic"],
    ),
    "--split-file with MARS": (
        ["--dataset", "mars", "--data-root", FOLDER, "--split-file", "{plain}"],
        ["--split-file choose an iLIDS-VID split, and the data is --dataset mars"],
    ),
    "--synthetic-ids without --synthetic": (
        ["--dataset", "mars", "--data-root", FOLDER, "--synthetic-ids", "8", "4"],
        ["--synthetic-ids sizes the generated data: give it with --synthetic"],
    ),
    "--bme-lr-factor with --no-bme": (
        [*TINY, "--no-bme", "--bme-lr-factor", "10"],
        ["bme_lr_factor=10.0 would have no effect", "no BME"],
    ),
    "--max-test-clips without dense": (
        [*TINY, "--max-test-clips", "3"],
        ["max_test_clips=3 would have no effect"],
    ),
    "--stages -1": ([*TINY, "--stages", "-1"], ["--stages", "'-1'"]),
    "--stages 9": ([*TINY, "--stages", "9"], ["--stages 9", "stage index 9"]),
    "--stages layer9": ([*TINY, "--stages", "layer9"], ["--stages layer9", "'layer9'"]),
    "--model, now --backbone": ([*TINY, "--model", "resnet18"], ["unrecognized arguments: --model"]),
    "unknown --backbone": ([*TINY, "--backbone", "resnet_nope"], ["--backbone", "'resnet_nope'"]),
    "-P above the identities": ([*TINY, "-P", "8"], ["-P 8", f"{TRAIN_IDS} identities"]),
    "--resume missing": ([*TINY, "--resume", "{plain}.missing"], ["--resume", "{plain}.missing"]),
    "--resume a folder without checkpoint": ([*TINY, "--resume", FOLDER], ["--resume", "checkpoint.pt"]),
    "--resume not ours": ([*TINY, "--resume", "{plain}"], ["--resume {plain}", "not a"]),
    "--resume with code": ([*TINY, "--resume", "{code}"], ["--resume {code}", "weights_only=True"]),
    "--eval-only, no --resume": ([*TINY, "--eval-only"], ["--eval-only", "--resume"]),
    "--eval-only not ours": ([*TINY, "--eval-only", "--resume", "{plain}"], ["--resume {plain}"]),
    "--eval-only with code": ([*TINY, "--eval-only", "--resume", "{code}"], ["--resume {code}"]),
    "--sync-bn on CPU": ([*TINY, "--sync-bn"], ["--sync-bn", "--device cpu"]),
    "--synthetic with --dataset": ([*TINY, "--dataset", "lsvid"], ["--synthetic", "leave out --dataset"]),
    "--synthetic with --data-root": ([*TINY, "--data-root", FOLDER], ["leave out --data-root"]),
    "-K 1 with a triplet loss": ([*TINY, "-K", "1"], ["triplet loss needs", "K=1", "triplet_weight=0"]),
    "-P 1 with a triplet loss": ([*TINY, "-P", "1"], ["triplet loss needs", "P=1"]),
    "--weights missing": ([*TINY, "--weights", "{plain}.missing"], ["--weights", "{plain}.missing"]),
    "--weights with --no-pretrained": (
        [*TINY, "--weights", "{plain}", "--no-pretrained"],
        ["--no-pretrained"],
    ),
    "unknown --device": ([*TINY, "--device", "tpu"], ["--device", "expected cpu, cuda or cuda:N, got 'tpu'"]),
    "--device cuda:99": ([*TINY, "--device", "cuda:99"], ["--device", "cuda:99"]),
    "--split-file missing": (
        ["--dataset", "ilidsvid", "--data-root", FOLDER, "--split-file", "{plain}.mat"],
        ["--split-file", "{plain}.mat"],
    ),
    "--data-root not a MARS folder": (["--dataset", "mars", "--data-root", FOLDER], [FOLDER]),
    "--data-root not an LS-VID folder": (["--dataset", "lsvid", "--data-root", FOLDER], [FOLDER]),
    "--data-root not an iLIDS-VID folder": (
        ["--dataset", "ilidsvid", "--data-root", FOLDER],
        [FOLDER],
    ),
    # continuing a run with flags that change its model (the checkpoint: resnet18, stages 2 3, 4 classes)
    "--resume --backbone": (
        [*TINY, "--resume", CHECKPOINT, "--backbone", "resnet34"],
        ["--backbone", "'resnet18'"],
    ),
    "--resume --stages 3": ([*TINY, "--resume", CHECKPOINT, "--stages", "3"], ["--stages", "(2, 3)"]),
    "--resume --stages": ([*TINY, "--resume", CHECKPOINT, "--stages"], ["--stages", "()"]),
    "--resume --no-mae": ([*TINY, "--resume", CHECKPOINT, "--no-mae"], ["--no-mae"]),
    # ... or its training: a resumed run continues the run as it was (the optimizer's state holds its rate)
    "--resume --lr": (
        [*TINY, "--resume", CHECKPOINT, "--lr", "1e-3"],
        ["--resume", "trained with --lr 0.0003 (given: 0.001)", "only --epochs, --eval-every"],
    ),
    "--resume -T": ([*TINY, "--resume", CHECKPOINT, "-T", "3"], ["-T 2 (given: 3)"]),
    "--resume finished": (
        [*TINY, "--resume", "{finished}"],
        ["--resume", "trained 1 of the 1 epochs asked for: nothing to train", "raise --epochs past 1"],
    ),
    # --eval-only evaluates the model the file holds, and trains nothing
    "--eval-only --backbone": (
        [*TINY, "--eval-only", "--resume", "{model_file}", "--backbone", "resnet34"],
        ["--backbone", "holds a model with backbone='resnet18'", "'resnet34'", "leave --backbone out"],
    ),
    "--eval-only --stages": (
        [*TINY, "--eval-only", "--resume", "{model_file}", "--stages", "3"],
        ["--stages", "stages=(2, 3)", "(3,)"],
    ),
    "--eval-only training flags": (
        [*TINY, "--eval-only", "--resume", "{model_file}", "--lr", "1e-3"],
        ["-P, -K, --epochs, --lr, --max-steps: training flags, and --eval-only trains nothing"],
    ),
    "--resume other identities": (
        [*TINY, "--resume", CHECKPOINT, "--synthetic-ids", "5", "3"],
        ["--resume", f"{TRAIN_IDS} classes", "5 identities"],
    ),
}


def _fill(items: list[str], files: dict[str, Path]) -> list[str]:
    return [item.format(**{name: str(path) for name, path in files.items()}) for item in items]


@pytest.mark.parametrize("case", CASES)
def test_wrong_input_is_refused_before_training(
    case: str,
    cli: ModuleType,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, words = (_fill(items, files) for items in CASES[case])
    line = _refused(cli, argv, tmp_path / "out", capsys)
    for word in words:
        assert word in line, (word, line)
    assert not files["marker"].exists()  # the pickle's code never ran


def test_k_above_the_tracklets_is_refused(
    cli: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    k = _most_tracklets() + 1
    line = _refused(cli, [*TINY, "-K", str(k)], tmp_path / "out", capsys)
    assert f"-K {k}" in line and f"{k - 1} tracklets" in line


def test_out_that_is_a_file_is_refused(
    cli: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "notes.txt"
    out.write_text("kept")
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*TINY, "--out", str(out)])
    assert exit_info.value.code == 2
    assert f"--out {out}" in _one_error_line(capsys.readouterr().err)
    assert out.read_text() == "kept"


def test_p_must_split_over_the_processes(
    cli: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    line = _refused(cli, [*TINY, "-P", "4"], tmp_path / "out", capsys)
    assert "-P 4" in line and "3 processes" in line


def test_valid_flags_parse(cli: ModuleType, tmp_path: Path) -> None:
    """The runs the wrong flags start from parse; --stages takes indices and names, none for the baseline."""
    _, settings = cli.parse_args([*TINY, "--out", str(tmp_path / "out")])
    assert (settings.backbone, settings.P, settings.K, settings.num_frames) == ("resnet18", 2, 2, 2)
    assert settings.stages == TrainSettings().stages == (2, 3)  # the paper's layer2 and layer3
    assert cli.parse_args([*TINY, "--stages"])[1].stages == ()
    assert cli.parse_args([*TINY, "--stages", "layer2", "3"])[1].stages == ("layer2", 3)
    assert cli.parse_args(["--synthetic", "--lr", "1e-4", "--erasing", "0"])[1].lr == 1e-4
    assert not (tmp_path / "out").exists()


def test_resume_keeps_the_model_and_takes_other_flags(cli: ModuleType, files: dict[str, Path]) -> None:
    """Flags that leave the run as it was are accepted; the device is this machine's, not the run's."""
    resume = ["--synthetic", "--resume", str(files["checkpoint"].parent)]
    _, settings = cli.parse_args(
        [*resume, "--epochs", "5", "--eval-every", "2", "--rerank", "--workers", "1"]
    )
    assert (settings.backbone, settings.stages, settings.size) == ("resnet18", (2, 3), (32, 16))
    assert (settings.epochs, settings.eval_every, settings.rerank, settings.num_frames) == (5, 2, True, 2)
    assert settings.device == ("cuda" if torch.cuda.is_available() else "cpu")
    _, same = cli.parse_args([*resume, "--backbone", "resnet18", "--stages", "2", "3", "--last-stride", "1"])
    assert same.stages == (2, 3)


SUBPROCESS_CASES = {
    "missing --data-root": (
        ["--dataset", "mars", "--data-root", "{plain}.missing"],
        ["--data-root {plain}.missing"],
    ),
    "--resume with code": ([*TINY, "--resume", "{code}"], ["--resume {code}", "weights_only=True"]),
    "-P above the identities": ([*TINY, "-P", "8"], ["-P 8", f"{TRAIN_IDS} identities"]),
}


@pytest.fixture(scope="module")
def commands(
    files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, str, str, Path]]:
    """SUBPROCESS_CASES run as ``python examples/train_video_reid.py ...``, all started at once."""
    env = {name: value for name, value in os.environ.items() if name not in ("WORLD_SIZE", "RANK")}
    started = {}
    for case, (argv, _) in SUBPROCESS_CASES.items():
        out = tmp_path_factory.mktemp("command") / "out"
        command = [sys.executable, str(SCRIPT.relative_to(ROOT)), *_fill(argv, files), "--out", str(out)]
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started[case] = (process, out)
    results = {}
    for case, (process, out) in started.items():
        stdout, stderr = process.communicate(timeout=300)
        results[case] = (process.returncode, stdout, stderr, out)
    return results


@pytest.mark.slow
@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_command_refuses_wrong_input(
    case: str, commands: dict[str, tuple[int, str, str, Path]], files: dict[str, Path]
) -> None:
    returncode, stdout, stderr, out = commands[case]
    assert returncode == 2, stderr
    assert stdout == ""
    line = _one_error_line(stderr)
    for word in _fill(SUBPROCESS_CASES[case][1], files):
        assert word in line, (word, line)
    assert not out.exists()
    assert not files["marker"].exists()


def test_an_out_folder_holding_a_run_is_refused_unless_overwritten(
    cli: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"epochs": []}')
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*TINY, "--out", str(out)])
    assert exit_info.value.code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--out {out} already holds a run (metrics.json)" in line
    assert f"--resume {out}" in line and "--overwrite" in line
    assert (out / "metrics.json").read_text() == '{"epochs": []}' and not (out / "checkpoint.pt").exists()
    cli.main([*TINY, "--out", str(out), "--overwrite"])
    assert json.loads((out / "metrics.json").read_text())["epochs"]


def test_pretrained_weights_out_of_reach_are_refused_in_seconds(
    cli: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lstrl_layers.reid import weights

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(weights, "_cached", lambda *args: False)
    monkeypatch.setattr(weights.socket, "create_connection", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.monotonic()
    line = _refused(cli, [*TINY, "--pretrained"], tmp_path / "out", capsys)
    assert time.monotonic() - started < 30
    assert "pretrained weights of resnet18 are not cached and huggingface.co cannot be reached" in line
    assert "--weights FILE" in line and "--no-pretrained" in line
    with pytest.raises(ValueError, match="huggingface.co cannot be reached") as info:  # the library's words
        weights.check_pretrained_available("resnet18")
    assert "weights=FILE" in str(info.value) and "pretrained=False" in str(info.value)
    assert "--" not in str(info.value)
