"""Parameters, MACs, latency and peak memory of the LSTRL blocks and of the paper's model (Table 3).

Run ``python benchmarks/flops.py`` (no arguments: the paper's setting, 1 min 35 s on an idle 2-core CPU);
``--help`` lists the options. Three sections:

1. Table 3 reproduced: Baseline, +MAE, +MAE+BME (``VideoReIDNet``, 625 classes), parameters, GMACs per frame
   in the paper's (thop) convention and counted completely, latency per clip and peak memory.
2. Per block, at each injected stage: MAE's efficient path vs its materializing path (``return_maps=True``),
   and our BME vs a BME computed as Eq. 4-5 are written (two ψ passes), side by side with their ratio.
3. Scaling: MAE, efficient vs materializing, as the clip grows from 4 to 32 frames, at the last injected
   stage (``--plot`` draws it).

Stdout gets the report, stderr a progress line; ``--json PATH`` writes all of it machine-readable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Union

import torch
from _measure import Progress, environment, matmul_gflops, measure, table
from einops import rearrange, reduce
from torch import Tensor, nn

from lstrl_layers import BME, MAE, LSTRLBlock, VideoReIDNet
from lstrl_layers.flops import count_macs, flop_counter_mode

NUM_CLASSES = 625  # MARS training identities, the classifier of the paper's Table 3
PAPER_SETTING = {"model": "resnet50", "stages": [2, 3], "size": [256, 128], "frames": 8}
TABLE3_ROWS = (  # name, VideoReIDNet flags, the paper's Param. (M) and FLOPs (G)
    ("Baseline", {"mae": False, "bme": False}, 24.79, 4.09),
    ("+MAE", {"mae": True, "bme": False}, 26.43, 4.42),
    ("+MAE+BME", {"mae": True, "bme": True}, 29.06, 4.96),
)
SCALING_FRAMES = (4, 8, 16, 32)
TARGETS = {  # the figures to reach (<=)
    "mae_fwd_bwd_time_ratio": 0.67,
    "mae_fwd_bwd_memory_ratio": 0.5,
    "bme_macs_ratio": 0.75,
    "overhead_ratio": 1.1,
}
Stage = Union[int, str]


class _MAEWithMaps(nn.Module):
    """MAE through its materializing path (``return_maps=True``, every D^i formed); returns the output."""

    def __init__(self, mae: MAE) -> None:
        super().__init__()
        self.mae = mae

    def forward(self, frames: Tensor) -> Tensor:
        out, _ = self.mae(frames, return_maps=True)
        return out


class _TwoPsiBME(nn.Module):
    r"""Reference: BME as Eq. 4-6 are written, with ψ applied to :math:`F_{t+1}` and, separately, to
    :math:`F_{t-1}`, and :math:`\phi(F_t^g)` computed in each equation.

    Shares the parameters of ``bme`` (paper configuration: both directions, global-to-local, zero clip
    edges), so its output equals BME's; only the cost differs. Frames at a clip edge get ψ of a zero frame,
    masked to zero (no neighbour, no motion), so ψ runs on ``2 T`` frames per clip, as the paper counts.

    Shape:
        - Input: ``(B*T, C, H, W)``, ``T = bme.num_frames``.
        - Output: same shape.
    """

    def __init__(self, bme: BME) -> None:
        if bme.directions != ("forward", "backward") or bme.mode != "global" or bme.edge != "zero":
            raise ValueError(
                "_TwoPsiBME reproduces the paper's BME (directions=('forward', 'backward'), mode='global', "
                f"edge='zero'), got {bme.directions!r}, {bme.mode!r}, {bme.edge!r}"
            )
        super().__init__()
        self.bme = bme

    def forward(self, frames: Tensor) -> Tensor:
        bme, num_frames = self.bme, self.bme.num_frames
        clips = rearrange(frames, "(b t) c h w -> b t c h w", t=num_frames)
        pooled = reduce(frames, "n c h w -> n c 1 1", "mean")  # F_t^g
        motions = []
        for offset in (1, -1):  # Eq. 4: F_{t+1} (forward), Eq. 5: F_{t-1} (backward)
            empty = torch.zeros_like(clips[:, :1])
            neighbours = torch.cat([clips[:, 1:], empty] if offset == 1 else [empty, clips[:, :-1]], dim=1)
            psi = bme.psi(rearrange(neighbours, "b t c h w -> (b t) c h w"))  # a full ψ pass per direction
            has_neighbour = torch.ones(num_frames, 1, 1, 1, device=frames.device, dtype=frames.dtype)
            has_neighbour[-1 if offset == 1 else 0] = 0
            psi = rearrange(psi, "(b t) c h w -> b t c h w", t=num_frames) * has_neighbour
            phi = rearrange(bme.phi(pooled), "(b t) c h w -> b t c h w", t=num_frames)  # φ(F_t^g)
            motions.append(phi * psi)
        stacked = rearrange(torch.cat(motions, dim=2), "b t c h w -> (b t) c h w")
        motion = bme.act(bme.upsilon(stacked))  # υ([Mf, Mb]) with ReLU, Eq. 6
        if bme.gamma is not None:
            motion = motion * rearrange(bme.gamma, "c -> c 1 1")
        return frames + motion


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _runners(
    module: nn.Module, inputs: Tensor, backward: bool
) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(run, prepare)``: one forward (no grad) or forward+backward of ``module(inputs)``; ``prepare`` drops
    the gradients of the previous call so every call allocates the same."""

    def prepare() -> None:
        module.zero_grad(set_to_none=True)
        inputs.grad = None

    def forward() -> None:
        with torch.no_grad():
            module(inputs)

    def forward_backward() -> None:
        module(inputs).sum().backward()

    return (forward_backward if backward else forward), prepare


