"""Section 2: each block at each injected stage, against its reference path.

MAE's efficient path vs its materializing path (``return_maps=True``), and our BME vs a BME computed as
Eq. 4-5 are written (two ψ passes): parameters, MACs, forward and forward+backward time and peak memory,
achieved GFLOP/s, and their ratios.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from _measure import Mode, Progress, measure, runners, sdpa_backends
from _models import MAEWithMaps, StageShape, TwoPsiBME, param_count
from _report import Column, absent, figure_table, keyed, matmul_text, scaled
from torch import Tensor, nn

from lstrl_layers import BME, MAE
from lstrl_layers.flops import count_macs, flop_counter_mode

RATIO_KEYS = {  # figure: its header in the ratio table
    "macs_paper_per_clip": "MACs paper",
    "macs_full_per_clip": "MACs full",
    "fwd_ms": "fwd time",
    "fwd_bwd_ms": "fwd+bwd time",
    "fwd_peak_mib": "peak fwd",
    "fwd_bwd_peak_mib": "peak fwd+bwd",
}


def _gflops(name: str) -> Column:
    return Column(
        f"GFLOP/s {name.replace('_', '+')} (of mm)",
        f"{name}_gflops",
        ".1f",
        suffix=lambda row: f" ({row[f'{name}_matmul_fraction']:.0%})",
    )


COLUMNS = (
    Column("params", "params", ","),
    Column("MMACs/clip paper", scaled("macs_paper_per_clip", 1e-6), ",.0f"),
    Column("full", scaled("macs_full_per_clip", 1e-6), ",.0f"),
    Column("fwd (ms)", "fwd_ms", ",.1f"),
    Column("fwd+bwd (ms)", "fwd_bwd_ms", ",.1f"),
    Column("peak fwd (MiB)", "fwd_peak_mib", ",.0f"),
    Column("fwd+bwd", "fwd_bwd_peak_mib", ",.0f"),
    _gflops("fwd"),
    _gflops("fwd_bwd"),
)
RATIO_COLUMNS = tuple(
    Column(header, key, ".4f" if key.startswith("macs") else ".2f") for key, header in RATIO_KEYS.items()
)


def steps(shapes: Sequence[StageShape]) -> int:
    """Progress lines: forward and forward+backward of both blocks at each stage."""
    return 4 * len(shapes)


def _fwd_bwd_flops(module: nn.Module, inputs: Tensor) -> int:
    """FLOPs of forward + backward (every matrix product, SDPA on CPU included)."""
    inputs = inputs.detach().requires_grad_(True)
    with flop_counter_mode() as counter:
        module(inputs).sum().backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _count_row(module: nn.Module, block: str, path: str, shape: tuple[int, int, int, int]) -> dict[str, Any]:
    """Parameters and MACs per clip (counted on one clip of ``shape`` = ``(T, C, H, W)``)."""
    one_clip = torch.randn(shape)
    return {
        "block": block,
        "path": path,
        "params": param_count(module),
        "macs_paper_per_clip": count_macs(module, one_clip, convention="paper"),
        "macs_full_per_clip": count_macs(module, one_clip, convention="full"),
        "flops_fwd_bwd_per_clip": _fwd_bwd_flops(module, one_clip),
    }


def _paths(pairs: Mapping[str, Any]) -> list[tuple[tuple[str, str], nn.Module]]:
    """``((block, path), module)`` for every path of every block."""
    return [((block, path), module) for block, pair in pairs.items() for path, module in pair]


def _ratios(ours: dict[str, Any], reference: dict[str, Any]) -> dict[str, float | None]:
    return {
        key: ours[key] / reference[key] if ours[key] is not None and reference[key] else None
        for key in RATIO_KEYS
    }


def run(
    args: argparse.Namespace,
    device: torch.device,
    mode: Mode,
    shapes: Sequence[StageShape],
    peak_gflops: float,
    progress: Progress,
) -> list[dict[str, Any]]:
    """One result per stage: the four paths' rows, the two ratios, and how far two-ψ BME is from ours."""
    results = []
    for stage, channels, height, width in shapes:
        mode.new_group()
        shape = (args.num_frames, channels, height, width)
        torch.manual_seed(0)
        mae = MAE(channels, args.num_frames, zero_init=False)
        bme = BME(channels, args.num_frames, zero_init=False)
        pairs = {  # ours first, then the reference it is compared with
            "MAE": (("efficient", mae), ("maps (materializing)", MAEWithMaps(mae))),
            "BME": (("ours (ψ once)", bme), ("two-ψ (Eq. 4-5 as written)", TwoPsiBME(bme))),
        }
        counted = {
            (block, path): _count_row(module, block, path, shape)
            for block, pair in pairs.items()
            for path, module in pair
        }
        frames = torch.randn(args.batch * args.num_frames, channels, height, width, device=device)
        inputs = mode.inputs(frames)
        inputs.requires_grad_(True)
        mae.to(device)
        bme.to(device)
        measured = {key: mode.module(module) for key, module in _paths(pairs)}
        for block, pair in pairs.items():
            for name, backward in (("fwd", False), ("fwd_bwd", True)):
                progress.step(f"blocks: {stage} {block} {'forward+backward' if backward else 'forward'}")
                cases = {path: runners(measured[block, path], inputs, backward, mode) for path, _ in pair}
                for path, result in measure(cases, device, args.repeat).items():
                    row = counted[block, path]
                    row.update(result.as_dict(name))
                    flops = row["flops_fwd_bwd_per_clip"] if backward else 2 * row["macs_full_per_clip"]
                    achieved = flops * args.batch / (result.time_ms * 1e-3) / 1e9 if result.time_ms else None
                    row[f"{name}_gflops"] = achieved
                    row[f"{name}_matmul_fraction"] = achieved / peak_gflops if achieved else None
        efficient = counted["MAE", "efficient"]
        efficient["sdpa"] = sdpa_backends(runners(measured["MAE", "efficient"], inputs, True, mode)[0])
        mae.cpu()
        bme.cpu()
        del inputs, measured
        rows = list(counted.values())
        with torch.no_grad():  # the reference must compute the same function
            clip = torch.randn(args.num_frames, channels, height, width)
            difference = (bme(clip) - TwoPsiBME(bme)(clip)).abs().max().item()
        results.append(
            {
                "stage": stage,
                "channels": channels,
                "height": height,
                "width": width,
                "num_frames": args.num_frames,
                "clips": args.batch,
                "rows": rows,
                "ratios": {
                    "MAE efficient / maps": _ratios(rows[0], rows[1]),
                    "BME ours / two-psi": _ratios(rows[2], rows[3]),
                },
                "two_psi_max_abs_difference": difference,
            }
        )
    return results


