"""Section 4: what training and inference cost at a real batch, for each Table 3 variant.

Baseline, +MAE, +BME, +MAE+BME (``VideoReIDNet``): inference (eval mode, no gradients) at
``--throughput-batch`` clips per call, and one full training step on a ``P x K`` batch as ``lstrl train`` runs
it (forward, the cross-entropy and triplet losses, backward, the Adam step with the recipe's learning rates;
under float16 a gradient scaler, as float16 training needs). Each with its time, clips per second, peak
memory, achieved GFLOP/s and that rate's fraction of the dense matmul rate measured in the same precision.
The variants are timed interleaved.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from _measure import Case, Mode, Progress, measure, runners
from _models import NUM_CLASSES, StageShape, param_count, variant
from _report import Column, absent, figure_table, keyed, matmul_text, versus
from torch import nn

from lstrl_layers import count_macs
from lstrl_layers.reid.engine import TrainSettings, build_loss, build_optimizer

VARIANTS = (  # name, VideoReIDNet flags
    ("Baseline", {"mae": False, "bme": False}),
    ("+MAE", {"mae": True, "bme": False}),
    ("+BME", {"mae": False, "bme": True}),
    ("+MAE+BME", {"mae": True, "bme": True}),
)


def _rate(prefix: str) -> Column:
    return Column(
        "GFLOP/s (of mm)",
        f"{prefix}_gflops",
        ",.0f",
        suffix=lambda row: f" ({row[f'{prefix}_matmul_fraction']:.0%})",
    )


COLUMNS = (
    Column("infer (ms)", "infer_ms", ",.1f"),
    Column("clips/s", "infer_clips_per_s", ",.1f"),
    Column("peak (MiB)", "infer_peak_mib", ",.0f"),
    _rate("infer"),
    Column("train step (ms)", "train_ms", ",.1f"),
    Column("clips/s", "train_clips_per_s", ",.1f"),
    Column("peak (MiB)", "train_peak_mib", ",.0f"),
    _rate("train"),
)


def steps(shapes: Sequence[StageShape]) -> int:
    """Progress lines: building each variant, then timing inference and the training step."""
    return len(VARIANTS) + 2


def _train_case(model: nn.Module, net: nn.Module, clips: torch.Tensor, mode: Mode, P: int, K: int) -> Case:
    """One training step of ``net`` (``model``, maybe compiled) on ``clips`` of ``P`` identities x ``K``."""
    recipe = TrainSettings(P=P, K=K)
    criterion, (optimizer, _) = build_loss(recipe), build_optimizer(recipe, model)
    pids = torch.arange(P, device=clips.device).repeat_interleave(K)
    scaler = torch.amp.GradScaler(clips.device.type, enabled=mode.dtype == "float16")

    def step() -> None:
        with mode.autocast(clips.device):
            logits, features = net(clips)
        loss, _ = criterion(logits.float(), features.float(), pids)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step, lambda: None


def run(
    args: argparse.Namespace,
    device: torch.device,
    mode: Mode,
    peak_gflops: float,
    progress: Progress,
) -> dict[str, Any]:
    """``{"throughput": rows, "throughput_overhead": each variant over the Baseline}``."""
    num_frames, (height, width), P, K = args.num_frames, args.size, args.P, args.K
    infer_clips, train_clips = args.throughput_batch, P * K
    rows, models = [], {}
    mode.new_group()
    for name, flags in VARIANTS:
        progress.step(f"throughput: {name}: building, counting MACs")
        model = variant(args, flags).eval()
        macs = count_macs(model, torch.randn(1, num_frames, 3, height, width), convention="full")
        rows.append({"name": name, "config": flags, "params": param_count(model), "macs_full_per_clip": macs})
        model.to(device)
        models[name] = (model, mode.module(model))
    infer = torch.randn(infer_clips, num_frames, 3, height, width, device=device)
    progress.step(f"throughput: inference, {infer_clips} clips per call, the variants interleaved")
    measured = measure(
        {name: runners(net, infer, backward=False, mode=mode) for name, (_, net) in models.items()},
        device,
        args.repeat,
    )
    _add(rows, measured, "infer", infer_clips, 2, peak_gflops)  # forward: 2 FLOPs per MAC
    del infer
    train = torch.randn(train_clips, num_frames, 3, height, width, device=device)
    progress.step(f"throughput: training step, P x K = {P} x {K} clips, the variants interleaved")
    mode.new_group()  # the training graphs in a fresh cache
    for model, _ in models.values():
        model.train()
    cases = {name: _train_case(model, net, train, mode, P, K) for name, (model, net) in models.items()}
    _add(rows, measure(cases, device, args.repeat), "train", train_clips, 6, peak_gflops)  # + backward: 2x
    base = rows[0]
    overhead = {
        row["name"]: {
            "full_macs_overhead": row["macs_full_per_clip"] / base["macs_full_per_clip"] - 1,
            "infer_time_overhead": _over(row["infer_ms"], base["infer_ms"]),
            "train_time_overhead": _over(row["train_ms"], base["train_ms"]),
        }
        for row in rows[1:]
    }
    return {"throughput": rows, "throughput_overhead": overhead}


def _add(
    rows: list[dict[str, Any]],
    measured: Mapping[str, Any],
    prefix: str,
    clips: int,
    flops_per_mac: int,
    peak_gflops: float,
) -> None:
    """Each row's time, clips/s, peak memory, GFLOP/s and matmul fraction of ``prefix`` (infer / train)."""
    for row in rows:
        result = measured[row["name"]]
        seconds = result.time_ms * 1e-3 if result.time_ms else None
        gflops = flops_per_mac * row["macs_full_per_clip"] * clips / seconds / 1e9 if seconds else None
        row.update(result.as_dict(prefix))
        row[f"{prefix}_clips"] = clips
        row[f"{prefix}_clips_per_s"] = clips / seconds if seconds else None
        row[f"{prefix}_gflops"] = gflops
        row[f"{prefix}_matmul_fraction"] = gflops / peak_gflops if gflops else None