def _fwd_bwd_flops(module: nn.Module, inputs: Tensor) -> int:
    """FLOPs of forward + backward (every matrix product, SDPA on CPU included)."""
    inputs = inputs.detach().requires_grad_(True)
    with flop_counter_mode() as counter:
        module(inputs).sum().backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _stage_shapes(args: argparse.Namespace) -> list[tuple[str, int, int, int]]:
    """``(stage name, C, H, W)`` at the input of every injected block, from one frame through the model."""
    height, width = args.size
    model = VideoReIDNet(args.model, NUM_CLASSES, stages=args.stages, num_frames=1, last_stride=1).eval()
    shapes: list[tuple[str, int, int, int]] = []
    for name, module in model.named_modules():
        if isinstance(module, LSTRLBlock):
            module.register_forward_pre_hook(
                lambda _m, inputs, name=name: shapes.append((name.rsplit(".", 1)[-1], *inputs[0].shape[-3:]))
            )
    with torch.no_grad():
        model(torch.zeros(1, 1, 3, height, width))
    return shapes


# ---------------------------------------------------------------------------------------------- Table 3


def run_table3(
    args: argparse.Namespace,
    device: torch.device,
    shapes: Sequence[tuple[str, int, int, int]],
    progress: Progress,
) -> dict[str, Any]:
    frames, (height, width) = args.frames, args.size
    video = torch.randn(1, frames, 3, height, width, device=device)
    # what ψ run twice (Eq. 4-5 as written) would add per frame, from the blocks themselves
    two_psi_extra = 0
    for _, channels, h, w in shapes:
        bme = BME(channels, frames, zero_init=False)
        clip = torch.randn(frames, channels, h, w)
        two_psi_extra += count_macs(_TwoPsiBME(bme), clip, convention="paper") - count_macs(
            bme, clip, convention="paper"
        )
    rows, cases = [], {}
    for name, flags, paper_params, paper_gmacs in TABLE3_ROWS:
        progress.step(f"Table 3: {name}: building, counting MACs")
        torch.manual_seed(0)
        model = VideoReIDNet(
            args.model,
            NUM_CLASSES,
            stages=args.stages,
            num_frames=frames,
            last_stride=1,
            zero_init=False,
            **flags,
        )
        model = model.to(device).eval()
        macs_paper = count_macs(model, video, convention="paper")
        row: dict[str, Any] = {
            "name": name,
            "config": {**flags, "zero_init": False, "last_stride": 1, "num_classes": NUM_CLASSES},
            "params": _params(model),
            "params_m": _params(model) / 1e6,
            "gmacs_paper": macs_paper / frames / 1e9,
            "gmacs_full": count_macs(model, video, convention="full") / frames / 1e9,
            "paper_params_m": paper_params if _paper_setting(args) else None,
            "paper_gmacs": paper_gmacs if _paper_setting(args) else None,
        }
        if flags["bme"]:
            row["gmacs_paper_two_psi"] = (macs_paper + two_psi_extra) / frames / 1e9
        rows.append(row)
        cases[name] = _runners(model, video, backward=False)
    progress.step("Table 3: timing the three models, interleaved")
    measured = measure(cases, device, args.repeat)
    for row in rows:
        result = measured[row["name"]]
        row.update(latency_ms=result.time_ms, latency_runs_ms=result.runs_ms, peak_mib=result.peak_mib)
    del cases, measured
    base, full = rows[0], rows[-1]
    overhead: dict[str, Any] = {
        "full_macs_overhead": full["gmacs_full"] / base["gmacs_full"] - 1,
        "latency_overhead": None,
        "ratio": None,
        "target": TARGETS["overhead_ratio"],
    }
    if base["latency_ms"] and full["latency_ms"]:
        overhead["latency_overhead"] = full["latency_ms"] / base["latency_ms"] - 1
        overhead["ratio"] = overhead["latency_overhead"] / overhead["full_macs_overhead"]
    return {"rows": rows, "overhead": overhead}


