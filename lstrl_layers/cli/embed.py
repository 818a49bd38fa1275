"""``lstrl embed MODEL TRACKLETS --out FILE.npz``: one embedding per tracklet folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ..reid.sampling import TEST_SAMPLINGS
from .argtypes import DEVICE_HELP, add_num_frames, default_device, device, positive_int
from .models import LoadedModel, load_onnx, load_torch

_DEFAULT_NUM_FRAMES, _DEFAULT_SIZE, _DEFAULT_BATCH = 8, (256, 128), 32


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "embed",
        help="embed a folder of tracklet folders",
        description=(
            "One embedding per tracklet: each sub-folder of TRACKLETS holds one track's frames as images "
            "(in name order); its clips are embedded and averaged. Writes embeddings (N, D), names (the "
            "folders), pids and camids (from --pattern, else -1) and the sampling used, as one .npz."
        ),
    )
    parser.add_argument("model", type=Path, help="a save_pretrained folder, a training run / checkpoint / "
                        "model.pt, or an .onnx file (with --backend onnxruntime)")  # fmt: skip
    parser.add_argument("tracklets", type=Path, help="a folder of tracklet folders")
    parser.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_num_frames(parser, None, f"frames per clip (default: the training run's, else {_DEFAULT_NUM_FRAMES})")
    parser.add_argument(
        "--size", type=positive_int, nargs=2, metavar=("H", "W"), default=None,
        help="frame size (default: the training run's or the ONNX graph's, else 256 128)",
    )  # fmt: skip
    parser.add_argument("--sampling", choices=TEST_SAMPLINGS, default="dense",
                        help="clips of a tracklet: dense (all frames, default), first, even")  # fmt: skip
    parser.add_argument(
        "--max-clips", type=positive_int, default=None, help="at most this many clips per tracklet (dense)"
    )
    parser.add_argument(
        "--batch", type=positive_int, default=None, help=f"clips per call (default {_DEFAULT_BATCH})"
    )
    parser.add_argument("--pattern", default=None,
                        help=r"regex with (?P<pid>...) and/or (?P<camid>...) groups for the folder names, "
                        r"e.g. '(?P<pid>\d+)_c(?P<camid>\d+)'")  # fmt: skip
    parser.add_argument(
        "--backend", choices=("torch", "onnxruntime"), default=None,
        help="run MODEL in PyTorch or ONNX Runtime (default: onnxruntime for an .onnx MODEL)",
    )  # fmt: skip
    parser.add_argument("--device", type=device, default=None, help=f"{DEVICE_HELP}; torch backend only")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(run=run)


def _backend(args: argparse.Namespace) -> str:
    is_onnx = args.model.suffix == ".onnx"
    backend = args.backend or ("onnxruntime" if is_onnx else "torch")
    if backend == "onnxruntime" and not is_onnx:
        raise ValueError(
            f"--backend onnxruntime runs an .onnx file, got {args.model} (lstrl export writes one)"
        )
    if backend == "torch" and is_onnx:
        raise ValueError(f"{args.model} is an ONNX graph: run it with --backend onnxruntime")
    if backend == "onnxruntime" and args.device not in (None, "cpu"):
        raise ValueError(
            f"--device {args.device} applies to the torch backend; onnxruntime runs on the CPU here"
        )
    return backend


def _settle(args: argparse.Namespace, loaded: LoadedModel) -> tuple[int, tuple[int, int], int]:
    """``T``, ``(H, W)`` and the batch: the flags where given, checked against what the model fixes."""
    num_frames = args.num_frames or loaded.num_frames or _DEFAULT_NUM_FRAMES
    size = tuple(args.size) if args.size else loaded.size or _DEFAULT_SIZE
    batch = args.batch or _DEFAULT_BATCH
    if not loaded.dynamic_num_frames and num_frames != loaded.num_frames:
        raise ValueError(
            f"{args.model} was exported for clips of T={loaded.num_frames} frames, got -T {num_frames}: "
            f"pass -T {loaded.num_frames}, or export again with a dynamic clip length (without --no-dynamic)"
        )
    if args.backend_name == "onnxruntime" and loaded.size is not None and size != loaded.size:
        raise ValueError(
            f"{args.model} takes frames of {loaded.size[0]}x{loaded.size[1]}, got --size {size[0]} {size[1]}"
        )
    if not loaded.dynamic_batch:
        if args.batch not in (None, 1):
            raise ValueError(
                f"{args.model} was exported for a fixed batch: leave out --batch, or export again"
            )
        batch = 1
    return num_frames, (int(size[0]), int(size[1])), batch


def run(args: argparse.Namespace) -> None:
    from ..reid.embed import embed_tracklets, read_tracklet_folders, save_embeddings

    if args.out.suffix != ".npz":
        raise ValueError(f"--out must name an .npz file, got {args.out}")
    if args.out.exists() and not args.overwrite:
        raise ValueError(f"--out {args.out} exists: pass --overwrite to replace it")
    if args.max_clips is not None and args.sampling != "dense":
        raise ValueError(
            f"--max-clips applies to --sampling dense (a tracklet's clips), got --sampling {args.sampling}"
        )
    args.backend_name = _backend(args)
    folders = read_tracklet_folders(args.tracklets, args.pattern)  # bad folders fail before the model loads
    if args.backend_name == "onnxruntime":
        loaded, where = load_onnx(args.model), "cpu"
    else:
        where = args.device or default_device()
        model, loaded = load_torch(args.model, where)
        # channels-last, as in training: the same numbers to round-off, faster convolutions (1.1x-1.3x)
        model.to(memory_format=torch.channels_last)  # in place: loaded.embed is this model
    num_frames, size, batch = _settle(args, loaded)
    embeddings = embed_tracklets(
        loaded.embed, folders.tracklets, num_frames, size, args.sampling, batch, args.max_clips, where,
        show_progress=args.progress,
    )  # fmt: skip
    save_embeddings(
        args.out, embeddings, folders, num_frames=num_frames, size=size, sampling=args.sampling,
        model=str(args.model), backend=args.backend_name,
    )  # fmt: skip
    print(
        f"{len(folders.names)} tracklets -> {args.out} (embeddings {tuple(embeddings.shape)}, T={num_frames})"
    )
