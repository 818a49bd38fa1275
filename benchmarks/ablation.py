"""What each block adds, on data where the answer is known: the paper's Tables 3-5 in miniature.

Four synthetic data sets (``lstrl_layers.reid``): ``approach`` and ``squat``, identities in pairs that share
one appearance and whose tracklets are the same videos played in opposite time order (walking towards / away
from the camera; squatting down / standing up); ``appearance``, identities that differ in appearance only; and
``occlusion``, identities seen in parts (each frame shows the upper or the lower body, whose looks other
identities share). A frame-level model that pools over time (Baseline: per-frame CNN, GAP, TAP) gives a clip
and its time reversal the same embedding, and so does +MAE (MAE is equivariant to permuting the frames, TAP
invariant): on the motion sets their pair AUC (own clips ranked above the partner's) is exactly 0.5, whatever
they learn. BME (frame t against t+1 and t-1, with separate weights per direction) can tell them apart.

Every variant trains with the same data, seeds, batches, schedule and code (``lstrl_layers.reid.engine``, as
``examples/train_video_reid.py``) and is evaluated with the standard protocol (mAP, CMC rank-1) and, on the
motion sets, the pair AUC. Each variant is compared with the Baseline of the same seed (same data, same
batches): the mean of the paired differences and its 95% t-interval.

    python benchmarks/ablation.py                      # Table 3 rows, the four sets, 5 seeds
    python benchmarks/ablation.py --full               # + Table 4 and 5 rows, the recipe's ablations
    python benchmarks/ablation.py --quick              # approach set, 4 seeds: does the full model learn?
    python benchmarks/ablation.py --first-seed 5       # the same on seeds 5-9: other data, other batches
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
from torch import nn

from lstrl_layers.cli.argtypes import DEVICE_HELP, default_device, device, non_negative_int, positive_int
from lstrl_layers.reid import (
    VideoReIDData,
    synthetic_motion_reid,
    synthetic_occlusion_reid,
    synthetic_video_reid,
)
from lstrl_layers.reid.engine import TrainSettings, extract, fit
from lstrl_layers.reid.metrics import evaluate_ranking, pairwise_distances

# The model and recipe of every run: a ResNet-18 at a quarter of its width (stem 16, stages 16-128 channels,
# 0.7M parameters) with the blocks after layer2 and layer3 as in the paper, 64 x 32 frames, T = 4, P x K =
# 8 x 3 (K: one clip per camera), Adam at 1e-3 without rate decay (from scratch, short runs); in BME, the part
# that tells the two directions apart (δ, antisymmetric=True) at 10x that rate. Test clips: T evenly spaced
# frames, so that partner clips are exact reversals of each other.
BACKBONE = dict(backbone="resnet18", model_kwargs=dict(channels=(16, 32, 64, 128), stem_width=16))
RECIPE = dict(
    pretrained=False,
    stages=(2, 3),
    size=(64, 32),
    num_frames=4,
    P=8,
    K=3,
    lr=1e-3,
    direction_lr_factor=10.0,
    step=10**9,
    test_batch=64,
    test_sampling="even",
)
BME_RECIPE = dict(antisymmetric=True)  # BME's arguments in every run with BME, unless a row says otherwise
STEPS = 250  # --quick too
SEEDS, QUICK_SEEDS = 5, 4
IDENTITIES = (48, 24)  # training and test identities (24 + 12 pairs in the motion sets)
CAMERAS = 3

# Table 3 rows
TABLE3: dict[str, dict[str, Any]] = {
    "Baseline": dict(mae=False, bme=False),
    "+MAE": dict(bme=False),
    "+BME": dict(mae=False),
    "+MAE+BME": dict(),
}
_LEAKY_RELU = functools.partial(nn.LeakyReLU, 0.1)  # for υ in Eq. 6, instead of the paper's ReLU
_PAPERS_BME = dict(antisymmetric=False)  # the paper's block: no δ (then no rate of its own either)
_BLOCK_10X = dict(bme_lr_factor=10.0)  # 0.2's recipe, with _PAPERS_BME: the whole block at 10x the rate
_LAYER_SCALE = dict(ls_init_value=1e-2, **_PAPERS_BME)  # γ from 1e-2, φ ψ υ random; with _BLOCK_10X
# --full: Table 4 (MAE without one granularity), Table 5 (BME variants), the blocks' recipe undone
FULL: dict[str, dict[str, Any]] = {
    **{
        f"+MAE -A{i}": dict(
            bme=False, model_kwargs=dict(mae_kwargs=dict(granularities=[j for j in range(1, 5) if j != i]))
        )
        for i in range(1, 5)
    },
    **{  # one direction: no difference to take, the whole block tells time's arrow, at 10x as in 0.2
        f"+MAE+BME {direction} only": dict(
            **_BLOCK_10X, model_kwargs=dict(bme_kwargs=dict(directions=[direction], **_PAPERS_BME))
        )
        for direction in ("forward", "backward")
    },
    "+MAE+BME local-to-local": dict(model_kwargs=dict(bme_kwargs=dict(mode="local"))),
    "+BME zero_init=False": dict(mae=False, model_kwargs=dict(zero_init=False)),
    "+BME block at 10x": dict(mae=False, **_BLOCK_10X, model_kwargs=dict(bme_kwargs=_PAPERS_BME)),
    "+MAE+BME block at 10x": dict(**_BLOCK_10X, model_kwargs=dict(bme_kwargs=_PAPERS_BME)),
    "+BME LayerScale": dict(mae=False, **_BLOCK_10X, model_kwargs=dict(bme_kwargs=_LAYER_SCALE)),
    "+MAE+BME LayerScale": dict(**_BLOCK_10X, model_kwargs=dict(bme_kwargs=_LAYER_SCALE)),
    "+BME one learning rate": dict(mae=False, model_kwargs=dict(bme_kwargs=_PAPERS_BME)),
    "+MAE+BME one learning rate": dict(model_kwargs=dict(bme_kwargs=_PAPERS_BME)),
    "+BME LeakyReLU": dict(mae=False, model_kwargs=dict(bme_kwargs=dict(act_layer=_LEAKY_RELU))),
    "+MAE+BME LeakyReLU": dict(model_kwargs=dict(bme_kwargs=dict(act_layer=_LEAKY_RELU))),
}
DATASETS = {
    "approach": functools.partial(synthetic_motion_reid, motion="approach"),
    "squat": functools.partial(synthetic_motion_reid, motion="squat"),
    "appearance": synthetic_video_reid,
    "occlusion": synthetic_occlusion_reid,
}
MOTION_SETS = ("approach", "squat")
QUICK_SETS = ("approach",)
# the paper's full model against the Baseline: 8 runs, 4 rounds of 2 side by side on a 2-core CPU
QUICK_VARIANTS = ("Baseline", "+MAE+BME")
# the rows each set runs by default: the occlusion set tests MAE's claim (Baseline vs +MAE)
SET_VARIANTS = {"occlusion": ("Baseline", "+MAE")}
# t quantiles t_{0.975, df} for df = 1..30 (two-sided 95% intervals); above 30, the normal 1.96
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)  # fmt: skip
METRICS = ("mAP", "rank1", "pair_auc", "mAP_direction_known")
LEARNT = 0.85  # a BME run whose pair AUC ends below this has not learnt the direction of motion
MOTION_METRICS = ("pair_auc", "mAP_direction_known")  # the motion sets only


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=positive_int, help=f"training steps per run (default {STEPS})")
    p.add_argument(
        "--seeds", type=positive_int, help=f"seeds per variant (default {SEEDS}; --quick {QUICK_SEEDS})"
    )
    p.add_argument(
        "--first-seed",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="seeds N, N+1, ... (default 0): the same experiment on other data and batches",
    )
    p.add_argument("--full", action="store_true", help="also Table 4 and 5 rows and the recipe's ablations")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"the approach set, {QUICK_SEEDS} seeds, {', '.join(QUICK_VARIANTS)}: the check of a change",
    )
    p.add_argument("--datasets", nargs="+", choices=tuple(DATASETS), help="default: all (--quick: approach)")
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
    p.add_argument("--plot", type=Path, help="write a PNG chart (mean bars, one dot per seed) here")
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
    p.add_argument(
        "--trace",
        type=positive_int,
        metavar="EPOCHS",
        help="also evaluate every EPOCHS epochs and keep the curves (mAP, pair AUC by step) in the JSON",
    )
    p.add_argument(
        "--amp",
        action="store_true",
        help="bfloat16 autocast (faster where the CPU has bfloat16 instructions, and on GPUs); "
        "the tables are float32",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no per-run lines")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.steps = args.steps or STEPS
    args.seeds = args.seeds or (QUICK_SEEDS if args.quick else SEEDS)
    args.datasets = args.datasets or list(QUICK_SETS if args.quick else DATASETS)
    if args.full and args.variants:
        parser.error("--variants names the rows to run (Table 3's and --full's alike): leave out --full")
    if args.full and args.quick:
        parser.error(f"--quick runs {', '.join(QUICK_VARIANTS)} only, so --full would add nothing: give one")
    variants = {**TABLE3, **(FULL if args.full else {})}
    if args.quick and not args.variants:
        variants = {name: TABLE3[name] for name in QUICK_VARIANTS}
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


def variants_of(dataset: str, args: argparse.Namespace) -> list[str]:
    """The rows ``dataset`` runs: all chosen ones, or the set's own (``SET_VARIANTS``) without --variants."""
    own = SET_VARIANTS.get(dataset)
    if own is None or args.variants:
        return list(args.variant_settings)
    return [name for name in args.variant_settings if name in own]