def report(results: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    """Print the section; with ``old`` (an earlier run's results), each figure next to the earlier one."""
    old_stages = keyed(old.get("blocks"), lambda stage: stage["stage"]) if old is not None else None
    for stage in results["blocks"]:
        print(
            f"\n== Blocks at {stage['stage']}: C={stage['channels']}, {stage['height']}x{stage['width']}, "
            f"T={stage['num_frames']}, {stage['clips']} clip(s) per call, zero_init=False"
            + absent(old_stages, stage["stage"])
        )
        before = (old_stages or {}).get(stage["stage"])
        old_rows = old_ratios = None
        if before is not None:
            old_rows = keyed(before.get("rows"), lambda row: f"{row['block']} {row['path']}")
            old_ratios = before["ratios"] if isinstance(before.get("ratios"), dict) else {}
        rows = [(f"{row['block']} {row['path']}", row) for row in stage["rows"]]
        print(figure_table("block / path", COLUMNS, rows, old_rows))
        print(figure_table("ratio", RATIO_COLUMNS, list(stage["ratios"].items()), old_ratios))
        print(
            f"two-ψ reference vs our BME, same weights: max |difference| "
            f"{stage['two_psi_max_abs_difference']:.1e}"
        )
        backends = next((row["sdpa"] for row in stage["rows"] if "sdpa" in row), None)
        if backends is not None:
            print(f"SDPA back end that ran in MAE's efficient path (profiler): {', '.join(backends)}")
    print(
        "GFLOP/s: full MACs x 2 (forward) or counted forward+backward FLOPs, over the median time; in "
        f"brackets as a fraction of {matmul_text(results['env'])}."
    )
    extra = [name for name in old_stages or {} if name not in {stage["stage"] for stage in results["blocks"]}]
    if extra:
        print(f"in the old run only: blocks at {', '.join(extra)}")
