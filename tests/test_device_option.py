"""The suite's ``--device`` option (tests/conftest.py): a device that is not there fails before any test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

CONFTEST = Path(__file__).with_name("conftest.py").read_text()


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("def test_device(device):\n    print('DEVICE', device)\n")
    return pytester


def test_default_is_the_cpu(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*DEVICE cpu*"])


def test_cuda_without_a_gpu_fails_at_session_start(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = suite.runpytest_inprocess("--device", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # an error, not skipped tests
    result.stderr.fnmatch_lines(["*--device cuda: no CUDA GPU is available to this torch*"])
    result.stdout.no_fnmatch_line("*DEVICE*")


@pytest.mark.parametrize("value", ["tpu", "meta", "cuda:x"])
def test_unknown_devices_are_refused(suite: pytest.Pytester, value: str) -> None:
    result = suite.runpytest_inprocess("--device", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--device must be cpu, cuda or cuda:N, got '{value}'*"])