def run_settings(
    variant: dict[str, Any], args: argparse.Namespace, seed: int, data: VideoReIDData
) -> TrainSettings:
    """The settings of one run: the recipe, the variant's changes, ``args.steps`` steps, seed ``seed``."""
    steps_per_epoch = len({t.pid for t in data.train}) // RECIPE["P"]
    epochs = math.ceil(args.steps / steps_per_epoch)  # whole epochs, or part of one for a smoke run
    model_kwargs = {**BACKBONE["model_kwargs"], **variant.get("model_kwargs", {})}
    values = {
        **RECIPE,
        "backbone": BACKBONE["backbone"],
        **{k: v for k, v in variant.items() if k != "model_kwargs"},
    }
    if values.get("bme", True):
        model_kwargs["bme_kwargs"] = {**BME_RECIPE, **model_kwargs.get("bme_kwargs", {})}
        if not model_kwargs["bme_kwargs"]["antisymmetric"]:
            values["direction_lr_factor"] = 1.0  # no δ, no rate of its own
    else:  # BME's rates: a model without BME has none
        values["bme_lr_factor"] = values["direction_lr_factor"] = 1.0
    return TrainSettings(
        **values,
        model_kwargs=model_kwargs,
        epochs=epochs,
        max_steps=min(args.steps, steps_per_epoch),
        eval_every=min(args.trace or epochs, epochs),
        workers=0,
        amp=args.amp,
        device=args.device,
        seed=seed,
        progress=False,
    )


