"""The flags of ``lstrl train`` in four groups (data, model, optimization, run), and their checks against each
other and against the run ``--resume`` names.

:func:`add_flags` adds them to a parser; :func:`check_args` turns the parsed flags into
:class:`~lstrl_layers.reid.engine.TrainSettings`, raising :class:`ValueError` with one line naming the flag
where they cannot make a run. A flag left out is ``None``, so that the defaults (the paper's, the synthetic
ones, or a resumed run's) apply in one place.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..reid import dataset_names
from ..reid.engine import TrainSettings, check_resume, load_checkpoint, load_trained
from ..reid.model import VideoReIDNet
from ..reid.rerank import RERANK_K1, RERANK_K2, RERANK_LAMBDA
from ..reid.sampling import TEST_SAMPLINGS
from .argtypes import (
    DEVICE_HELP,
    add_num_frames,
    default_device,
    device,
    existing_file,
    number_in,
    stage,
    timm_model,
)
from .argtypes import non_negative_int as non_negative
from .argtypes import positive_int as positive

__all__ = [
    "EVAL_SETTINGS",
    "FLAGS",
    "MODEL_SETTINGS",
    "RUN_FILES",
    "SYNTHETIC",
    "add_flags",
    "check_args",
    "flag",
]

# Real data: the paper's §4.2 (TrainSettings' defaults). Synthetic: small enough to learn visibly in 3 epochs
# on 2 CPU cores; one intra-op thread, because on such small tensors more threads gain little when the cores
# are free and lose a lot (about 3x here) when other processes share them.
SYNTHETIC = dict(
    backbone="resnet18",
    size=(64, 32),
    num_frames=4,
    P=4,
    K=3,  # one clip per camera
    epochs=3,
    eval_every=1,
    workers=0,
    pretrained=False,
)
# the flags of the settings whose flag is not --NAME-WITH-DASHES
FLAGS = {
    "num_frames": "-T",
    "P": "-P",
    "K": "-K",
    "mae": "--no-mae",
    "bme": "--no-bme",
    "progress": "--no-progress",
}
# the settings of the model a file holds (VideoReIDNet's argument where it is named otherwise)
MODEL_SETTINGS = {
    "backbone": "backbone",
    "stages": "stages",
    "mae": "mae",
    "bme": "bme",
    "last_stride": "last_stride",
}
# the settings --eval-only uses: the model comes from the file, and nothing trains
EVAL_SETTINGS = (
    "num_frames", "size", "test_sampling", "max_test_clips", "workers", "metric", "rerank", "test_batch",
    "device", "progress", "amp", "channels_last",
)  # fmt: skip
RUN_FILES = ("checkpoint.pt", "metrics.json", "model.pt")  # what a training run leaves in --out


def flag(name: str) -> str:
    """The flag of the setting ``name`` (``num_frames`` -> ``-T``, ``test_batch`` -> ``--test-batch``)."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag of a training run, in the groups ``--help`` shows."""
    _data_flags(parser)
    _model_flags(parser)
    _optimization_flags(parser)
    _run_flags(parser)


def _data_flags(p: argparse.ArgumentParser) -> None:
    """The data set, its clips and their sampling."""
    data = p.add_argument_group("data")
    data.add_argument(
        "--synthetic",
        nargs="?",
        const="appearance",
        choices=("appearance", "motion"),
        help="generated identities instead of a dataset (motion: pairs that differ in motion only)",
    )
    data.add_argument("--dataset", choices=dataset_names(root=True), help="(default: mars)")
    data.add_argument("--data-root", type=Path, help="the data set's folder (MARS, LS-VID or iLIDS-VID)")
    data.add_argument("--split", type=non_negative, help="iLIDS-VID split (row of the split file; default 0)")
    data.add_argument(
        "--split-file", type=Path, help="iLIDS-VID split .mat (default: the release's, or random)"
    )
    data.add_argument(
        "--synthetic-ids", type=positive, nargs=2, metavar=("TRAIN", "TEST"), help="with --synthetic (64 24)"
    )
    data.add_argument(
        "--size", type=positive, nargs=2, metavar=("H", "W"), help="frame size (paper: 256 128)"
    )
    add_num_frames(data, None, "frames per clip (paper: 8)")
    data.add_argument("-P", type=positive, help="identities per global batch (paper: 8)")
    data.add_argument("-K", type=positive, help="clips per identity in a batch (paper: 4)")
    data.add_argument("--erasing", type=number_in(float, 0, 1), help="random erasing probability (0.5)")
    data.add_argument(
        "--test-sampling",
        choices=TEST_SAMPLINGS,
        help="first (default): the first frame of each of T chunks; even: T evenly spaced frames, first to "
        "last; dense: all frames in T-frame clips, averaged",
    )
    data.add_argument("--max-test-clips", type=positive, help="dense: at most this many clips per tracklet")
    data.add_argument("--workers", type=non_negative, help="data loader processes per training process")


