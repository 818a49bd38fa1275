"""A torchvision not built for the installed torch: one line where timm is first needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lstrl_layers._compat import matching_torchvision


@pytest.mark.parametrize(
    ("torch_version", "series"),
    [("2.7.0", "0.22"), ("2.9.1+cpu", "0.24"), ("2.14.1+cu130", "0.29"), ("3.0.0", None)],
)
def test_matching_torchvision_series(torch_version: str, series: str | None) -> None:
    assert matching_torchvision(torch_version) == series


@pytest.mark.slow
def test_a_mismatched_torchvision_is_one_line_naming_both_versions(tmp_path: Path) -> None:
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    blocks_only = "import lstrl_layers; lstrl_layers.MAE(8, 2)"  # neither timm nor torchvision needed
    assert subprocess.run([sys.executable, "-c", blocks_only], env=env).returncode == 0
    build = "import lstrl_layers; lstrl_layers.VideoReIDNet('resnet18', 4, pretrained=False)"
    result = subprocess.run([sys.executable, "-c", build], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: torchvision ") and "was not built for torch " in last
    assert (
        "operator torchvision::nms does not exist" in last
        and "pip install --force-reinstall 'torch==" in last
    )