def blind_ceiling(data: VideoReIDData) -> dict[str, float]:
    """Expected mAP and rank-1 of a model that ranks each query's true matches and its partner's clips first,
    in an order that cannot tell them apart (random), as any model blind to time reversal must on the motion
    sets at best (their partner clips are exact reversals: such a model gives them the same embedding)."""
    aps, top1 = [], []
    for query in data.query:
        partner = data.partners[query.pid]
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


def partners_last(
    distances: torch.Tensor, query_pids: torch.Tensor, gallery_pids: torch.Tensor, partners: dict[int, int]
) -> torch.Tensor:
    """``distances`` with each query's partner's gallery clips moved to the end (``+inf``): the ranking of a
    model that knows the direction of motion and otherwise ranks as this one does."""
    out = distances.clone()
    for row, pid in enumerate(query_pids.tolist()):
        out[row, gallery_pids == partners[pid]] = math.inf
    return out


def direction_known_map(model: nn.Module, data: VideoReIDData, settings: TrainSettings) -> float:
    """The mAP ``model`` would reach on a motion set if it also told each identity from its partner: what
    its appearance allows, the bound of what learning the direction can add to it."""
    query, query_pids, query_camids = extract(model, data.query, settings)
    gallery, gallery_pids, gallery_camids = extract(model, data.gallery, settings)
    distances = pairwise_distances(query, gallery, settings.metric)
    distances = partners_last(distances, query_pids, gallery_pids, data.partners)
    return evaluate_ranking(
        distances, query_pids, gallery_pids, query_camids, gallery_camids, junk_ids=data.junk_ids
    ).mAP