def _model_flags(p: argparse.ArgumentParser) -> None:
    """The backbone, its blocks and its weights."""
    model = p.add_argument_group("model")
    model.add_argument("--backbone", type=timm_model, help="timm model (paper: resnet50)")
    model.add_argument(
        "--stages",
        nargs="*",
        type=stage,
        help="feature_info stages with an LSTRL block (2 3; none: baseline)",
    )
    model.add_argument("--no-mae", dest="mae", action="store_false", default=None, help="blocks without MAE")
    model.add_argument("--no-bme", dest="bme", action="store_false", default=None, help="blocks without BME")
    model.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ImageNet weights from timm (default: yes for real data, no for --synthetic)",
    )
    model.add_argument(
        "--weights", type=existing_file, help="a local file of backbone weights (implies --pretrained)"
    )
    model.add_argument("--last-stride", type=int, choices=(1, 2))


def _optimization_flags(p: argparse.ArgumentParser) -> None:
    """The loss, the optimizer and its schedule, the arithmetic."""
    optim = p.add_argument_group("optimization")
    optim.add_argument("--epochs", type=positive, help="paper: 400")
    optim.add_argument(
        "--lr", type=number_in(float, 0, low_open=True), help="Adam learning rate (paper: 3e-4)"
    )
    optim.add_argument(
        "--bme-lr-factor",
        type=number_in(float, 0, low_open=True),
        help="BME's parameters learn at lr x this (1: one rate, the paper's recipe)",
    )
    optim.add_argument("--weight-decay", type=number_in(float, 0), help="(paper: not given; 5e-4)")
    optim.add_argument("--step", type=positive, help="decay the lr every STEP epochs (paper: 70)")
    optim.add_argument("--gamma", type=number_in(float, 0, 1, low_open=True), help="lr decay factor (0.1)")
    optim.add_argument("--margin", type=number_in(float, 0), help="triplet margin (paper: 0.3)")
    optim.add_argument(
        "--triplet-weight", type=number_in(float, 0), help="weight of the triplet term (1; 0: CE alone)"
    )
    optim.add_argument("--label-smoothing", type=number_in(float, 0, 1), help="(0)")
    optim.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, help="bfloat16 autocast, on CUDA or the CPU (off)"
    )
    optim.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="channels-last memory format (default: on)",
    )
    optim.add_argument("--max-steps", type=positive, help="stop each epoch after this many batches")
    optim.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, help="SyncBatchNorm across GPUs")
    optim.add_argument(
        "--freeze-bn", action=argparse.BooleanOptionalAction, help="BatchNorm statistics frozen"
    )


def _run_flags(p: argparse.ArgumentParser) -> None:
    """Files, resuming, evaluation, device and seed."""
    run = p.add_argument_group("run")
    run.add_argument("--out", type=Path, default=Path("out/train_video_reid"))
    run.add_argument(
        "--overwrite", action="store_true", help="replace the run --out holds (default: refuse to)"
    )
    run.add_argument("--resume", type=Path, help="checkpoint.pt, or the --out folder holding one")
    run.add_argument(
        "--eval-only", action="store_true", help="evaluate --resume (a checkpoint or model.pt) and stop"
    )
    run.add_argument("--eval-every", type=positive, help="evaluate every N epochs (and after the last)")
    run.add_argument("--metric", choices=("cosine", "euclidean"))
    run.add_argument(
        "--rerank",
        action=argparse.BooleanOptionalAction,
        help=f"also report k-reciprocal re-ranking (k1 {RERANK_K1}, k2 {RERANK_K2}, lambda {RERANK_LAMBDA})",
    )
    run.add_argument("--tensorboard", type=Path, metavar="DIR", help="TensorBoard scalars in DIR")
    run.add_argument("--test-batch", type=positive, help="clips per forward pass at test (32)")
    run.add_argument("--device", type=device, help=DEVICE_HELP)
    run.add_argument("--threads", type=non_negative, help="torch CPU threads, 0: torch's choice")
    run.add_argument("--seed", type=non_negative)
    run.add_argument("--no-progress", dest="progress", action="store_false", default=None)


