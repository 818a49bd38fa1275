"""Train and evaluate an LSTRL video ReID model: the paper's §4.2 recipe, end to end, on one or several GPUs.

Data: MARS (``--dataset mars``), LS-VID (``lsvid``), iLIDS-VID (``ilidsvid``) or ``--synthetic`` (small
generated identities, no download; ``--synthetic motion``: identities that differ in motion only). Training:
restricted random sampling of ``T`` frames, batches of ``P`` identities x ``K`` tracklets, random crop +
random erasing, cross-entropy + batch-hard triplet loss, Adam with a step decay. Evaluation: query against
gallery with the standard ReID protocol (CMC, mAP). The loop is ``lstrl_layers.reid.engine``.

    # anywhere, in a few minutes on a CPU
    python examples/train_video_reid.py --synthetic --epochs 3 --out out/synthetic
    # MARS as in the paper: ImageNet-pretrained ResNet-50, LSTRL blocks after layer2 and layer3, 2 GPUs
    torchrun --nproc_per_node=2 examples/train_video_reid.py --dataset mars --data-root /data/MARS \\
        --out out/mars
    # continue a stopped run; evaluate a trained model with dense clips
    python examples/train_video_reid.py --dataset mars --data-root /data/MARS --out out/mars --resume out/mars
    python examples/train_video_reid.py --dataset mars --data-root /data/MARS --out out/mars-eval \\
        --eval-only --resume out/mars/model.pt --test-sampling dense

Writes ``OUT/metrics.json`` (``{"epochs": [{"epoch": 0, "mAP": ..., "mINP": ..., "rank1": ..., ...}, ...]}``,
epoch 0 evaluated before training), ``OUT/checkpoint.pt`` (every epoch; ``--resume OUT`` continues from it),
``OUT/model.pt`` (the model alone, ``lstrl_layers.reid.load_model`` rebuilds it), ``OUT/history.png``,
``OUT/cmc.png`` (CMC curve), ``OUT/ranked.png`` (the worst queries with their top gallery clips, true matches
framed green) and ``OUT/log.txt``; ``--eval-only`` writes ``OUT/eval.json``, ``cmc.png`` and ``ranked.png``.
``--rerank`` adds the figures after k-reciprocal re-ranking (Zhong et al.'s parameters), prefixed
``rerank_``;
``--tensorboard DIR`` logs the loss terms, learning rate and every evaluation figure. SIGTERM or Ctrl-C
stop after the current step with the checkpoint written (``--resume OUT`` continues exactly). Needs the
``examples`` extra.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from lstrl_layers import VideoReIDNet
from lstrl_layers.cli.argtypes import (
    DEVICE_HELP,
    add_num_frames,
    default_device,
    device,
    existing_file,
    number_in,
    stage,
    timm_model,
)
from lstrl_layers.cli.argtypes import non_negative_int as non_negative
from lstrl_layers.cli.argtypes import positive_int as positive
from lstrl_layers.reid import UnreadableFrame, VideoReIDData, dataset_names, read_dataset
from lstrl_layers.reid.engine import (
    NonFiniteLoss,
    TrainingInterrupted,
    TrainSettings,
    build_model,
    check_resume,
    evaluate_trained,
    fit,
    load_checkpoint,
    load_trained,
)
from lstrl_layers.reid.rerank import RERANK_K1, RERANK_K2, RERANK_LAMBDA
from lstrl_layers.reid.sampling import TEST_SAMPLINGS
from lstrl_layers.reid.weights import check_pretrained_available

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


def _flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _check_eval_only(parser: argparse.ArgumentParser, args: argparse.Namespace, model: VideoReIDNet) -> None:
    """--eval-only evaluates the model --resume holds: model flags must agree with it, training flags go."""
    for name, argument in MODEL_SETTINGS.items():
        given, trained = getattr(args, name, None), model.config[argument]
        as_trained = tuple(trained) if isinstance(trained, (list, tuple)) else trained
        given = tuple(given) if isinstance(given, list) else given
        if given is not None and given != as_trained:
            parser.error(
                f"{_flag(name)}: --resume {args.resume} holds a model with {name}={as_trained!r}, the flags "
                f"give {given!r}; --eval-only evaluates the model as trained: leave {_flag(name)} out"
            )
    training = [
        _flag(f.name) for f in fields(TrainSettings)
        if f.name not in (*EVAL_SETTINGS, *MODEL_SETTINGS) and getattr(args, f.name, None) is not None
    ]  # fmt: skip
    if args.weights is not None:
        training.append("--weights")
    if training:
        parser.error(f"{', '.join(training)}: training flags, and --eval-only trains nothing; leave them out")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=Path(__file__).name,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    _data_flags(p)
    _model_flags(p)
    _optimization_flags(p)
    _run_flags(p)
    return p


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


RUN_FILES = ("checkpoint.pt", "metrics.json", "model.pt")  # what a training run leaves in --out


def _holds(out: Path, names: Sequence[str]) -> list[str]:
    return [name for name in names if (out / name).exists()]


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, TrainSettings]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.synthetic is not None:
        given = [
            f for f, v in (("--dataset", args.dataset), ("--data-root", args.data_root)) if v is not None
        ]
        if given:
            parser.error(f"--synthetic generates its data: leave out {' and '.join(given)}")
    else:
        if args.data_root is None:
            parser.error("give --data-root (with --dataset mars|lsvid|ilidsvid) or --synthetic")
        if not args.data_root.is_dir():
            parser.error(f"--data-root {args.data_root}: no such folder")
        args.dataset = args.dataset or "mars"
    if args.weights is not None and args.pretrained is False:
        parser.error("--weights loads pretrained backbone weights: leave out --no-pretrained")
    ilids_only = [f for f, v in (("--split", args.split), ("--split-file", args.split_file)) if v is not None]
    if ilids_only and args.dataset != "ilidsvid":
        used = "--synthetic" if args.synthetic is not None else f"--dataset {args.dataset}"
        parser.error(f"{' and '.join(ilids_only)} choose an iLIDS-VID split, and the data is {used}")
    if args.synthetic_ids is not None and args.synthetic is None:
        parser.error("--synthetic-ids sizes the generated data: give it with --synthetic")
    if args.split_file is not None and not args.split_file.is_file():
        parser.error(f"--split-file {args.split_file}: no such file")
    if args.eval_only and args.resume is None:
        parser.error("--eval-only needs --resume (a training checkpoint, its folder, or a model.pt)")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: a file, not a folder")
    if args.tensorboard is not None and args.tensorboard.exists() and not args.tensorboard.is_dir():
        parser.error(f"--tensorboard {args.tensorboard}: a file, not a folder")
    held = _holds(args.out, ("eval.json",) if args.eval_only else RUN_FILES)
    if held and not args.overwrite and (args.eval_only or args.resume is None):
        way = "" if args.eval_only else f"continue it with --resume {args.out}, or "
        parser.error(
            f"--out {args.out} already holds a run ({', '.join(held)}): {way}replace it with --overwrite"
        )
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
            parser.error(f"--resume {args.resume}: {err}")
    try:
        settings = _settings(args, stored)
    except ValueError as err:
        parser.error(str(err))
    if args.eval_only:
        _check_eval_only(parser, args, trained_model)
    elif state is not None:
        try:
            check_resume(settings, state, _flag)
        except ValueError as err:
            parser.error(f"--resume {args.resume}: {err}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if settings.P % world_size:
        parser.error(
            f"-P {settings.P}: the global batch's identities must split evenly over {world_size} processes"
        )
    if settings.sync_bn and not settings.device.startswith("cuda"):
        parser.error(f"--sync-bn needs CUDA, got --device {settings.device}")
    return args, settings


def load_data(args: argparse.Namespace, settings: TrainSettings) -> VideoReIDData:
    """The data set the flags name (``lstrl_layers.reid.read_dataset``)."""
    if args.synthetic:
        train_ids, test_ids = args.synthetic_ids or (64, 24)
        return read_dataset(
            f"synthetic_{args.synthetic}",
            num_train_ids=train_ids,
            num_test_ids=test_ids,
            size=settings.size,
            seed=settings.seed,
        )
    if args.dataset == "ilidsvid":
        split = 0 if args.split is None else args.split
        return read_dataset(
            "ilidsvid", args.data_root, split_file=args.split_file, split=split, seed=settings.seed
        )
    return read_dataset(args.dataset, args.data_root)


def _check_batch(data: VideoReIDData, settings: TrainSettings) -> None:
    identities = len({t.pid for t in data.train})
    if settings.P > identities:
        raise ValueError(f"-P {settings.P}: the training set has only {identities} identities")
    most = max(sum(1 for t in data.train if t.pid == pid) for pid in {t.pid for t in data.train})
    if settings.K > most:
        raise ValueError(f"-K {settings.K}: no training identity has more than {most} tracklets")


def _check_model(args: argparse.Namespace, settings: TrainSettings, num_classes: int) -> None:
    """Build the run's model on the meta device (no memory, no download), so that a stage the backbone
    lacks fails before anything is written; a resumed run must have the stopped run's classes."""
    if args.resumed_classes is not None and args.resumed_classes != num_classes:
        raise ValueError(
            f"--resume {args.resume}: its model has {args.resumed_classes} classes, the training set "
            f"{num_classes} identities (continue a run on the data it started with)"
        )
    try:
        with torch.device("meta"):
            build_model(replace(settings, pretrained=False), num_classes)
    except (TypeError, ValueError) as err:
        stages = " ".join(map(str, settings.stages))
        raise ValueError(f"--backbone {settings.backbone} --stages {stages}: {err}") from None
    except Exception:  # an operation without a meta kernel: the real build will say what is wrong
        pass


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, settings = parse_args(argv)
    prog = Path(__file__).name
    if args.threads:
        torch.set_num_threads(args.threads)
    elif args.threads is None and args.synthetic:
        torch.set_num_threads(1)
    try:  # a data set that cannot be read, or a batch it cannot fill: one line, before anything is written
        data = load_data(args, settings)
        if not args.eval_only:
            _check_batch(data, settings)
            _check_model(args, settings, data.num_train_ids)
            if settings.pretrained and settings.weights is None and args.resume is None:
                check_pretrained_available(
                    settings.backbone, local_file="--weights FILE", from_scratch="--no-pretrained"
                )
        is_main = int(os.environ.get("RANK", "0")) == 0
        if is_main:
            args.out.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    log_file = (args.out / "log.txt").open("a") if is_main else None

    def log(message: str) -> None:  # rank 0 only
        if log_file is not None:
            print(message, flush=True)
            log_file.write(message + "\n")
            log_file.flush()

    try:
        if is_main:
            log(data.summary())
            load = (
                f", load average {os.getloadavg()[0]:.2f} at the start" if hasattr(os, "getloadavg") else ""
            )
            log(f"{torch.get_num_threads()} torch thread(s) per process on {settings.device}{load}")
        if args.eval_only:
            return evaluate_trained(settings, data, args.resume, out=args.out, log=log)
        result = fit(settings, data, out=args.out, resume=args.resume, log=log, tensorboard=args.tensorboard)
        log(f"done; metrics in {args.out / 'metrics.json'}")
        return {"epochs": result.history}
    except TrainingInterrupted as stop:
        saved = "no checkpoint" if stop.checkpoint is None else f"checkpoint written to {stop.checkpoint}"
        log(f"stopped by {stop.signal_name} at {stop.where}: {saved}; continue with --resume {args.out}")
        raise SystemExit(128 + signal.Signals[stop.signal_name].value) from None
    except (NonFiniteLoss, UnreadableFrame) as err:  # one line; a data loader worker adds its traceback
        line = str(err).strip().splitlines()[-1]  # a data loader worker's error ends with "...Frame: message"
        print(f"{prog}: error: {line.split(f'{type(err).__name__}: ', 1)[-1]}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        if log_file is not None:
            log_file.close()


if __name__ == "__main__":
    main()