def _paper_setting(args: argparse.Namespace) -> bool:
    return {
        "model": args.model,
        "stages": list(args.stages),
        "size": list(args.size),
        "frames": args.frames,
    } == PAPER_SETTING


def print_table3(args: argparse.Namespace, result: dict[str, Any]) -> None:
    height, width = args.size
    print(
        f"\n== Table 3: {args.model}, stages {tuple(args.stages)}, {height}x{width}, T={args.frames}, "
        f"last stride 1, {NUM_CLASSES} classes; blocks with zero_init=False (the paper's blocks exactly); "
        "eval mode, one clip per call"
    )
    rows = []
    for row in result["rows"]:
        star = "*" if "gmacs_paper_two_psi" in row else ""
        rows.append(
            [
                row["name"],
                f"{row['params_m']:.2f}",
                _fmt(row["paper_params_m"], ".2f"),
                f"{row['gmacs_paper']:.2f}{star}",
                _fmt(row["paper_gmacs"], ".2f"),
                f"{row['gmacs_full']:.2f}",
                _fmt(row["latency_ms"], ".0f"),
                _fmt(row["peak_mib"], ".0f"),
            ]
        )
    print(
        table(
            [
                "model",
                "params (M)",
                "paper",
                "GMACs/frame paper conv.",
                "paper",
                "GMACs/frame full",
                "latency/clip (ms)",
                "peak (MiB)",
            ],
            rows,
        )
    )
    for row in result["rows"]:
        print(f"  {row['name']}: {row['params']:,} parameters")
    two_psi = [row["gmacs_paper_two_psi"] for row in result["rows"] if "gmacs_paper_two_psi" in row]
    print(
        "GMACs/frame paper conv.: the paper's (thop) convention, layers only: convolutions, linear layers, "
        "norms, pooling; MAE's attention matrix products are not counted. full: every matrix product, "
        "attention included (FlopCounterMode, CPU SDPA counted; lstrl_layers.flops.count_macs)."
    )
    if two_psi:
        print(
            "* Below the paper's figure because our BME applies ψ once per frame and shifts the result in "
            "time; with ψ run twice (on F_t+1 and on F_t-1, as Eq. 4-5 are written) the count is "
            f"{two_psi[-1]:.2f}."
        )
    overhead = result["overhead"]
    if overhead["ratio"] is not None:
        print(
            f"+MAE+BME over Baseline: latency {overhead['latency_overhead']:+.1%}, full MACs "
            f"{overhead['full_macs_overhead']:+.1%}, ratio {overhead['ratio']:.2f} "
            f"(target <= {overhead['target']})"
        )


# ----------------------------------------------------------------------------------------------- blocks


