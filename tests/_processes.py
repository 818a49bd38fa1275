"""Two training processes on the CPU (gloo), as ``torchrun --nproc_per_node=2`` would start them."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.multiprocessing as mp


def run_on_two_processes(worker: Callable[..., None], *args: Any) -> None:
    """``worker(rank, *args)`` on ranks 0 and 1 of a gloo world, one thread each; raises if a rank fails.

    A rank that has returned leaves at once, without the interpreter's teardown: the library has left the
    process group by then (barrier, ``destroy_process_group``), and gloo's threads can still abort a
    process in the interpreter's last steps, after its work is done and written.
    """
    mp.spawn(_rank, args=(2, _free_port(), worker, args), nprocs=2, join=True)


def _rank(rank: int, size: int, port: int, worker: Callable[..., None], args: tuple[Any, ...]) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    worker(rank, *args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