def paired_difference(values: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """Mean of ``values[i] - baseline[i]`` (seed ``i`` of both) and its two-sided 95% t-interval.

    With one seed the interval is unknown (NaN).
    """
    differences = [v - b for v, b in zip(values, baseline)]
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan}
    df = len(differences) - 1
    half = (_T975[df - 1] if df <= len(_T975) else 1.96) * statistics.stdev(differences) / math.sqrt(df + 1)
    return {"mean": mean, "low": mean - half, "high": mean + half}


def compare(results: dict[str, Any]) -> dict[str, Any]:
    """Every variant against the Baseline of the same seeds: ``{set: {variant: {metric: difference}}}``."""
    out: dict[str, Any] = {}
    for dataset, rows in results["datasets"].items():
        if "Baseline" not in rows:
            continue
        base = rows["Baseline"]
        out[dataset] = {
            name: {m: paired_difference(row[m], base[m]) for m in ("mAP", "rank1") if m in row}
            for name, row in rows.items()
            if name != "Baseline"
        }
        if "mAP_direction_known" in base:
            for name, row in rows.items():
                if name != "Baseline":
                    out[dataset][name]["direction_captured"] = direction_captured(row["mAP"], base)
    return out


def direction_captured(mAP: Sequence[float], base: dict[str, list[float]]) -> float:
    """The share of what knowing the direction is worth that a variant's mAP gains on a motion set: its mean
    gain over the Baseline, over the Baseline's own gain with each query's partner's clips ranked last (1: the
    whole worth; NaN where that worth is not positive)."""
    worth = statistics.fmean(base["mAP_direction_known"]) - statistics.fmean(base["mAP"])
    return (statistics.fmean(mAP) - statistics.fmean(base["mAP"])) / worth if worth > 0 else math.nan


def _points(value: float) -> str:
    return f"{100 * value:+5.1f}" if not math.isnan(value) else "  n/a"


def _interval(difference: dict[str, float] | None) -> str:
    """`` +1.2 [ -0.3,  +2.7]`` in points, or blanks of its width where there is no difference."""
    if difference is None:
        return " " * 25
    return f" {_points(difference['mean'])} [{_points(difference['low'])}, {_points(difference['high'])}]"


def _seeds(results: dict[str, Any]) -> str:
    first, count = results["settings"]["first_seed"], results["settings"]["seeds"]
    return f"seed {first}" if count == 1 else f"{count} seeds, {first}-{first + count - 1}"


def print_table(results: dict[str, Any]) -> None:
    for dataset, rows in results["datasets"].items():
        differences = results["differences"].get(dataset, {})
        print(f"\n{dataset} set ({_seeds(results)}; %, and the difference from the Baseline of each seed)")
        header = f"  {'variant':<27} {'mAP':>5} {'vs Baseline [95% CI]':>24} {'rank-1':>6}"
        motion = "pair_auc" in next(iter(rows.values()))
        print(
            header
            + (f"   pair AUC (min)   < {LEARNT}   mAP, direction known   direction's worth" if motion else "")
        )
        for name, row in rows.items():
            line = f"  {name:<27} {100 * statistics.fmean(row['mAP']):5.1f}"
            line += _interval(differences.get(name, {}).get("mAP"))
            line += f" {100 * statistics.fmean(row['rank1']):6.1f}"
            if motion:
                line += f"   {statistics.fmean(row['pair_auc']):.3f} ({min(row['pair_auc']):.3f})"
                line += f"   {sum(auc < LEARNT for auc in row['pair_auc']):6d}"
                line += f"   {100 * statistics.fmean(row['mAP_direction_known']):5.1f}"
                captured = differences.get(name, {}).get("direction_captured")
                line += f" {' ' * 17}{captured:4.0%}" if captured is not None else ""
            print(line)
        ceiling = results["ceilings"].get(dataset)
        if ceiling:
            print(
                f"  {'blind to time reversal':<27} {100 * ceiling['mAP']:5.1f} (best){' ' * 20}"
                f"{100 * ceiling['rank1']:6.1f}   0.500"
            )


Curves = dict[int, list[dict[str, float]]]  # {seed: the figures of each evaluation, in step order}