def _count_row(module: nn.Module, block: str, path: str, shape: tuple[int, int, int, int]) -> dict[str, Any]:
    """Parameters and MACs per clip (counted on one clip of ``shape`` = ``(T, C, H, W)``)."""
    one_clip = torch.randn(shape)
    return {
        "block": block,
        "path": path,
        "params": _params(module),
        "macs_paper_per_clip": count_macs(module, one_clip, convention="paper"),
        "macs_full_per_clip": count_macs(module, one_clip, convention="full"),
        "flops_fwd_bwd_per_clip": _fwd_bwd_flops(module, one_clip),
    }


_RATIO_KEYS = (
    "macs_paper_per_clip",
    "macs_full_per_clip",
    "fwd_ms",
    "fwd_bwd_ms",
    "fwd_peak_mib",
    "fwd_bwd_peak_mib",
)


def _ratios(ours: dict[str, Any], reference: dict[str, Any]) -> dict[str, float | None]:
    return {
        key: ours[key] / reference[key] if ours[key] is not None and reference[key] else None
        for key in _RATIO_KEYS
    }


def run_blocks(
    args: argparse.Namespace,
    device: torch.device,
    shapes: Sequence[tuple[str, int, int, int]],
    peak_gflops: float,
    progress: Progress,
) -> list[dict[str, Any]]:
    results = []
    for stage, channels, height, width in shapes:
        shape = (args.frames, channels, height, width)
        torch.manual_seed(0)
        mae = MAE(channels, args.frames, zero_init=False)
        bme = BME(channels, args.frames, zero_init=False)
        pairs = {  # ours first, then the reference it is compared with
            "MAE": (("efficient", mae), ("maps (materializing)", _MAEWithMaps(mae))),
            "BME": (("ours (ψ once)", bme), ("two-ψ (Eq. 4-5 as written)", _TwoPsiBME(bme))),
        }
        counted = {
            (block, path): _count_row(module, block, path, shape)
            for block, pair in pairs.items()
            for path, module in pair
        }
        inputs = torch.randn(
            args.batch * args.frames, channels, height, width, device=device, requires_grad=True
        )
        mae.to(device)
        bme.to(device)
        for block, pair in pairs.items():
            for name, backward in (("fwd", False), ("fwd_bwd", True)):
                progress.step(f"blocks: {stage} {block} {'forward+backward' if backward else 'forward'}")
                cases = {path: _runners(module, inputs, backward) for path, module in pair}
                for path, result in measure(cases, device, args.repeat).items():
                    row = counted[block, path]
                    row.update(result.as_dict(name))
                    flops = row["flops_fwd_bwd_per_clip"] if backward else 2 * row["macs_full_per_clip"]
                    achieved = flops * args.batch / (result.time_ms * 1e-3) / 1e9 if result.time_ms else None
                    row[f"{name}_gflops"] = achieved
                    row[f"{name}_matmul_fraction"] = achieved / peak_gflops if achieved else None
        mae.cpu()
        bme.cpu()
        del inputs
        rows = list(counted.values())
        with torch.no_grad():  # the reference must compute the same function
            clip = torch.randn(args.frames, channels, height, width)
            difference = (bme(clip) - _TwoPsiBME(bme)(clip)).abs().max().item()
        results.append(
            {
                "stage": stage,
                "channels": channels,
                "height": height,
                "width": width,
                "frames": args.frames,
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


def print_blocks(results: list[dict[str, Any]], peak_gflops: float, device: torch.device) -> None:
    for stage in results:
        print(
            f"\n== Blocks at {stage['stage']}: C={stage['channels']}, {stage['height']}x{stage['width']}, "
            f"T={stage['frames']}, {stage['clips']} clip(s) per call, zero_init=False"
        )
        rows = []
        for row in stage["rows"]:
            rows.append(
                [
                    f"{row['block']} {row['path']}",
                    row["params"],
                    f"{row['macs_paper_per_clip'] / 1e6:,.0f}",
                    f"{row['macs_full_per_clip'] / 1e6:,.0f}",
                    _fmt(row["fwd_ms"], ",.1f"),
                    _fmt(row["fwd_bwd_ms"], ",.1f"),
                    _fmt(row["fwd_peak_mib"], ",.0f"),
                    _fmt(row["fwd_bwd_peak_mib"], ",.0f"),
                    _gflops(row, "fwd"),
                    _gflops(row, "fwd_bwd"),
                ]
            )
        for name, ratio in stage["ratios"].items():
            rows.append(
                [
                    name,
                    "",
                    *(_fmt(ratio[key], ".4f" if key.startswith("macs") else ".2f") for key in _RATIO_KEYS),
                    "",
                    "",
                ]
            )
        print(
            table(
                [
                    "block / path",
                    "params",
                    "MMACs/clip paper",
                    "full",
                    "fwd (ms)",
                    "fwd+bwd (ms)",
                    "peak fwd (MiB)",
                    "fwd+bwd",
                    "GFLOP/s fwd (of mm)",
                    "fwd+bwd",
                ],
                rows,
            )
        )
        print(
            f"  two-ψ reference vs our BME, same weights: max |difference| "
            f"{stage['two_psi_max_abs_difference']:.1e}"
        )
    print(
        "GFLOP/s: full MACs x 2 (forward) or counted forward+backward FLOPs, over the median time; in "
        f"brackets as a fraction of this {device.type.upper()}'s dense fp32 2048x2048 matmul "
        f"({peak_gflops:.0f} GFLOP/s)."
    )


def _gflops(row: dict[str, Any], name: str) -> str:
    if row[f"{name}_gflops"] is None:
        return "-"
    return f"{row[f'{name}_gflops']:.1f} ({row[f'{name}_matmul_fraction']:.0%})"


# ---------------------------------------------------------------------------------------------- scaling


def run_scaling(
    args: argparse.Namespace, device: torch.device, shape: tuple[str, int, int, int], progress: Progress
) -> dict[str, Any]:
    stage, channels, height, width = shape
    rows = []
    for frames in SCALING_FRAMES:
        torch.manual_seed(0)
        mae = MAE(channels, frames, zero_init=False)
        macs = count_macs(mae, torch.randn(frames, channels, height, width), convention="full")
        mae.to(device)
        inputs = torch.randn(frames, channels, height, width, device=device, requires_grad=True)
        row: dict[str, Any] = {"frames": frames, "positions": frames * height * width, "macs_full": macs}
        progress.step(f"scaling: T={frames}, MAE efficient and maps")
        cases = {
            key: _runners(module, inputs, backward=True)
            for key, module in (("efficient", mae), ("maps", _MAEWithMaps(mae)))
        }
        for key, result in measure(cases, device, args.repeat).items():
            row.update(result.as_dict(key))
        rows.append(row)
    return {"stage": stage, "channels": channels, "height": height, "width": width, "clips": 1, "rows": rows}


def print_scaling(result: dict[str, Any]) -> None:
    print(
        f"\n== Scaling: MAE at {result['stage']}, the last injected stage (C={result['channels']}, "
        f"{result['height']}x{result['width']}), one clip, forward+backward, efficient vs maps "
        "(materializing); the last stage because the first one, at T=32, is ~250 GMACs per call"
    )
    rows = []
    for row in result["rows"]:
        rows.append(
            [
                row["frames"],
                row["positions"],
                f"{row['macs_full'] / 1e9:.2f}",
                _fmt(row["efficient_ms"], ",.1f"),
                _fmt(row["maps_ms"], ",.1f"),
                _ratio(row["efficient_ms"], row["maps_ms"]),
                _fmt(row["efficient_peak_mib"], ",.0f"),
                _fmt(row["maps_peak_mib"], ",.0f"),
                _ratio(row["efficient_peak_mib"], row["maps_peak_mib"]),
            ]
        )
    print(
        table(
            [
                "T",
                "T*H*W",
                "GMACs full",
                "efficient (ms)",
                "maps (ms)",
                "ratio",
                "efficient (MiB)",
                "maps (MiB)",
                "ratio",
            ],
            rows,
        )
    )


def plot_scaling(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    frames = [row["frames"] for row in result["rows"]]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, suffix, label in (
        (axes[0], "ms", "time, forward+backward (ms)"),
        (axes[1], "peak_mib", "peak memory (MiB)"),
    ):
        for key, name in (("efficient", "efficient (one SDPA call)"), ("maps", "maps (materializing D^i)")):
            values = [row[f"{key}_{suffix}"] for row in result["rows"]]
            axis.plot(frames, [float("nan") if v is None else v for v in values], marker="o", label=name)
        axis.set(yscale="log", xlabel="frames per clip T", ylabel=label)
        axis.set_xscale("log", base=2)
        axis.set_xticks(frames, [str(t) for t in frames])
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle(
        f"MAE at {result['stage']} (C={result['channels']}, {result['height']}x{result['width']}), one clip"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)


# ----------------------------------------------------------------------------------------------- checks


WHY_NOT_MET = {  # what limits each figure, printed when it is not reached
    "mae_fwd_bwd_time_ratio": (
        "MAE time: both paths run the same two 1x1 convolutions (ω1, ω2: about a third of the efficient "
        "path's forward+backward on a CPU) and the same attention products, and the fused kernel's backward "
        "recomputes X_i X1ᵀ (7 attention products per step against the materializing path's 6). What the "
        "efficient path saves is the softmax passes over the (T*H*W)^2 maps and their storage, so memory "
        "drops much more than time; forward alone the time ratio is {fwd:.2f}. On a busy machine the time "
        "ratio is noise (see the load average above)."
    ),
    "mae_fwd_bwd_memory_ratio": (
        "MAE memory: at small T*H*W the attention maps are small next to the activations both paths keep "
        "for the backward pass."
    ),
    "bme_macs_ratio": "BME MACs: one ψ pass is saved out of two; ψ and υ outweigh φ only when H*W is large.",
    "overhead_ratio": (
        "Whole-model overhead: the blocks' element-wise work (MAE's extension E and concatenation, BME's "
        "products and time shifts) moves memory without multiply-adds; their GFLOP/s in the blocks section, "
        "against the matmul throughput, shows how far below the convolutions they run. On a busy machine "
        "this ratio is noise (see the load average above)."
    ),
}


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's figures to reach, from whichever sections ran, with a reason for each one not reached."""
    found = []

    def add(name: str, value: float | None, key: str, **why: float | None) -> None:
        met = value is not None and value <= TARGETS[key]
        check = {"name": name, "value": value, "target": TARGETS[key], "met": met}
        if not met:
            check["why"] = WHY_NOT_MET[key].format(
                **{k: v if v is not None else float("nan") for k, v in why.items()}
            )
        found.append(check)

    for stage in results.get("blocks", [])[:1]:
        mae = stage["ratios"]["MAE efficient / maps"]
        where = (
            f"{stage['stage']}, C={stage['channels']}, {stage['height']}x{stage['width']}, "
            f"T={stage['frames']}, {stage['clips']} clip(s)"
        )
        add(
            f"MAE efficient / maps, forward+backward time ({where})",
            mae["fwd_bwd_ms"],
            "mae_fwd_bwd_time_ratio",
            fwd=mae["fwd_ms"],
        )
        add(
            f"MAE efficient / maps, forward+backward peak memory ({where})",
            mae["fwd_bwd_peak_mib"],
            "mae_fwd_bwd_memory_ratio",
        )
    for stage in results.get("blocks", []):
        ratio = stage["ratios"]["BME ours / two-psi"]["macs_full_per_clip"]
        add(f"BME MACs, ours / two-ψ ({stage['stage']})", ratio, "bme_macs_ratio")
    if "table3_overhead" in results:
        add(
            "+MAE+BME over Baseline: latency overhead / full-MACs overhead",
            results["table3_overhead"]["ratio"],
            "overhead_ratio",
        )
    return found


def print_checks(found: list[dict[str, Any]]) -> None:
    if not found:
        return
    print("\n== Figures to reach (the issue's targets)")
    rows = [
        [c["name"], _fmt(c["value"], ".4f"), f"<= {c['target']}", "met" if c["met"] else "NOT met"]
        for c in found
    ]
    print(table(["figure", "value", "target", ""], rows))
    for reason in dict.fromkeys(c["why"] for c in found if "why" in c):  # each reason once, in order
        print(textwrap.fill(reason, width=110, initial_indent="- ", subsequent_indent="  "))


# ------------------------------------------------------------------------------------------------- main


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(numerator: float | None, denominator: float | None) -> str:
    return "-" if numerator is None or not denominator else f"{numerator / denominator:.2f}"


def _stage(value: str) -> Stage:
    return int(value) if value.isdigit() else value


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {value!r}")
    return number


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda if available"
    )
    parser.add_argument("--model", default="resnet50", help="timm CNN (default: resnet50, the paper's)")
    parser.add_argument(
        "--stages",
        nargs="+",
        type=_stage,
        default=[2, 3],
        help="feature_info indices or names (default: 2 3)",
    )
    parser.add_argument("--frames", type=_positive, default=8, help="T, frames per clip (default: 8)")
    parser.add_argument(
        "--size",
        nargs=2,
        type=_positive,
        default=[256, 128],
        metavar=("H", "W"),
        help="frame size (default: 256 128)",
    )
    parser.add_argument(
        "--batch",
        type=_positive,
        default=4,
        help="clips per call in the per-block section (default: 4); Table 3 and the scaling section use one "
        "clip per call",
    )
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=None,
        help="timed calls per measurement, median reported (default: 3 on CPU, 20 on CUDA)",
    )
    parser.add_argument("--only", choices=["table3", "blocks", "scaling"], help="run one section only")
    parser.add_argument("--json", metavar="PATH", help="write everything printed as JSON")
    parser.add_argument("--plot", metavar="PATH", help="save the scaling section as a PNG (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False")
    if args.repeat is None:
        args.repeat = 20 if args.device == "cuda" else 3
    if args.plot is not None:
        if args.only not in (None, "scaling"):
            parser.error(f"--plot draws the scaling section, which --only {args.only} skips")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install matplotlib (or pip install -e '.[bench]')")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    sections = [args.only] if args.only else ["table3", "blocks", "scaling"]
    shapes = _stage_shapes(args)
    total = 1 + 4 * ("table3" in sections) + 4 * len(shapes) * ("blocks" in sections)
    total += len(SCALING_FRAMES) * ("scaling" in sections)
    progress = Progress(total)
    progress.step("dense matmul throughput")
    env = environment(device)
    env["matmul_2048_fp32_gflops"] = peak_gflops = matmul_gflops(device, repeat=max(args.repeat, 5))
    settings = {
        "model": args.model,
        "stages": list(args.stages),
        "size": list(args.size),
        "frames": args.frames,
        "batch": args.batch,
        "repeat": args.repeat,
        "last_stride": 1,
        "num_classes": NUM_CLASSES,
        "stage_shapes": [{"stage": s, "channels": c, "height": h, "width": w} for s, c, h, w in shapes],
    }
    results: dict[str, Any] = {"env": env, "settings": settings}
    if "table3" in sections:
        table3 = run_table3(args, device, shapes, progress)
        results["table3"] = table3["rows"]
        results["table3_overhead"] = table3["overhead"]
    if "blocks" in sections:
        results["blocks"] = run_blocks(args, device, shapes, peak_gflops, progress)
    if "scaling" in sections:
        results["scaling"] = run_scaling(args, device, shapes[-1], progress)
    progress.close()
    env["busy"] = False
    if hasattr(os, "getloadavg"):
        env["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        env["busy"] = device.type == "cpu" and (
            env["load_average_start"][0] > 1 or env["load_average_end"][0] > env["threads"] + 1
        )
    results["checks"] = checks(results)
    if args.json is not None:  # before printing, so that a closed stdout cannot lose it
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))

    print(
        f"torch {env['torch']}, {env['device']} ({env['device_name']}), threads: {env['threads']}; "
        f"dense fp32 matmul {peak_gflops:.0f} GFLOP/s; load average {env.get('load_average_start')} -> "
        f"{env.get('load_average_end')}"
    )
    if env["busy"]:
        print(
            "WARNING: other processes were using the CPU (1-min load average above "
            f"{env['threads']} threads + 1 at the end, or above 1 at the start): the timings, their ratios "
            "and the fractions of matmul throughput are unreliable; rerun on an idle machine"
        )
    print(f"timing: {env['timing_method']}, {args.repeat} timed calls")
    print(f"peak memory: {env['memory_method']}")
    if "table3" in sections:
        print_table3(args, table3)
    if "blocks" in sections:
        print_blocks(results["blocks"], peak_gflops, device)
    if "scaling" in sections:
        print_scaling(results["scaling"])
    print_checks(results["checks"])
    if args.plot is not None and "scaling" in results:
        plot_scaling(results["scaling"], args.plot)
        print(f"\nplot: {args.plot}")
    if args.json is not None:
        print(f"json: {args.json}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
