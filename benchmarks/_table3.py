"""Section 1: the paper's Table 3 reproduced.

Baseline, +MAE, +MAE+BME (``VideoReIDNet``): parameters, GMACs per frame in the paper's (thop) convention and
counted completely, latency per clip and peak memory, the three models timed interleaved.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from _measure import Mode, Progress, measure, runners
from _models import NUM_CLASSES, StageShape, TwoPsiBME, param_count, variant
from _report import Column, absent, figure_table, keyed, versus

from lstrl_layers import BME, count_macs

PAPER_SETTING = {"backbone": "resnet50", "stages": [2, 3], "size": [256, 128], "num_frames": 8}
ROWS = (  # name, VideoReIDNet flags, the paper's Param. (M) and FLOPs (G)
    ("Baseline", {"mae": False, "bme": False}, 24.79, 4.09),
    ("+MAE", {"mae": True, "bme": False}, 26.43, 4.42),
    ("+MAE+BME", {"mae": True, "bme": True}, 29.06, 4.96),
)
COLUMNS = (
    Column("params (M)", "params_m"),
    Column("paper", "paper_params_m", compare=False),
    Column(
        "GMACs/frame paper conv.",
        "gmacs_paper",
        suffix=lambda row: "*" if "gmacs_paper_two_psi" in row else "",
    ),
    Column("paper", "paper_gmacs", compare=False),
    Column("GMACs/frame full", "gmacs_full"),
    Column("latency/clip (ms)", "latency_ms", ".0f"),
    Column("peak (MiB)", "peak_mib", ".0f"),
)


def steps(shapes: Sequence[StageShape]) -> int:
    """Progress lines: building each model, then timing the three."""
    return len(ROWS) + 1


def run(
    args: argparse.Namespace,
    device: torch.device,
    mode: Mode,
    shapes: Sequence[StageShape],
    progress: Progress,
) -> dict[str, Any]:
    """``{"table3": rows, "table3_overhead": +MAE+BME over Baseline}``."""
    num_frames, (height, width) = args.num_frames, args.size
    video = torch.randn(1, num_frames, 3, height, width, device=device)
    paper_setting = _is_paper_setting(args)
    # what ψ run twice (Eq. 4-5 as written) would add per frame, from the blocks themselves
    two_psi_extra = 0
    for _, channels, h, w in shapes:
        bme = BME(channels, num_frames, zero_init=False)
        clip = torch.randn(num_frames, channels, h, w)
        two_psi = count_macs(TwoPsiBME(bme), clip, convention="paper")
        two_psi_extra += two_psi - count_macs(bme, clip, convention="paper")
    rows, cases = [], {}
    mode.new_group()
    for name, flags, paper_params, paper_gmacs in ROWS:
        progress.step(f"Table 3: {name}: building, counting MACs")
        model = variant(args, flags).to(device).eval()
        macs_paper = count_macs(model, video, convention="paper")  # counted on the module as built
        row: dict[str, Any] = {
            "name": name,
            "config": {**flags, "zero_init": False, "last_stride": 1, "num_classes": NUM_CLASSES},
            "params": param_count(model),
            "params_m": param_count(model) / 1e6,
            "gmacs_paper": macs_paper / num_frames / 1e9,
            "gmacs_full": count_macs(model, video, convention="full") / num_frames / 1e9,
            "paper_params_m": paper_params if paper_setting else None,
            "paper_gmacs": paper_gmacs if paper_setting else None,
        }
        if flags["bme"]:
            row["gmacs_paper_two_psi"] = (macs_paper + two_psi_extra) / num_frames / 1e9
        rows.append(row)
        cases[name] = runners(mode.module(model), video, backward=False, mode=mode)
    progress.step("Table 3: timing the three models, interleaved")
    measured = measure(cases, device, args.repeat)
    for row in rows:
        result = measured[row["name"]]
        row.update(latency_ms=result.time_ms, latency_runs_ms=result.runs_ms, peak_mib=result.peak_mib)
    base, full = rows[0], rows[-1]
    overhead: dict[str, Any] = {
        "full_macs_overhead": full["gmacs_full"] / base["gmacs_full"] - 1,
        "latency_overhead": None,
        "ratio": None,
    }
    if base["latency_ms"] and full["latency_ms"]:
        overhead["latency_overhead"] = full["latency_ms"] / base["latency_ms"] - 1
        overhead["ratio"] = overhead["latency_overhead"] / overhead["full_macs_overhead"]
    return {"table3": rows, "table3_overhead": overhead}


def _is_paper_setting(args: argparse.Namespace) -> bool:
    return all(getattr(args, key) == value for key, value in PAPER_SETTING.items())


def report(results: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    """Print the section; with ``old`` (an earlier run's results), each figure next to the earlier one."""
    settings = results["settings"]
    height, width = settings["size"]
    print(
        f"\n== Table 3: {settings['backbone']}, stages {tuple(settings['stages'])}, {height}x{width}, "
        f"T={settings['num_frames']}, last stride 1, {NUM_CLASSES} classes; blocks with zero_init=False (the "
        "paper's blocks exactly); eval mode, one clip per call" + absent(old, "table3")
    )
    old_rows = keyed(old["table3"], lambda row: row["name"]) if old is not None and "table3" in old else None
    rows = [(row["name"], row) for row in results["table3"]]
    print(figure_table("model", COLUMNS, rows, old_rows))
    for row in results["table3"]:
        print(f"  {row['name']}: {row['params']:,} parameters")
    print(
        "GMACs/frame paper conv.: the paper's (thop) convention, layers only: convolutions, linear layers, "
        "norms, pooling; MAE's attention matrix products are not counted. full: every matrix product, "
        "attention included (FlopCounterMode, CPU SDPA counted; lstrl_layers.flops.count_macs)."
    )
    two_psi = [row["gmacs_paper_two_psi"] for row in results["table3"] if "gmacs_paper_two_psi" in row]
    if two_psi:
        print(
            "* Below the paper's figure because our BME applies ψ once per frame and shifts the result in "
            "time; with ψ run twice (on F_t+1 and on F_t-1, as Eq. 4-5 are written) the count is "
            f"{two_psi[-1]:.2f}."
        )
    overhead = results["table3_overhead"]
    if overhead["ratio"] is not None:
        figures = (
            f"{label} {versus(overhead[key], spec, old, 'table3_overhead', key)}"
            for label, key, spec in (
                ("latency", "latency_overhead", "+.1%"),
                ("full MACs", "full_macs_overhead", "+.1%"),
                ("ratio", "ratio", ".2f"),
            )
        )
        print(f"+MAE+BME over Baseline: {', '.join(figures)}")
