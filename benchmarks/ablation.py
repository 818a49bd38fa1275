"""What each block adds, on data where the answer is known: the paper's Tables 3-5 in miniature.

Two synthetic data sets (``lstrl_layers.reid``): ``motion``, identities in pairs that share one appearance and
walk in opposite directions (towards / away from the camera), and ``appearance``, identities that differ in
appearance only. A frame-level model that pools over time (Baseline: per-frame CNN, GAP, TAP) gives a clip and
its time reversal the same embedding, and so does +MAE (MAE is equivariant to permuting the frames, TAP
invariant): on the motion set they cannot tell the two identities of a pair apart, whatever they learn. BME
(frame t against t+1 and t-1, with separate weights per direction) can.

Every variant trains with the same data, seeds, schedule and code (``lstrl_layers.reid.engine``, as
``examples/train_video_reid.py``) and is evaluated with the standard protocol (mAP, CMC rank-1).

    python benchmarks/ablation.py                      # Table 3 rows, both sets, 3 seeds
    python benchmarks/ablation.py --full               # + Table 4 and Table 5 rows, the paper's BME init
    python benchmarks/ablation.py --quick              # one seed, fewer steps: a smoke run
    python benchmarks/ablation.py --json out/ablation.json --plot out/ablation.png
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lstrl_layers.argtypes import DEVICE_HELP, default_device, device, positive_int
from lstrl_layers.reid import (
    VideoReIDData,
    synthetic_motion_reid,
    synthetic_occlusion_reid,
    synthetic_video_reid,
)
from lstrl_layers.reid.engine import TrainSettings, fit

# The model and recipe of every run: a ResNet-18 at a quarter of its width (stem 16, stages 16-128 channels,
# 0.7M parameters) with the blocks after layer2 and layer3 as in the paper, 64 x 32 frames, T = 4, P x K =
# 8 x 3 (K: one clip per camera), Adam at 1e-3 without decay (from scratch, short runs).
BACKBONE = dict(model="resnet18", model_kwargs=dict(channels=(16, 32, 64, 128), stem_width=16))
RECIPE = dict(
    pretrained=False,
    stages=(2, 3),
    size=(64, 32),
    num_frames=4,
    P=8,
    K=3,
    lr=1e-3,
    step=10**9,
    test_batch=64,
    test_sampling="even",  # T evenly spaced frames: partner clips are exact reversals of each other
)
IDENTITIES = (48, 24)  # training and test identities (24 + 12 pairs in the motion set)
CAMERAS = 3

# Table 3 rows
TABLE3: dict[str, dict[str, Any]] = {
    "Baseline": dict(mae=False, bme=False),
    "+MAE": dict(bme=False),
    "+BME": dict(mae=False),
    "+MAE+BME": dict(),
}
# --full: Table 4 (MAE without one granularity), Table 5 (BME variants), BME with the paper's initialization
FULL: dict[str, dict[str, Any]] = {
    **{
        f"+MAE -A{i}": dict(
            bme=False, model_kwargs=dict(mae_kwargs=dict(granularities=[j for j in range(1, 5) if j != i]))
        )
        for i in range(1, 5)
    },
    "+MAE+BME forward only": dict(model_kwargs=dict(bme_kwargs=dict(directions=["forward"]))),
    "+MAE+BME backward only": dict(model_kwargs=dict(bme_kwargs=dict(directions=["backward"]))),
    "+MAE+BME local-to-local": dict(model_kwargs=dict(bme_kwargs=dict(mode="local"))),
    "+BME zero_init=False": dict(mae=False, model_kwargs=dict(zero_init=False)),
}
DATASETS = {
    "approach": functools.partial(synthetic_motion_reid, motion="approach"),
    "squat": functools.partial(synthetic_motion_reid, motion="squat"),
    "appearance": synthetic_video_reid,
    "occlusion": synthetic_occlusion_reid,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=positive_int, default=300, help="training steps per run (default 300)")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds per variant (default 3)")
    p.add_argument("--full", action="store_true", help="also Table 4 and 5 rows and the paper's BME init")
    p.add_argument("--quick", action="store_true", help="one seed, 60 steps (overrides --steps, --seeds)")
    p.add_argument("--datasets", nargs="+", choices=tuple(DATASETS), default=list(DATASETS))
    p.add_argument(
        "--identities",
        nargs=2,
        type=positive_int,
        default=IDENTITIES,
        metavar=("TRAIN", "TEST"),
        help=f"identities in each part, even (pairs), at least P={RECIPE['P']} for training (default 48 24)",
    )
    p.add_argument("--variants", nargs="+", metavar="NAME", help="run only these rows (names as printed)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--plot", type=Path, help="write a PNG bar chart (mean and spread) here")
    p.add_argument(
        "--device",
        type=device,
        default=default_device(),
        help=DEVICE_HELP,
    )
    p.add_argument(
        "--jobs",
        type=positive_int,
        help="runs in parallel, one thread each (default: the CPU cores on cpu, 1 on cuda)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no per-run lines")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.seeds = 60, 1
    variants = {**TABLE3, **(FULL if args.full else {})}
    if args.variants:
        unknown = [v for v in args.variants if v not in {**TABLE3, **FULL}]
        if unknown:
            parser.error(f"unknown --variants {unknown}; choose from {list({**TABLE3, **FULL})}")
        variants = {name: v for name, v in {**TABLE3, **FULL}.items() if name in args.variants}
    args.variant_settings = variants
    for flag in ("json", "plot"):
        path = getattr(args, flag)
        if path is not None and not path.parent.is_dir():
            parser.error(f"--{flag} {path}: no directory {str(path.parent)!r} to write it in")
    args.identities = tuple(args.identities)
    if any(n % 2 for n in args.identities) or args.identities[0] < RECIPE["P"]:
        parser.error(f"--identities: expected even numbers, TRAIN >= {RECIPE['P']}, got {args.identities}")
    if args.jobs is None:
        args.jobs = 1 if args.device.startswith("cuda") else (os.cpu_count() or 1)
    return args


def _settings(
    variant: dict[str, Any], args: argparse.Namespace, seed: int, data: VideoReIDData
) -> TrainSettings:
    steps_per_epoch = len({t.pid for t in data.train}) // RECIPE["P"]
    epochs = math.ceil(args.steps / steps_per_epoch)  # whole epochs, or part of one for a smoke run
    model_kwargs = {**BACKBONE["model_kwargs"], **variant.get("model_kwargs", {})}
    return TrainSettings(
        **{**RECIPE, "model": BACKBONE["model"]},
        **{k: v for k, v in variant.items() if k != "model_kwargs"},
        model_kwargs=model_kwargs,
        epochs=epochs,
        max_steps=min(args.steps, steps_per_epoch),
        eval_every=epochs,
        workers=0,
        device=args.device,
        seed=seed,
        progress=False,
    )


def blind_ceiling(data: VideoReIDData) -> dict[str, float]:
    """Expected mAP and rank-1 of a model that ranks each query's true matches and its partner's clips first,
    in an order that cannot tell them apart (random), as any model blind to time reversal must on the motion
    set at best."""
    aps, top1 = [], []
    for query in data.query:
        partner = query.pid ^ 1  # pairs (2k, 2k + 1)
        matches = sum(1 for g in data.gallery if g.pid == query.pid and g.camid != query.camid)
        decoys = sum(1 for g in data.gallery if g.pid == partner)
        total = matches + decoys
        placements = list(itertools.combinations(range(1, total + 1), matches))
        aps.append(
            statistics.fmean(
                statistics.fmean((k + 1) / rank for k, rank in enumerate(ranks)) for ranks in placements
            )
        )
        top1.append(matches / total)
    return {"mAP": statistics.fmean(aps), "rank1": statistics.fmean(top1)}


def _summary(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    spread = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:5.1f} ± {spread:4.1f}" if len(values) > 1 else f"{mean:5.1f}       "


def print_table(results: dict[str, Any], names: list[str]) -> None:
    for dataset, rows in results["datasets"].items():
        seeds = len(next(iter(rows.values()))["mAP"])
        spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"
        print(f"\n{dataset} set ({spread}, %)")
        print(f"  {'variant':<26} {'mAP':>13} {'rank-1':>13}")
        for name in names:
            print(f"  {name:<26} {_summary(rows[name]['mAP']):>13} {_summary(rows[name]['rank1']):>13}")
        ceiling = results["ceilings"].get(dataset)
        if ceiling:
            print(
                f"  {'blind to time reversal':<26} {100 * ceiling['mAP']:5.1f} (best)  "
                f"{100 * ceiling['rank1']:5.1f} (best)"
            )


def plot(results: dict[str, Any], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(results["datasets"])
    figure, axes = plt.subplots(1, len(datasets), figsize=(1.2 + 0.9 * len(names) * len(datasets), 3.6))
    axes = [axes] if len(datasets) == 1 else list(axes)
    for axis, dataset in zip(axes, datasets):
        rows = results["datasets"][dataset]
        means = [100 * statistics.fmean(rows[n]["mAP"]) for n in names]
        spreads = [100 * statistics.stdev(rows[n]["mAP"]) if len(rows[n]["mAP"]) > 1 else 0 for n in names]
        axis.bar(range(len(names)), means, yerr=spreads, capsize=4, color="tab:blue")
        ceiling = results["ceilings"].get(dataset)
        if ceiling:
            axis.axhline(
                100 * ceiling["mAP"], color="tab:red", linestyle="--", label="blind to time reversal"
            )
            axis.legend(loc="lower right", fontsize=8)
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        axis.set(title=f"{dataset} set", ylabel="mAP (%)", ylim=(0, 100))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


@functools.lru_cache(maxsize=4)
def _data(dataset: str, identities: tuple[int, int], seed: int) -> VideoReIDData:
    """The data set of a seed, generated once per process."""
    return DATASETS[dataset](*identities, num_cams=CAMERAS, size=RECIPE["size"], seed=seed)


def _run(task: tuple[str, int, str, argparse.Namespace]) -> tuple[str, int, str, dict[str, float], float]:
    """One training run (in a worker process when ``--jobs`` > 1): its final mAP and rank-1."""
    dataset, seed, name, args = task
    if args.jobs > 1:
        torch.set_num_threads(1)  # tiny tensors: one thread per run, runs side by side
    tic = time.time()
    data = _data(dataset, args.identities, seed)
    history = fit(_settings(args.variant_settings[name], args, seed, data), data, log=lambda m: None)
    scores = {"mAP": history[-1]["mAP"], "rank1": history[-1]["rank1"]}
    return dataset, seed, name, scores, time.time() - tic


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    names = list(args.variant_settings)
    tasks = [(d, seed, name, args) for d in args.datasets for seed in range(args.seeds) for name in names]
    print(
        f"{len(tasks)} runs: {len(names)} variants x {args.seeds} seed(s) x {len(args.datasets)} data "
        f"set(s), "
        f"{args.steps} steps each, {BACKBONE['model']} at quarter width on {args.device}, "
        f"{args.jobs} in parallel",
        flush=True,
    )
    results: dict[str, Any] = {
        "settings": dict(steps=args.steps, seeds=args.seeds, identities=args.identities, cameras=CAMERAS)
        | BACKBONE
        | RECIPE,
        "env": {
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
            or platform.machine(),
            "cpu_cores": os.cpu_count(),
            "jobs": args.jobs,
        },
        "datasets": {d: {name: {"mAP": [0.0] * args.seeds, "rank1": [0.0] * args.seeds} for name in names}
                     for d in args.datasets},
        "ceilings": {},
    }  # fmt: skip
    if "motion" in args.datasets:
        results["ceilings"]["motion"] = blind_ceiling(_data("motion", args.identities, 0))
    started = time.time()
    pool = multiprocessing.get_context("spawn").Pool(args.jobs) if args.jobs > 1 else None
    with pool or contextlib.nullcontext():
        finished = pool.imap_unordered(_run, tasks) if pool else map(_run, tasks)
        for done, (dataset, seed, name, scores, seconds) in enumerate(finished, 1):
            for key, value in scores.items():
                results["datasets"][dataset][name][key][seed] = value
            if args.progress:
                print(
                    f"[{done}/{len(tasks)}] {dataset} seed {seed} {name}: mAP {100 * scores['mAP']:.1f}, "
                    f"rank-1 {100 * scores['rank1']:.1f} ({seconds:.0f} s)",
                    flush=True,
                )
    results["seconds"] = round(time.time() - started, 1)
    print_table(results, names)
    print(
        f"\n{len(tasks)} runs in {results['seconds'] / 60:.1f} min on {results['env']['device']} "
        f"({args.device}, {args.jobs} in parallel)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results in {args.json}")
    if args.plot:
        plot(results, names, args.plot)
        print(f"plot in {args.plot}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
