"""``lstrl export MODEL --onnx OUT.onnx``: a trained model as one ONNX file, checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from .argtypes import add_num_frames, positive_int
from .models import load_torch


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "export",
        help="export a trained model to ONNX",
        description=(
            "Write MODEL's embedding graph as one ONNX file taking videos (B, T, 3, H, W): any batch and "
            "any clip length T unless --no-dynamic. With --check (default) the file is run in ONNX Runtime "
            "on 1 and 3 clips of T = 1, 2, 4, 8, 16 against PyTorch and refused if they differ."
        ),
    )
    parser.add_argument(
        "model", type=Path, help="a save_pretrained folder, a training run / checkpoint or model.pt"
    )
    parser.add_argument("--onnx", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --onnx if it exists")
    parser.add_argument("--no-dynamic", dest="dynamic", action="store_false",
                        help="fix the batch and T to the example's (1 clip of -T frames)")  # fmt: skip
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="compare the file with PyTorch in ONNX Runtime (default: on)")  # fmt: skip
    add_num_frames(parser, None, "T of the example clip, fixed in the graph with --no-dynamic (default 8)")
    parser.add_argument(
        "--size", type=positive_int, nargs=2, metavar=("H", "W"), default=None,
        help="frame size fixed in the graph (default: the training run's, else 256 128)",
    )  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..export import export_onnx

    if args.onnx.suffix != ".onnx":
        raise ValueError(f"--onnx must name an .onnx file, got {args.onnx}")
    if args.onnx.exists() and not args.overwrite:
        raise ValueError(f"--onnx {args.onnx} exists: pass --overwrite to replace it")
    if args.dynamic is True and args.num_frames is not None:
        raise ValueError("-T fixes the clip length with --no-dynamic; a dynamic graph takes any T")
    model, loaded = load_torch(args.model, "cpu")
    num_frames = args.num_frames or loaded.num_frames or 8
    height, width = args.size or loaded.size or (256, 128)
    example = torch.randn(1 if not args.dynamic else 2, num_frames, 3, height, width)
    result = export_onnx(model, args.onnx, example, dynamic=args.dynamic, check=args.check)
    shape = f"(B, T, 3, {height}, {width})" if args.dynamic else str(tuple(example.shape))
    line = f"{args.onnx}: video {shape} -> embedding, opset {result.opset}"
    if result.checked:
        line += f"; checked on {len(result.checked)} shapes, largest difference {result.max_abs_diff:.2g}"
    print(line)