def check_args(args: argparse.Namespace) -> TrainSettings:
    """The run's settings from the flags (and the run ``--resume`` names); :class:`ValueError` with one line
    naming the flag where they cannot make a run. Sets ``args.dataset`` (default ``mars`` for real data) and
    ``args.resumed_classes`` (the classes of the model ``--resume`` continues, else ``None``)."""
    _check_flags(args)
    stored, state, trained_model, args.resumed_classes = None, None, None, None
    if args.resume is not None:
        path = args.resume / "checkpoint.pt" if args.resume.is_dir() else args.resume
        try:
            if args.eval_only:
                trained_model, stored = load_trained(path)
            else:
                state = load_checkpoint(path)
                stored, args.resumed_classes = state["settings"], int(state["num_classes"])
        except (OSError, ValueError) as err:
            raise ValueError(f"--resume {args.resume}: {err}") from None
    settings = _settings(args, stored)
    if trained_model is not None:
        _check_eval_only(args, trained_model)
    elif state is not None:
        try:
            check_resume(settings, state, flag)
        except ValueError as err:
            raise ValueError(f"--resume {args.resume}: {err}") from None
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if settings.P % world_size:
        raise ValueError(
            f"-P {settings.P}: the global batch's identities must split evenly over {world_size} processes"
        )
    if settings.sync_bn and not settings.device.startswith("cuda"):
        raise ValueError(f"--sync-bn needs CUDA, got --device {settings.device}")
    return settings


def _check_flags(args: argparse.Namespace) -> None:
    """The flags against each other and against the files they name."""
    if args.synthetic is not None:
        given = [
            f for f, v in (("--dataset", args.dataset), ("--data-root", args.data_root)) if v is not None
        ]
        if given:
            raise ValueError(f"--synthetic generates its data: leave out {' and '.join(given)}")
    else:
        if args.data_root is None:
            raise ValueError("give --data-root (with --dataset mars|lsvid|ilidsvid) or --synthetic")
        if not args.data_root.is_dir():
            raise ValueError(f"--data-root {args.data_root}: no such folder")
        args.dataset = args.dataset or "mars"
    if args.weights is not None and args.pretrained is False:
        raise ValueError("--weights loads pretrained backbone weights: leave out --no-pretrained")
    ilids_only = [f for f, v in (("--split", args.split), ("--split-file", args.split_file)) if v is not None]
    if ilids_only and args.dataset != "ilidsvid":
        used = "--synthetic" if args.synthetic is not None else f"--dataset {args.dataset}"
        raise ValueError(f"{' and '.join(ilids_only)} choose an iLIDS-VID split, and the data is {used}")
    if args.synthetic_ids is not None and args.synthetic is None:
        raise ValueError("--synthetic-ids sizes the generated data: give it with --synthetic")
    if args.split_file is not None and not args.split_file.is_file():
        raise ValueError(f"--split-file {args.split_file}: no such file")
    if args.eval_only and args.resume is None:
        raise ValueError("--eval-only needs --resume (a training checkpoint, its folder, or a model.pt)")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out}: a file, not a folder")
    if args.tensorboard is not None and args.tensorboard.exists() and not args.tensorboard.is_dir():
        raise ValueError(f"--tensorboard {args.tensorboard}: a file, not a folder")
    held = [name for name in (("eval.json",) if args.eval_only else RUN_FILES) if (args.out / name).exists()]
    if held and not args.overwrite and (args.eval_only or args.resume is None):
        way = "" if args.eval_only else f"continue it with --resume {args.out}, or "
        raise ValueError(
            f"--out {args.out} already holds a run ({', '.join(held)}): {way}replace it with --overwrite"
        )


def _settings(args: argparse.Namespace, stored: dict[str, Any] | None) -> TrainSettings:
    """Defaults (the paper's, or the synthetic ones), then a resumed run's settings, then the flags given."""
    values: dict[str, Any] = dict(SYNTHETIC) if args.synthetic else {}
    values["device"] = default_device()
    if stored is not None:  # the device is this machine's, not the stopped run's
        values.update({name: value for name, value in stored.items() if name != "device"})
    for f in fields(TrainSettings):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = tuple(given) if isinstance(given, list) else given
    if args.weights is not None:
        values.update(weights=str(args.weights), pretrained=True)
    return TrainSettings.from_dict(values)


def _check_eval_only(args: argparse.Namespace, model: VideoReIDNet) -> None:
    """--eval-only evaluates the model --resume holds: model flags must agree with it, training flags go."""
    for name, argument in MODEL_SETTINGS.items():
        given, trained = getattr(args, name, None), model.config[argument]
        as_trained = tuple(trained) if isinstance(trained, (list, tuple)) else trained
        given = tuple(given) if isinstance(given, list) else given
        if given is not None and given != as_trained:
            raise ValueError(
                f"{flag(name)}: --resume {args.resume} holds a model with {name}={as_trained!r}, the flags "
                f"give {given!r}; --eval-only evaluates the model as trained: leave {flag(name)} out"
            )
    training = [
        flag(f.name) for f in fields(TrainSettings)
        if f.name not in (*EVAL_SETTINGS, *MODEL_SETTINGS) and getattr(args, f.name, None) is not None
    ]  # fmt: skip
    if args.weights is not None:
        training.append("--weights")
    if training:
        raise ValueError(
            f"{', '.join(training)}: training flags, and --eval-only trains nothing; leave them out"
        )
