"""Parameters, MACs, latency and peak memory of the LSTRL blocks and of the paper's model (Table 3).

Run ``python benchmarks/flops.py`` (no arguments: the paper's setting, 1 min 35 s on an idle 2-core CPU);
``--help`` lists the options. Four sections:

1. Table 3 reproduced: Baseline, +MAE, +MAE+BME (``VideoReIDNet``, 625 classes), parameters, GMACs per frame
   in the paper's (thop) convention and counted completely, latency per clip and peak memory.
2. Per block, at each injected stage: MAE's efficient path vs its materializing path (``return_maps=True``),
   and our BME vs a BME computed as Eq. 4-5 are written (two ψ passes), side by side with their ratio.
3. Scaling: MAE, efficient vs materializing, as the clip grows from 4 to 32 frames, at the last injected
   stage (``--plot`` draws it).
4. Throughput at a real batch: Baseline, +MAE, +BME, +MAE+BME, inference at 64 clips per call and a full
   training step at P x K = 8 x 4 clips, with achieved GFLOP/s against the dense matmul rate in the same
   precision (by default on CUDA only: on a CPU it takes long; ``--only throughput`` runs it anywhere).

``--dtype bfloat16`` (or ``float16``) runs everything under autocast, the parameters in float32 as in
training; ``--channels-last`` and ``--compile`` (``torch.compile``) apply to every measured module;
``--smoke`` runs everything at tiny sizes (a check that the script works, in seconds on a CPU).

Stdout gets the report, stderr a progress line. ``--json PATH`` writes all of it machine-readable;
``--compare OLD.json`` prints each figure next to the one of the run that wrote OLD.json, with the change in
percent (after editing a block or upgrading torch, what moved).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _blocks
import _scaling
import _table3
import _throughput
import torch
from _measure import DTYPES, Mode, Progress, close_environment, environment, matmul_gflops, matmul_rate
from _models import NUM_CLASSES, stage_shapes
from _report import SECTIONS, load_old, print_header

from lstrl_layers.cli.argtypes import (
    DEVICE_HELP,
    add_backbone,
    add_num_frames,
    default_device,
    device,
    positive_int,
    stage,
)

REPORTS = {"table3": _table3, "blocks": _blocks, "scaling": _scaling, "throughput": _throughput}
# --smoke: tiny sizes (each a default: a flag given with --smoke still counts)
SMOKE = {
    "backbone": "test_resnet",
    "size": [32, 16],
    "num_frames": 2,
    "batch": 1,
    "repeat": 1,
    "throughput_batch": 2,
    "P": 2,
    "K": 2,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and check every option before anything is measured; ``shapes`` (the injected stages' input
    shapes) and ``old`` (the results of ``--compare``, or None) are added."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device",
        type=device,
        default=default_device(),
        help=DEVICE_HELP,
    )
    add_backbone(parser, "resnet50", "timm CNN (default: resnet50, the paper's)")
    parser.add_argument(
        "--stages",
        nargs="+",
        type=stage,
        default=[2, 3],
        help="feature_info indices or names, space-separated (default: 2 3; e.g. layer2 layer3)",
    )
    add_num_frames(parser, 8, "T, frames per clip (default: 8)")
    parser.add_argument(
        "--size",
        nargs=2,
        type=positive_int,
        default=[256, 128],
        metavar=("H", "W"),
        help="frame size (default: 256 128)",
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=None,
        help="clips per call in the per-block section (default: 4 on CPU, 32 on CUDA); Table 3 and the "
        "scaling section use one clip per call",
    )
    parser.add_argument(
        "--throughput-batch",
        type=positive_int,
        default=64,
        help="clips per inference call in the throughput section (default: 64)",
    )
    parser.add_argument(
        "-P", type=positive_int, default=8, help="identities per training batch (throughput; default: 8)"
    )
    parser.add_argument(
        "-K", type=positive_int, default=4, help="clips per identity in a training batch (default: 4)"
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=None,
        help="timed calls per measurement, median reported (default: 3 on CPU, 20 on CUDA)",
    )
    parser.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default="float32",
        help="precision of the computation: float32, or bfloat16 / float16 under autocast with float32 "
        "parameters, as mixed-precision training runs (default: float32)",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="modules and frames in the channels-last memory format"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile every measured module (compilation happens in the untimed warm-up calls)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, to check that the script runs (test_resnet, 32x16, T=2, one clip, one timed call; "
        "flags given beside it still count)",
    )
    parser.add_argument(
        "--only",
        choices=list(SECTIONS),
        help="run one section only (default: all; the throughput section on CUDA or with --smoke only)",
    )
    parser.add_argument("--json", metavar="PATH", help="write everything printed as JSON")
    parser.add_argument(
        "--compare",
        metavar="OLD.json",
        help="print each figure next to the one in OLD.json (written by an earlier run's --json) and the "
        "change in percent",
    )
    parser.add_argument("--plot", metavar="PATH", help="save the scaling section as a PNG (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.smoke:  # the tiny sizes as defaults, then the flags given
        parser.set_defaults(**SMOKE)
        args = parser.parse_args(argv)
    on_cuda = args.device.startswith("cuda")
    if args.repeat is None:
        args.repeat = 20 if on_cuda else 3
    if args.batch is None:
        args.batch = 32 if on_cuda else 4
    for flag, value in (("-P", args.P), ("-K", args.K)):
        if value < 2:  # batch-hard triplet mining needs a positive and a negative for every clip
            parser.error(f"{flag} {value}: the training step's triplet loss needs at least 2")
    args.mode = Mode(args.dtype, args.channels_last, args.compile)
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None and not Path(path).resolve().parent.is_dir():
            parser.error(f"{flag} {path}: no directory {str(Path(path).parent)!r} to write it in")
    if args.plot is not None:
        if args.only not in (None, "scaling"):
            parser.error(f"--plot draws the scaling section, which --only {args.only} skips")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install matplotlib (or pip install -e '.[bench]')")
    args.old = None
    if args.compare is not None:
        try:
            args.old = load_old(args.compare)
        except ValueError as error:
            parser.error(f"--compare: {error}")
    try:
        args.shapes = stage_shapes(args.backbone, args.stages, args.size)
    except (ValueError, RuntimeError) as error:
        stages, (height, width) = " ".join(map(str, args.stages)), args.size
        parser.error(f"--backbone {args.backbone} --stages {stages} --size {height} {width}: {error}")
    return args


def sections_to_run(args: argparse.Namespace) -> list[str]:
    """``--only``'s section, or all of them (the throughput section on CUDA or with ``--smoke`` only)."""
    if args.only:
        return [args.only]
    everywhere = args.device.startswith("cuda") or args.smoke
    return [name for name in SECTIONS if name != "throughput" or everywhere]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the sections, write ``--json``, print the report; returns what ``--json`` writes."""
    args = parse_args(argv)
    device, shapes, mode = torch.device(args.device), args.shapes, args.mode
    sections = sections_to_run(args)
    if args.compile:  # a module dynamo would stop compiling fails instead of being timed eagerly
        torch._dynamo.config.fail_on_recompile_limit_hit = True
    progress = Progress(1 + sum(REPORTS[name].steps(shapes) for name in sections))
    progress.step("dense matmul throughput")
    env = environment(device)
    repeat = max(args.repeat, 5)
    peak_gflops, size = matmul_rate(device, repeat, args.dtype)
    env.update(matmul_dtype=args.dtype, matmul_size=size, matmul_gflops=peak_gflops)
    same = args.dtype == "float32" and size == 2048  # then one measurement is both figures
    env["matmul_2048_fp32_gflops"] = peak_gflops if same else matmul_gflops(device, repeat)
    settings = {
        "backbone": args.backbone,
        "stages": list(args.stages),
        "size": list(args.size),
        "num_frames": args.num_frames,
        "batch": args.batch,
        "repeat": args.repeat,
        "dtype": args.dtype,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "last_stride": 1,
        "num_classes": NUM_CLASSES,
        "stage_shapes": [{"stage": s, "channels": c, "height": h, "width": w} for s, c, h, w in shapes],
    }
    if "throughput" in sections:
        settings.update(throughput_batch=args.throughput_batch, P=args.P, K=args.K)
    results: dict[str, Any] = {"env": env, "settings": settings}
    if "table3" in sections:
        results.update(_table3.run(args, device, mode, shapes, progress))
    if "blocks" in sections:
        results["blocks"] = _blocks.run(args, device, mode, shapes, peak_gflops, progress)
    if "scaling" in sections:
        results["scaling"] = _scaling.run(args, device, mode, shapes[-1], progress)
    if "throughput" in sections:
        results.update(_throughput.run(args, device, mode, peak_gflops, progress))
    progress.close()
    close_environment(env)
    if args.json is not None:  # before printing, so that a closed stdout cannot lose it
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))

    print_header(results, args.old, args.compare)
    for name in sections:
        REPORTS[name].report(results, args.old)
    if args.only is None and "throughput" not in sections:
        print(
            "\nThroughput at a real batch: not run on a CPU by default (at the paper's sizes it takes long); "
            "--only throughput runs it"
        )
    old_only = [
        title for name, title in SECTIONS.items() if name in (args.old or {}) and name not in sections
    ]
    if old_only:
        print(f"\nin the old run only: {', '.join(old_only)} (not run this time)")
    if args.plot is not None and "scaling" in results:
        _scaling.plot(results["scaling"], args.plot)
        print(f"\nplot: {args.plot}")
    if args.json is not None:
        print(f"json: {args.json}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
