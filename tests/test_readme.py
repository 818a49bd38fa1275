"""Every ```python block of README.md runs as written, on its own, without internet or data."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parent.parent / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def _python_blocks() -> list[tuple[str, str]]:
    """``(README.md:LINE, code)`` of each python block, LINE being the line of its opening fence."""
    text = README.read_text(encoding="utf-8")
    return [
        (f"README.md:{text.count(chr(10), 0, match.start()) + 1}", match.group(1))
        for match in PYTHON_BLOCK.finditer(text)
    ]


BLOCKS = _python_blocks()


def test_every_python_block_is_found() -> None:
    text = README.read_text(encoding="utf-8")
    opening_fences = len(re.findall(r"^```python[ \t]*$", text, re.MULTILINE))
    assert BLOCKS and len(BLOCKS) == opening_fences  # none is skipped by the pattern below


@pytest.fixture
def offline_one_thread(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No network (a download fails at once), one intra-op thread (tiny tensors), a scratch folder as cwd."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("README blocks must run without internet")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("where, code", BLOCKS, ids=[where for where, _ in BLOCKS])
def test_python_block_runs_on_its_own(where: str, code: str, offline_one_thread: None) -> None:
    torch.manual_seed(0)
    exec(compile(code, where, "exec"), {"__name__": "__readme__"})  # a fresh namespace for each block
