"""The cost of one training step of the ablation's runs: time, achieved GFLOP/s and the machine's matmul rate.

Each Table 3 variant trains a few steps in three ways, side by side in one process and one thread (as the
ablation runs them), on the ablation's data and recipe: float32 in the contiguous (NCHW) layout, float32 in
the channels-last layout, and channels-last under bfloat16 autocast (``amp``). The figures are medians over
the steps after the first few. GFLOP/s counts the forward pass's multiply-adds (``count_macs``, full
convention) as 2 FLOPs and the backward pass as twice the forward, against the rate of a 1024 x 1024 matmul
on the same thread in the step's precision (float32, or bfloat16 under autocast).

    python benchmarks/train_step.py
    python benchmarks/train_step.py --steps 30 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

import ablation
import torch

from lstrl_layers import count_macs
from lstrl_layers.cli.argtypes import positive_int
from lstrl_layers.reid.engine import build_loss, build_model, build_optimizer, train_loader, train_step

LAYOUTS = (
    ("contiguous", False, False),
    ("channels-last", True, False),
    ("channels-last, bf16", True, True),
)


def matmul_gflops(size: int = 1024, repeats: int = 20, dtype: torch.dtype = torch.float32) -> float:
    """The matmul rate of this process's threads in ``dtype``, GFLOP/s (median of ``repeats``)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - tic)
    return 2 * size**3 / statistics.median(times) / 1e9


SMOKE = {"P": 2, "K": 2, "num_frames": 2}  # --smoke: a batch of 4 clips of 2 frames


def step_seconds(
    name: str, channels_last: bool, amp: bool, steps: int, smoke: bool = False
) -> tuple[float, float, float]:
    """Median seconds of a training step, of loading its batch, and the step's GFLOP count."""
    args = ablation.parse_args(["--steps", "1"])
    data = ablation.data_of("approach", args.identities, 0)
    settings = replace(
        ablation.run_settings(ablation.TABLE3[name], args, 0, data),
        channels_last=channels_last,
        amp=amp,
        device="cpu",
        **(SMOKE if smoke else {}),
    )
    torch.manual_seed(0)
    model = build_model(settings, data.num_train_ids)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion, (optimizer, _) = build_loss(settings), build_optimizer(settings, model)
    loader = train_loader(data, settings)
    step_times, load_times = [], []
    epoch = 0
    while len(step_times) < steps:
        epoch += 1
        loader.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]
        batches = iter(loader)
        while len(step_times) < steps:
            tic = time.perf_counter()
            try:
                clips, pids, _ = next(batches)
            except StopIteration:
                break
            load_times.append(time.perf_counter() - tic)
            tic = time.perf_counter()
            train_step(model, criterion, optimizer, clips, pids, settings)
            step_times.append(time.perf_counter() - tic)
    macs = count_macs(model.eval(), clips[:1], convention="full") * len(clips)
    warm = min(3, steps - 1)
    return statistics.median(step_times[warm:]), statistics.median(load_times[warm:]), 3 * 2 * macs / 1e9


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=positive_int, default=20, help="steps per variant and layout (default 20)")
    p.add_argument(
        "--threads", type=positive_int, default=1, help="torch threads (default 1, as the ablation)"
    )
    p.add_argument(
        "--smoke", action="store_true", help="tiny batches and matmuls, to check that the script runs"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    size, repeats = (256, 3) if args.smoke else (1024, 20)
    peaks = {
        amp: matmul_gflops(size, repeats, dtype=torch.bfloat16 if amp else torch.float32)
        for amp in (False, True)
    }
    print(
        f"matmul {size} x {size} on {args.threads} thread(s): float32 {peaks[False]:.0f} GFLOP/s, "
        f"bfloat16 {peaks[True]:.0f} GFLOP/s"
    )
    print(
        f"{'variant':<10} {'layout':<20} {'step ms':>8} {'batch ms':>9} {'GFLOP':>6} {'GFLOP/s':>8} "
        f"{'of matmul':>9}"
    )
    for name in ablation.TABLE3:
        for layout, channels_last, amp in LAYOUTS:
            seconds, loading, gflop = step_seconds(name, channels_last, amp, args.steps, args.smoke)
            print(
                f"{name:<10} {layout:<20} {1e3 * seconds:8.1f} {1e3 * loading:9.1f} {gflop:6.2f} "
                f"{gflop / seconds:8.1f} {100 * gflop / seconds / peaks[amp]:8.0f}%",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
