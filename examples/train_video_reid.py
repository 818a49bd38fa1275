"""Train and evaluate an LSTRL video ReID model: ``lstrl train`` as a script, with the same flags, files and
exit statuses (``lstrl train --help`` lists the flags; ``lstrl_layers.cli.train`` says what a run writes).

    # anywhere, in a few minutes on a CPU
    python examples/train_video_reid.py --synthetic --epochs 3 --out out/synthetic
    # MARS as in the paper, 2 GPUs
    torchrun --nproc_per_node=2 examples/train_video_reid.py --dataset mars --data-root /data/MARS \\
        --out out/mars

Needs the ``examples`` extra.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lstrl_layers.cli import train
from lstrl_layers.reid.engine import TrainSettings

PROG = Path(__file__).name


def build_parser() -> argparse.ArgumentParser:
    return train.build_parser(PROG)


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, TrainSettings]:
    return train.parse_args(argv, PROG)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return train.main(argv, PROG)


if __name__ == "__main__":
    main()
