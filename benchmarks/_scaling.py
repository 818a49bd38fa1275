"""Section 3: MAE's time and memory, efficient vs materializing, as the clip grows (T = 4 to 32).

At the last injected stage, one clip, forward+backward; ``plot`` draws it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from _measure import Mode, Progress, measure, runners
from _models import MAEWithMaps, StageShape
from _report import Column, absent, figure_table, keyed, quotient, scaled

from lstrl_layers import MAE
from lstrl_layers.flops import count_macs

NUM_FRAMES = (4, 8, 16, 32)
COLUMNS = (
    Column("T*H*W", "positions", ","),
    Column("GMACs full", scaled("macs_full", 1e-9)),
    Column("efficient (ms)", "efficient_ms", ",.1f"),
    Column("maps (ms)", "maps_ms", ",.1f"),
    Column("ratio", quotient("efficient_ms", "maps_ms")),
    Column("efficient (MiB)", "efficient_peak_mib", ",.0f"),
    Column("maps (MiB)", "maps_peak_mib", ",.0f"),
    Column("ratio", quotient("efficient_peak_mib", "maps_peak_mib")),
)


def steps(shapes: Sequence[StageShape]) -> int:
    """Progress lines: one per clip length."""
    return len(NUM_FRAMES)


def run(
    args: argparse.Namespace, device: torch.device, mode: Mode, shape: StageShape, progress: Progress
) -> dict[str, Any]:
    """MAE at ``shape`` (the last injected stage) for each clip length in ``NUM_FRAMES``."""
    stage, channels, height, width = shape
    rows = []
    for num_frames in NUM_FRAMES:
        mode.new_group()
        torch.manual_seed(0)
        mae = MAE(channels, num_frames, zero_init=False)
        macs = count_macs(mae, torch.randn(num_frames, channels, height, width), convention="full")
        mae.to(device)
        inputs = mode.inputs(torch.randn(num_frames, channels, height, width, device=device))
        inputs.requires_grad_(True)
        row: dict[str, Any] = {
            "num_frames": num_frames,
            "positions": num_frames * height * width,
            "macs_full": macs,
        }
        progress.step(f"scaling: T={num_frames}, MAE efficient and maps")
        cases = {
            key: runners(mode.module(module), inputs, backward=True, mode=mode)
            for key, module in (("efficient", mae), ("maps", MAEWithMaps(mae)))
        }
        for key, result in measure(cases, device, args.repeat).items():
            row.update(result.as_dict(key))
        rows.append(row)
    return {"stage": stage, "channels": channels, "height": height, "width": width, "clips": 1, "rows": rows}


def report(results: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    """Print the section; with ``old`` (an earlier run's results), each figure next to the earlier one."""
    result = results["scaling"]
    print(
        f"\n== Scaling: MAE at {result['stage']}, the last injected stage (C={result['channels']}, "
        f"{result['height']}x{result['width']}), one clip, forward+backward, efficient vs maps "
        "(materializing); the last stage because the first one, at T=32, is ~250 GMACs per call"
        + absent(old, "scaling")
    )
    old_rows = None
    if old is not None and "scaling" in old:
        old_rows = keyed(old["scaling"].get("rows"), lambda row: str(row["num_frames"]))
    rows = [(str(row["num_frames"]), row) for row in result["rows"]]
    print(figure_table("T", COLUMNS, rows, old_rows))


def plot(result: dict[str, Any], path: str) -> None:
    """The section as a PNG at ``path``: time and peak memory against ``T``, efficient vs maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    num_frames = [row["num_frames"] for row in result["rows"]]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, suffix, label in (
        (axes[0], "ms", "time, forward+backward (ms)"),
        (axes[1], "peak_mib", "peak memory (MiB)"),
    ):
        for key, name in (("efficient", "efficient (one SDPA call)"), ("maps", "maps (materializing D^i)")):
            values = [row[f"{key}_{suffix}"] for row in result["rows"]]
            axis.plot(num_frames, [float("nan") if v is None else v for v in values], marker="o", label=name)
        axis.set(yscale="log", xlabel="frames per clip T", ylabel=label)
        axis.set_xscale("log", base=2)
        axis.set_xticks(num_frames, [str(t) for t in num_frames])
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle(
        f"MAE at {result['stage']} (C={result['channels']}, {result['height']}x{result['width']}), one clip"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
