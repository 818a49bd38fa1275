"""Names the docstring examples use, without importing them in every example (run by ``python -m pytest``)."""

from __future__ import annotations

from typing import Any

import pytest

pytest_plugins = ("pytester",)  # tests/test_device_option.py runs pytest with tests/conftest.py's options


@pytest.fixture(autouse=True, scope="session")
def _doctest_names(doctest_namespace: dict[str, Any]) -> None:
    import timm
    import torch
    import torchvision
    from torch import nn

    import lstrl_layers

    doctest_namespace.update(torch=torch, nn=nn, timm=timm, torchvision=torchvision)
    doctest_namespace.update({name: getattr(lstrl_layers, name) for name in lstrl_layers.__all__})