def _over(value: float | None, base: float | None) -> float | None:
    return value / base - 1 if value is not None and base else None


def report(results: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    """Print the section; with ``old`` (an earlier run's results), each figure next to the earlier one."""
    settings, rows = results["settings"], results["throughput"]
    height, width = settings["size"]
    print(
        f"\n== Throughput: {settings['backbone']}, stages {tuple(settings['stages'])}, {height}x{width}, "
        f"T={settings['num_frames']}, {NUM_CLASSES} classes; inference: eval mode, {rows[0]['infer_clips']} "
        f"clips per call; train step: P x K = {rows[0]['train_clips']} clips, forward, cross-entropy + "
        "triplet, backward, Adam" + absent(old, "throughput")
    )
    old_rows = keyed(old.get("throughput"), lambda row: row["name"]) if old is not None else None
    print(figure_table("model", COLUMNS, [(row["name"], row) for row in rows], old_rows))
    for name, over in results["throughput_overhead"].items():
        figures = (
            f"{label} {versus(over[key], '+.1%', old, 'throughput_overhead', name, key)}"
            for label, key in (
                ("inference time", "infer_time_overhead"),
                ("train step time", "train_time_overhead"),
                ("full MACs", "full_macs_overhead"),
            )
        )
        print(f"{name} over Baseline: {', '.join(figures)}")
    print(
        "GFLOP/s: full MACs per clip x clips x 2 (inference) or x 6 (training: the backward pass counted as "
        "twice the forward), over the median time; in brackets as a fraction of "
        f"{matmul_text(results['env'])}. Peak: the most memory held during one call above what was held "
        "before it (for the step: above the parameters, gradients and Adam states kept between steps)."
    )
