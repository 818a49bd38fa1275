"""Test options: ``--device`` (``cpu`` by default; ``cuda``, ``cuda:1``) for the tests that run tensors.

``pytest --device cuda`` runs the device-dependent tests (blocks, injection, VideoReIDNet, losses, metrics:
every test that takes the ``device`` fixture) on the GPU; the others (argument checks, file readers, CLIs,
ONNX Runtime) stay on the CPU. On CUDA, TF32 is switched off for matrix products and convolutions, so that
float32 results are compared at float32 precision whatever the card.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

_DEVICE = pytest.StashKey[torch.device]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        default="cpu",
        help="device of the tensor tests: cpu (default), cuda or cuda:N",
    )


def _requested_device(config: pytest.Config) -> torch.device:
    value = config.getoption("--device")
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError) as err:
        raise pytest.UsageError(f"--device must be cpu, cuda or cuda:N, got {value!r}") from err
    if device.type not in ("cpu", "cuda"):
        raise pytest.UsageError(f"--device must be cpu, cuda or cuda:N, got {value!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise pytest.UsageError(
                f"--device {value}: no CUDA GPU is available to this torch {torch.__version__} "
                f"(built with CUDA {torch.version.cuda}); run without --device for the CPU"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise pytest.UsageError(
                f"--device {value}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def _full_float32_precision() -> None:
    """No TF32 in float32 matrix products and convolutions (Ampere and later use it by default in cuDNN).

    The ``allow_tf32`` flags rather than torch 2.9's ``fp32_precision``: they exist in every supported torch,
    and setting part of the newer API makes ``torch.export`` (ONNX export) fail on the mix of the two.
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def pytest_configure(config: pytest.Config) -> None:
    device = _requested_device(config)  # a bad --device fails here, before any test runs
    config.stash[_DEVICE] = device
    if device.type == "cuda":
        _full_float32_precision()


def pytest_report_header(config: pytest.Config) -> str:
    device = config.stash[_DEVICE]
    if device.type == "cuda":
        return f"device: {device} ({torch.cuda.get_device_name(device)}), TF32 off"
    return "device: cpu"


@pytest.fixture
def device(pytestconfig: pytest.Config) -> torch.device:
    """The ``--device`` of this run (``cpu`` by default)."""
    return pytestconfig.stash[_DEVICE]


@pytest.fixture(scope="module")
def keep_threads() -> Iterator[None]:
    """Give a module torch's thread count back (the training command sets it, for synthetic data)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
