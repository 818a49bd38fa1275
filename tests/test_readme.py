"""Every ```python block of README.md and of the docs pages runs as written, on its own, without internet or
data."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def _python_blocks() -> list[tuple[str, str]]:
    """``(PAGE:LINE, code)`` of each python block, LINE being the line of its opening fence."""
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        name = page.relative_to(ROOT)
        blocks += [
            (f"{name}:{text.count(chr(10), 0, match.start()) + 1}", match.group(1))
            for match in PYTHON_BLOCK.finditer(text)
        ]
    return blocks


BLOCKS = _python_blocks()


def test_every_python_block_is_found() -> None:
    fences = sum(
        len(re.findall(r"^```python[ \t]*$", p.read_text(encoding="utf-8"), re.MULTILINE)) for p in PAGES
    )
    assert BLOCKS and len(BLOCKS) == fences  # none is skipped by the pattern below
    assert {where.split(":")[0] for where, _ in BLOCKS} >= {"README.md", "docs/your-own-model.md"}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_pages_link_to_pages_that_exist(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+\.(?:md|png))\)", page.read_text(encoding="utf-8")):
        assert (page.parent / target).is_file(), f"{page.name} links to {target}, which does not exist"


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
