"""MAE's attention alone, forward+backward: PyTorch's fused SDPA vs materialized softmax(Q Kᵀ) V.

Why MAE's efficient path cannot beat its materializing path by more than this ratio on a given machine: both
paths share the 1x1 convolutions and the extension E, so the whole-block time ratio lies between this one and
1. Defaults: MAE at ResNet-50's layer2 (T=8, 32x16 positions, C/4 = 128), 4 clips, all four query sets.

    python benchmarks/attention_only.py [--clips 4] [--positions 4096] [--dim 128] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from lstrl_layers.cli.argtypes import positive_int


def _fused(query: Tensor, keys: Tensor) -> Tensor:
    heads = [rearrange(t, "b n c -> b 1 n c") for t in (query, keys)]
    return rearrange(
        F.scaled_dot_product_attention(heads[0], heads[1], heads[1], scale=1.0), "b 1 n c -> b n c"
    )


def _materialized(query: Tensor, keys: Tensor) -> Tensor:
    return torch.einsum("bqc,bkc->bqk", query, keys).softmax(dim=-1) @ keys


def _time(attend: Callable[[Tensor, Tensor], Tensor], x1: Tensor, extra_queries: int) -> float:
    keys = x1.clone().requires_grad_()
    query = torch.cat([keys, keys[:, :extra_queries]], dim=1)  # X1 and as many rows as X2, X3, X4 have
    start = time.perf_counter()
    attend(query, keys).sum().backward()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=positive_int, default=4, help="(default: 4)")
    parser.add_argument(
        "--positions", type=positive_int, default=8 * 32 * 16, help="T*H*W, the keys (default: 4096)"
    )
    parser.add_argument(
        "--extra-queries", type=positive_int, default=32 * 16 + 8 + 1, help="H*W + T + 1 (default: 521)"
    )
    parser.add_argument("--dim", type=positive_int, default=128, help="C/4 (default: 128)")
    parser.add_argument(
        "--repeat", type=positive_int, default=5, help="timed rounds, median reported (default: 5)"
    )
    args = parser.parse_args(argv)
    if args.extra_queries > args.positions:
        parser.error(
            f"--extra-queries {args.extra_queries}: the extra query rows are taken from the keys, so at most "
            f"--positions ({args.positions})"
        )
    torch.manual_seed(0)
    x1 = 0.1 * torch.randn(args.clips, args.positions, args.dim)
    times: dict[str, list[float]] = {"fused SDPA": [], "materialized": []}
    for round_ in range(args.repeat + 1):  # interleaved; the first round is a warm-up
        for name, attend in (("fused SDPA", _fused), ("materialized", _materialized)):
            elapsed = _time(attend, x1, args.extra_queries)
            if round_:
                times[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}; {args.clips} clips, "
        f"{args.positions + args.extra_queries} queries x {args.positions} keys, d={args.dim}, fwd+bwd"
    )
    for name, median in medians.items():
        print(f"{name:<14} {1e3 * median:8.1f} ms (median of {args.repeat})")
    print(f"fused / materialized: {medians['fused SDPA'] / medians['materialized']:.2f}")


if __name__ == "__main__":
    main()
