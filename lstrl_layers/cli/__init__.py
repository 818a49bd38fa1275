"""The ``lstrl`` command: ``lstrl train`` (train and evaluate a model), ``lstrl embed`` (tracklets to
embeddings) and ``lstrl export`` (a model to ONNX).

Each sub-command parses and validates its flags, then calls the library; a wrong input ends in one line on
stderr naming the file or flag and what to do, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import embed, export, train

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstrl",
        description="Train an LSTRL video ReID model and use it: train, embed tracklets, export to ONNX.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (train, embed, export):
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lstrl`` with ``argv`` (default: the process's arguments); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (OSError, ValueError, RuntimeError) as err:
        line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        print(f"lstrl {args.command}: error: {line}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
