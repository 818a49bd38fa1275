"""``lstrl train``: train and evaluate an LSTRL video ReID model, the paper's §4.2 recipe end to end, on one
or several GPUs.

Data: MARS (``--dataset mars``), LS-VID (``lsvid``), iLIDS-VID (``ilidsvid``) or ``--synthetic`` (small
generated identities, no download; ``--synthetic motion``: identities that differ in motion only). Training:
restricted random sampling of ``T`` frames, batches of ``P`` identities x ``K`` tracklets, random crop +
random erasing, cross-entropy + batch-hard triplet loss, Adam with a step decay. Evaluation: query against
gallery with the standard ReID protocol (CMC, mAP). The loop is ``lstrl_layers.reid.engine``.

    # anywhere, in a few minutes on a CPU
    lstrl train --synthetic --epochs 3 --out out/synthetic
    # MARS as in the paper: ImageNet-pretrained ResNet-50, LSTRL blocks after layer2 and layer3, 2 GPUs
    torchrun --nproc_per_node=2 -m lstrl_layers.cli train --dataset mars --data-root /data/MARS --out out/mars
    # continue a stopped run; evaluate a trained model with dense clips
    lstrl train --dataset mars --data-root /data/MARS --out out/mars --resume out/mars
    lstrl train --dataset mars --data-root /data/MARS --out out/mars-eval \\
        --eval-only --resume out/mars/model.pt --test-sampling dense

Writes ``OUT/metrics.json`` (``{"epochs": [{"epoch": 0, "mAP": ..., "mINP": ..., "rank1": ..., ...}, ...]}``,
epoch 0 evaluated before training), ``OUT/checkpoint.pt`` (every epoch; ``--resume OUT`` continues from it),
``OUT/model.pt`` (the model alone, ``lstrl_layers.reid.load_model`` rebuilds it), ``OUT/history.png``,
``OUT/cmc.png`` (CMC curve), ``OUT/ranked.png`` (the worst queries with their top gallery clips, true matches
framed green) and ``OUT/log.txt``; ``--eval-only`` writes ``OUT/eval.json``, ``cmc.png`` and ``ranked.png``.
``--rerank`` adds the figures after k-reciprocal re-ranking (Zhong et al.'s parameters), prefixed
``rerank_``; ``--tensorboard DIR`` logs the loss terms, learning rate and every evaluation figure. SIGTERM or
Ctrl-C stop after the current step with the checkpoint written (``--resume OUT`` continues exactly), exit
status 128 + the signal's number. A wrong flag or unreadable data: one ``error:`` line, exit status 2,
nothing written; a non-finite loss or an undecodable frame during training: one line, exit status 1.
Needs the ``examples`` extra.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from ..reid import UnreadableFrame, VideoReIDData, read_dataset
from ..reid.engine import (
    NonFiniteLoss,
    TrainingInterrupted,
    TrainSettings,
    build_model,
    evaluate_trained,
    fit,
)
from ..reid.weights import check_pretrained_available
from .train_flags import add_flags, check_args

__all__ = ["add_parser", "build_parser", "load_data", "main", "parse_args", "prepare", "run", "train"]

DESCRIPTION = (
    "Train and evaluate an LSTRL video ReID model: the paper's §4.2 recipe, end to end, "
    "on one or several GPUs."
)


def add_parser(commands: Any) -> None:
    """``train`` as a sub-command of ``lstrl``."""
    parser = commands.add_parser(
        "train",
        help="train and evaluate a video ReID model",
        description=DESCRIPTION,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    add_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """``lstrl train``: a wrong flag or unreadable data raises :class:`ValueError` or :class:`OSError`, which
    ``lstrl`` reports in one line."""
    settings = check_args(args)
    train(args, settings, prepare(args, settings), "lstrl train")


def build_parser(prog: str = "lstrl train") -> argparse.ArgumentParser:
    """The flags of a training run, as a parser of its own (a script's)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    add_flags(parser)
    return parser


def parse_args(
    argv: Sequence[str] | None = None, prog: str = "lstrl train"
) -> tuple[argparse.Namespace, TrainSettings]:
    """The flags and the run's settings; a wrong flag exits with argparse's usage and one ``error:`` line."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        settings = check_args(args)
    except ValueError as err:
        parser.error(str(err))
    return args, settings


def main(argv: Sequence[str] | None = None, prog: str = "lstrl train") -> dict[str, Any]:
    """Train (or with ``--eval-only`` evaluate) as the flags say; returns the metrics. Exits with status 2 on
    a wrong flag or unreadable data, 1 on a non-finite loss or an undecodable frame, 128 + N on signal N."""
    args, settings = parse_args(argv, prog)
    try:  # a data set that cannot be read, or a batch it cannot fill: one line, before anything is written
        data = prepare(args, settings)
    except (OSError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return train(args, settings, data, prog)


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


def prepare(args: argparse.Namespace, settings: TrainSettings) -> VideoReIDData:
    """torch's threads, the data, the checks that need the data, then ``--out`` (rank 0); a wrong input
    raises :class:`ValueError` or :class:`OSError` before anything is written."""
    if args.threads:
        torch.set_num_threads(args.threads)
    elif args.threads is None and args.synthetic:
        torch.set_num_threads(1)
    data = load_data(args, settings)
    if not args.eval_only:
        _check_batch(data, settings)
        _check_model(args, settings, data.num_train_ids)
        if settings.pretrained and settings.weights is None and args.resume is None:
            check_pretrained_available(
                settings.backbone, local_file="--weights FILE", from_scratch="--no-pretrained"
            )
    if int(os.environ.get("RANK", "0")) == 0:
        args.out.mkdir(parents=True, exist_ok=True)
    return data


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


def train(
    args: argparse.Namespace, settings: TrainSettings, data: VideoReIDData, prog: str
) -> dict[str, Any]:
    """Run :func:`~lstrl_layers.reid.engine.fit` (or ``evaluate_trained`` with ``--eval-only``) on ``data``,
    logging to stdout and ``OUT/log.txt`` from rank 0; the metrics. A signal exits with status 128 + its
    number, the checkpoint written; a non-finite loss or an undecodable frame with one ``{prog}: error:`` line
    and status 1."""
    is_main = int(os.environ.get("RANK", "0")) == 0
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
