"""The cost of one training step of the ablation's runs: time, achieved GFLOP/s and the machine's matmul rate.

Each Table 3 variant trains a few steps in the contiguous (NCHW) and the channels-last layout, side by side in
one process and one thread (as the ablation runs them), on the ablation's data and recipe; the figures are
medians over the steps after the first few. GFLOP/s counts the forward pass's multiply-adds (``count_macs``,
full convention) as 2 FLOPs and the backward pass as twice the forward, against the rate of a float32
1024 x 1024 matmul on the same thread.

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
from lstrl_layers.argtypes import positive_int
from lstrl_layers.reid.distributed import World
from lstrl_layers.reid.engine import _train_loader, build_loss, build_model, build_optimizer, train_step


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    """The float32 matmul rate of this process's threads, GFLOP/s (median of ``repeats``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - tic)
    return 2 * size**3 / statistics.median(times) / 1e9


def step_seconds(name: str, channels_last: bool, steps: int) -> tuple[float, float, float]:
    """Median seconds of a training step, of loading its batch, and the step's GFLOP count."""
    args = ablation.parse_args(["--steps", "1"])
    data = ablation._data("approach", args.identities, 0)
    settings = replace(ablation._settings(ablation.TABLE3[name], args, 0, data), channels_last=channels_last)
    torch.manual_seed(0)
    model = build_model(settings, data.num_train_ids)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion, (optimizer, _) = build_loss(settings), build_optimizer(settings, model)
    world = World(device="cpu")
    loader = _train_loader(data, settings, world)
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
            train_step(model, criterion, optimizer, clips, pids, settings, world)
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
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    peak = matmul_gflops()
    print(f"float32 matmul 1024 x 1024: {peak:.0f} GFLOP/s on {args.threads} thread(s)")
    print(
        f"{'variant':<10} {'layout':<14} {'step ms':>8} {'batch ms':>9} {'GFLOP':>6} {'GFLOP/s':>8} "
        f"{'of matmul':>9}"
    )
    for name in ablation.TABLE3:
        for channels_last in (False, True):
            seconds, loading, gflop = step_seconds(name, channels_last, args.steps)
            layout = "channels-last" if channels_last else "contiguous"
            print(
                f"{name:<10} {layout:<14} {1e3 * seconds:8.1f} {1e3 * loading:9.1f} {gflop:6.2f} "
                f"{gflop / seconds:8.1f} {100 * gflop / seconds / peak:8.0f}%",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