def trace_rows(curves: Curves, baseline: Curves | None) -> list[dict[str, Any]]:
    """A variant's figures at each evaluated step over its seeds (``curves``: ``{seed: [evaluation, ...]}``):
    the mean mAP; with ``baseline`` (the Baseline's curves) the paired difference from it and its 95%
    interval, over the seeds both ran; on the motion sets the pair AUC's mean, min and the runs below
    ``LEARNT``."""
    seeds = sorted(curves)
    rows = []
    for i, step in enumerate(e["step"] for e in curves[seeds[0]]):
        at = [curves[seed][i] for seed in seeds]
        row: dict[str, Any] = {"step": step, "mAP": statistics.fmean(e["mAP"] for e in at)}
        if baseline is not None and (paired := [seed for seed in seeds if seed in baseline]):
            row["vs_baseline"] = paired_difference(
                [curves[seed][i]["mAP"] for seed in paired], [baseline[seed][i]["mAP"] for seed in paired]
            )
        if "pair_auc" in at[0]:
            aucs = [e["pair_auc"] for e in at]
            row["pair_auc"] = {
                "mean": statistics.fmean(aucs),
                "min": min(aucs),
                "below": sum(a < LEARNT for a in aucs),
            }
        rows.append(row)
    return rows


def print_trace(results: dict[str, Any]) -> None:
    """The curves of ``--trace``: each variant's mAP, its difference from the Baseline and its pair AUC by
    training step."""
    for dataset, variants in results["curves"].items():
        for name in (n for n in results["datasets"][dataset] if n in variants):  # in the tables' order
            curves, baseline = variants[name], variants.get("Baseline") if name != "Baseline" else None
            rows = trace_rows(curves, baseline)
            print(
                f"\n{dataset} set, {name}, by step ({_seeds(results)}; %, and the difference from the "
                "Baseline of each seed)"
            )
            header = f"  {'step':>5} {'mAP':>5} {'vs Baseline [95% CI]':>24}"
            print(header + (f"   pair AUC (min)   < {LEARNT}" if "pair_auc" in rows[0] else ""))
            for row in rows:
                line = f"  {row['step']:5d} {100 * row['mAP']:5.1f}"
                line += _interval(row.get("vs_baseline"))
                auc = row.get("pair_auc")
                line += f"   {auc['mean']:.3f} ({auc['min']:.3f})   {auc['below']:6d}" if auc else ""
                print(line)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(results["datasets"])
    widths = [len(results["datasets"][d]) for d in datasets]
    figure, axes = plt.subplots(
        1, len(datasets), figsize=(1.2 + 0.75 * sum(widths), 3.6), gridspec_kw=dict(width_ratios=widths)
    )
    axes = [axes] if len(datasets) == 1 else list(axes)
    for axis, dataset in zip(axes, datasets):
        rows = results["datasets"][dataset]
        names = list(rows)
        means = [100 * statistics.fmean(rows[n]["mAP"]) for n in names]
        axis.bar(range(len(names)), means, color="tab:blue", alpha=0.6)
        for i, name in enumerate(names):
            seeds = [100 * v for v in rows[name]["mAP"]]
            offsets = [0.25 * (k / max(len(seeds) - 1, 1) - 0.5) for k in range(len(seeds))]
            axis.plot([i + o for o in offsets], seeds, "o", color="black", markersize=3)
        ceiling = results["ceilings"].get(dataset)
        if ceiling:
            axis.axhline(
                100 * ceiling["mAP"], color="tab:red", linestyle="--", label="blind to time reversal"
            )
            axis.legend(loc="lower right", fontsize=7)
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        axis.set(title=f"{dataset} set", ylim=(0, 100))
    axes[0].set_ylabel("mAP (%), one dot per seed")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


@functools.lru_cache(maxsize=8)
def data_of(dataset: str, identities: tuple[int, int], seed: int) -> VideoReIDData:
    """The data set of a seed, generated once per process."""
    return DATASETS[dataset](*identities, num_cams=CAMERAS, size=RECIPE["size"], seed=seed)


Run = tuple[str, int, str, dict[str, float], list[dict[str, float]], float]


