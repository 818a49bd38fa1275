"""Fixtures of the command-line tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def keep_threads() -> Iterator[None]:
    """The training command sets torch's thread count (for synthetic data); each module gets it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
