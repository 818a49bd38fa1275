"""Parameters, MACs, latency and peak memory of the LSTRL blocks and of the paper's model (Table 3).

Run ``python benchmarks/flops.py`` (no arguments: the paper's setting, 1 min 35 s on an idle 2-core CPU);
``--help`` lists the options. Three sections:

1. Table 3 reproduced: Baseline, +MAE, +MAE+BME (``VideoReIDNet``, 625 classes), parameters, GMACs per frame
   in the paper's (thop) convention and counted completely, latency per clip and peak memory.
2. Per block, at each injected stage: MAE's efficient path vs its materializing path (``return_maps=True``),
   and our BME vs a BME computed as Eq. 4-5 are written (two ψ passes), side by side with their ratio.
3. Scaling: MAE, efficient vs materializing, as the clip grows from 4 to 32 frames, at the last injected
   stage (``--plot`` draws it).

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
import torch
from _measure import Progress, close_environment, environment, matmul_gflops
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

REPORTS = {"table3": _table3, "blocks": _blocks, "scaling": _scaling}


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
        default=4,
        help="clips per call in the per-block section (default: 4); Table 3 and the scaling section use one "
        "clip per call",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=None,
        help="timed calls per measurement, median reported (default: 3 on CPU, 20 on CUDA)",
    )
    parser.add_argument("--only", choices=list(SECTIONS), help="run one section only")
    parser.add_argument("--json", metavar="PATH", help="write everything printed as JSON")
    parser.add_argument(
        "--compare",
        metavar="OLD.json",
        help="print each figure next to the one in OLD.json (written by an earlier run's --json) and the "
        "change in percent",
    )
    parser.add_argument("--plot", metavar="PATH", help="save the scaling section as a PNG (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 20 if args.device.startswith("cuda") else 3
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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the sections, write ``--json``, print the report; returns what ``--json`` writes."""
    args = parse_args(argv)
    device, shapes = torch.device(args.device), args.shapes
    sections = [args.only] if args.only else list(SECTIONS)
    progress = Progress(1 + sum(REPORTS[name].steps(shapes) for name in sections))
    progress.step("dense matmul throughput")
    env = environment(device)
    env["matmul_2048_fp32_gflops"] = peak_gflops = matmul_gflops(device, repeat=max(args.repeat, 5))
    settings = {
        "backbone": args.backbone,
        "stages": list(args.stages),
        "size": list(args.size),
        "num_frames": args.num_frames,
        "batch": args.batch,
        "repeat": args.repeat,
        "last_stride": 1,
        "num_classes": NUM_CLASSES,
        "stage_shapes": [{"stage": s, "channels": c, "height": h, "width": w} for s, c, h, w in shapes],
    }
    results: dict[str, Any] = {"env": env, "settings": settings}
    if "table3" in sections:
        results.update(_table3.run(args, device, shapes, progress))
    if "blocks" in sections:
        results["blocks"] = _blocks.run(args, device, shapes, peak_gflops, progress)
    if "scaling" in sections:
        results["scaling"] = _scaling.run(args, device, shapes[-1], progress)
    progress.close()
    close_environment(env)
    if args.json is not None:  # before printing, so that a closed stdout cannot lose it
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))

    print_header(results, args.old, args.compare)
    for name in sections:
        REPORTS[name].report(results, args.old)
    old_only = [
        title for name, title in SECTIONS.items() if name in (args.old or {}) and name not in sections
    ]
    if old_only:
        print(f"\nin the old run only: {', '.join(old_only)} (not run with --only {args.only})")
    if args.plot is not None and "scaling" in results:
        _scaling.plot(results["scaling"], args.plot)
        print(f"\nplot: {args.plot}")
    if args.json is not None:
        print(f"json: {args.json}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