def _run(task: tuple[str, int, str, argparse.Namespace]) -> Run:
    """One training run (in a worker process when ``--jobs`` > 1): its final mAP, rank-1 (on the motion sets
    also the pair AUC and the mAP with the direction known), and the figures of every evaluation by step."""
    dataset, seed, name, args = task
    if args.jobs > 1:
        torch.set_num_threads(1)  # small tensors: one thread per run, runs side by side
    tic = time.time()
    data = data_of(dataset, args.identities, seed)
    settings = run_settings(args.variant_settings[name], args, seed, data)
    result = fit(settings, data, log=lambda m: None)
    history = result.history
    scores = {m: history[-1][m] for m in METRICS if m in history[-1]}
    if data.partners:
        scores["mAP_direction_known"] = direction_known_map(result.model, data, settings)
    curve = [
        {"step": min(e["epoch"] * settings.max_steps, args.steps), **{m: e[m] for m in METRICS if m in e}}
        for e in history
    ]  # fmt: skip
    return dataset, seed, name, scores, curve, time.time() - tic


def empty_results(args: argparse.Namespace) -> dict[str, Any]:
    """The results of the runs ``args`` asks for, before any: the settings, the machine, a zero for every
    figure of every run, and the motion sets' ceilings."""
    return {
        "settings": dict(
            steps=args.steps,
            seeds=args.seeds,
            first_seed=args.first_seed,
            amp=args.amp,
            identities=args.identities,
            cameras=CAMERAS,
        )
        | BACKBONE
        | RECIPE
        | {"bme_kwargs": BME_RECIPE},
        "env": {
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name()
            if args.device.startswith("cuda")
            else platform.processor() or platform.machine(),
            "cpu_cores": os.cpu_count(),
            "jobs": args.jobs,
        },
        "datasets": {
            d: {
                name: {m: [0.0] * args.seeds for m in METRICS if m not in MOTION_METRICS or d in MOTION_SETS}
                for name in variants_of(d, args)
            }
            for d in args.datasets
        },
        "ceilings": {
            d: blind_ceiling(data_of(d, args.identities, args.first_seed))
            for d in args.datasets
            if d in MOTION_SETS
        },
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    tasks = [
        (d, seed, name, args)
        for seed in range(args.first_seed, args.first_seed + args.seeds)
        for d in args.datasets
        for name in variants_of(d, args)
    ]
    print(
        f"{len(tasks)} runs: {len(args.variant_settings)} variants x {args.seeds} seed(s) x "
        f"{len(args.datasets)} data set(s) ({', '.join(args.datasets)}), {args.steps} steps each, "
        f"{BACKBONE['backbone']} at quarter width on {args.device}{' (bfloat16)' if args.amp else ''}, "
        f"{args.jobs} in parallel",
        flush=True,
    )
    results = empty_results(args)
    started, load_at_start = time.time(), os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    pool = multiprocessing.get_context("spawn").Pool(args.jobs) if args.jobs > 1 else None
    with pool or contextlib.nullcontext():
        finished = pool.imap_unordered(_run, tasks) if pool else map(_run, tasks)
        for done, (dataset, seed, name, scores, curve, seconds) in enumerate(finished, 1):
            for key, value in scores.items():
                results["datasets"][dataset][name][key][seed - args.first_seed] = value
            if args.trace:
                results.setdefault("curves", {}).setdefault(dataset, {}).setdefault(name, {})[seed] = curve
            if args.progress:
                auc = f", pair AUC {scores['pair_auc']:.3f}" if "pair_auc" in scores else ""
                print(
                    f"[{done}/{len(tasks)}] {dataset} seed {seed} {name}: mAP {100 * scores['mAP']:.1f}, "
                    f"rank-1 {100 * scores['rank1']:.1f}{auc} ({seconds:.0f} s)",
                    flush=True,
                )
    results["seconds"] = round(time.time() - started, 1)
    results["differences"] = compare(results)
    if args.trace:
        print_trace(results)
    print_table(results)
    print(
        f"\n{len(tasks)} runs in {results['seconds'] / 60:.1f} min on {results['env']['device']} "
        f"({args.device}, "
        + (
            f"{args.jobs} in parallel, one thread each)"
            if args.jobs > 1
            else f"{torch.get_num_threads()} threads)"
        )
    )
    if load_at_start > 1:
        print(
            f"note: other processes were using the CPU when the runs started (load average "
            f"{load_at_start:.2f}): the minutes above are more than on an idle machine; the figures are not "
            "affected"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results in {args.json}")
    if args.plot:
        plot(results, args.plot)
        print(f"plot in {args.plot}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
