"""Timing, peak-memory and environment helpers of ``benchmarks/flops.py``."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

WARMUP = {"cpu": 1, "cuda": 3}  # untimed calls before the memory and timed calls

TIMING_METHOD = {
    "cpu": "time.perf_counter around each call; median of the timed calls after {warmup} warm-up call(s)",
    "cuda": "CUDA events around each call, then synchronize; median of the timed calls after {warmup} "
    "warm-up calls",
}
MEMORY_METHOD = {
    "cpu": "peak bytes held by PyTorch's CPU allocator during one untimed call, above what was held "
    "before it, from torch.profiler allocation events (profile_memory=True); the CPU counterpart of "
    "torch.cuda.max_memory_allocated (BLAS/oneDNN scratch and Python objects are not included)",
    "cuda": "torch.cuda.max_memory_allocated during one untimed call, minus torch.cuda.memory_allocated "
    "before it (the caching allocator's own statistics)",
}


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# the aten operator each scaled_dot_product_attention back end runs, and the back end's name
SDPA_BACKENDS = {
    "_scaled_dot_product_flash_attention": "flash",
    "_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "_scaled_dot_product_efficient_attention": "memory-efficient",
    "_scaled_dot_product_cudnn_attention": "cuDNN",
    "_scaled_dot_product_fused_attention_overrideable": "fused (device extension)",
    "_scaled_dot_product_attention_math": "math",
}
NO_SDPA = "none (no SDPA kernel ran)"


@dataclass(frozen=True)
class Mode:
    """How every measured module runs: ``dtype`` under autocast (parameters stay float32, as in training;
    ``"float32"`` runs without autocast), the channels-last memory format, ``torch.compile``."""

    dtype: str = "float32"
    channels_last: bool = False
    compile: bool = False

    def module(self, module: nn.Module) -> nn.Module:
        """``module`` in this mode's memory format, compiled if asked (the original is left uncompiled, so
        that MACs are counted on it)."""
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return torch.compile(module) if self.compile else module  # type: ignore[return-value]

    def new_group(self) -> None:
        """Start a group of modules measured together: under ``compile``, forget what earlier groups
        compiled. Dynamo keeps a few compiled versions of one function (``ClipBlock.forward`` is shared by
        every block) and refuses more: the run makes that an error rather than time such a module eagerly."""
        if self.compile:
            torch.compiler.reset()

    def inputs(self, tensor: torch.Tensor) -> torch.Tensor:
        """A batch of frames ``(N, C, H, W)`` in this mode's memory format (clips ``(B, T, C, H, W)`` as
        they are: the model's first convolution gives channels-last maps to the rest)."""
        if self.channels_last and tensor.dim() == 4:
            return tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if self.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, DTYPES[self.dtype])


@dataclass
class Measurement:
    """Median time of the timed calls and peak extra memory of one call (``None``: out of memory)."""

    time_ms: float | None
    runs_ms: list[float]
    peak_mib: float | None

    def as_dict(self, prefix: str) -> dict[str, Any]:
        return {
            f"{prefix}_ms": self.time_ms,
            f"{prefix}_runs_ms": self.runs_ms,
            f"{prefix}_peak_mib": self.peak_mib,
        }


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Mute file descriptor 2 (the profiler's C++ back end logs there on start and stop)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak_bytes(run: Callable[[], object]) -> int:
    """Peak of (bytes allocated - bytes freed) by PyTorch's CPU allocator while ``run`` executes."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with _stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted(
        (
            event
            for event in prof.profiler.kineto_results.events()
            if event.name() == "[memory]" and event.device_type() == DeviceType.CPU
        ),
        key=lambda event: event.start_ns(),
    )
    held = peak = 0
    for event in events:
        held += event.nbytes()  # negative for frees
        peak = max(peak, held)
    return peak


def _cuda_peak_bytes(run: Callable[[], object], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    run()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


Case = tuple[
    Callable[[], object], Callable[[], object]
]  # (run: the call measured, prepare: before each call)


def runners(module: torch.nn.Module, inputs: torch.Tensor, backward: bool, mode: Mode = Mode()) -> Case:
    """``(run, prepare)``: one forward (no grad) or forward+backward of ``module(inputs)`` under ``mode``'s
    autocast; ``prepare`` drops the gradients of the previous call so every call allocates the same."""

    def prepare() -> None:
        module.zero_grad(set_to_none=True)
        inputs.grad = None

    def forward() -> None:
        with torch.no_grad(), mode.autocast(inputs.device):
            module(inputs)

    def forward_backward() -> None:
        with mode.autocast(inputs.device):
            out = module(inputs)
        out.float().sum().backward()

    return (forward_backward if backward else forward), prepare


def _time_ms(run: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    began = time.perf_counter()
    run()
    return (time.perf_counter() - began) * 1e3


def measure(cases: Mapping[str, Case], device: torch.device, repeat: int) -> dict[str, Measurement]:
    """Warm up every case, measure each one's peak memory in one call, then time ``repeat`` rounds of one call
    per case, the cases interleaved (a change of load on a shared machine then hits every case alike, which
    keeps their ratios meaningful). A case that runs out of CUDA memory gets ``None`` time and memory."""
    peaks: dict[str, float] = {}
    for name, (run, prepare) in cases.items():
        try:
            for _ in range(WARMUP[device.type]):
                prepare()
                run()
            prepare()
            peak = _cuda_peak_bytes(run, device) if device.type == "cuda" else _cpu_peak_bytes(run)
            peaks[name] = peak / 2**20
        except torch.cuda.OutOfMemoryError:
            prepare()
            torch.cuda.empty_cache()
    runs: dict[str, list[float]] = {name: [] for name in peaks}
    for _ in range(repeat):
        for name in peaks:
            run, prepare = cases[name]
            prepare()
            runs[name].append(_time_ms(run, device))
    return {
        name: Measurement(statistics.median(runs[name]), runs[name], peaks[name])
        if name in peaks
        else Measurement(None, [], None)
        for name in cases
    }


def matmul_gflops(device: torch.device, repeat: int, dtype: str = "float32", size: int = 2048) -> float:
    """Dense ``size x size`` matmul throughput of this machine in ``dtype`` (GFLOP/s, median of ``repeat``
    calls)."""
    a, b = (torch.randn(size, size, device=device, dtype=DTYPES[dtype]) for _ in range(2))
    for _ in range(WARMUP[device.type]):
        a @ b
    times = [_time_ms(lambda: a @ b, device) for _ in range(repeat)]
    return 2 * size**3 / (statistics.median(times) * 1e-3) / 1e9


MATMUL_SIZES = (256, 16384)  # the smallest and the largest size tried by matmul_rate
MATMUL_CALL_MS = 20.0  # matmul_rate stops growing the size once one call takes this long


def matmul_rate(device: torch.device, repeat: int, dtype: str) -> tuple[float, int]:
    """``(GFLOP/s, size)``: the dense matmul rate in ``dtype`` at the size that first keeps the device busy:
    the size doubles from 256 until one call takes 20 ms (a GPU reaches its rate only on large matrices; a
    CPU without native ``dtype`` instructions is slow already on small ones) or reaches 16384."""
    size, largest = MATMUL_SIZES
    while True:
        rate = matmul_gflops(device, 1, dtype, size)
        if 2 * size**3 / rate / 1e6 >= MATMUL_CALL_MS or size >= largest:
            return matmul_gflops(device, repeat, dtype, size), size
        size *= 2


def sdpa_backends(run: Callable[[], object]) -> list[str]:
    """The ``scaled_dot_product_attention`` back ends that one call of ``run`` ran, as the profiler saw their
    operators (``[NO_SDPA]`` when none ran: no attention, or a compiler that generated its own kernels)."""
    from torch.profiler import ProfilerActivity, profile

    with _stderr_silenced(), profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    names = {event.key.removeprefix("aten::") for event in prof.key_averages()}
    return [backend for op, backend in SDPA_BACKENDS.items() if op in names] or [NO_SDPA]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    import timm

    import lstrl_layers

    env = {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lstrl_layers": lstrl_layers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "timing_method": TIMING_METHOD[device.type].format(warmup=WARMUP[device.type]),
        "memory_method": MEMORY_METHOD[device.type],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        env.update(
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            capability=f"{properties.major}.{properties.minor}",
            device_memory_gib=round(properties.total_memory / 2**30, 1),
            # float32 matmuls and convolutions on TensorFloat-32 units (faster, 10-bit mantissa) or not
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
        )
    if hasattr(os, "getloadavg"):
        env["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    return env


def close_environment(env: dict[str, Any]) -> None:
    """Add the load average at the end of the run, and ``busy``: whether other processes used the CPU."""
    env["busy"] = False
    if hasattr(os, "getloadavg"):
        env["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        env["busy"] = env["device"] == "cpu" and (
            env["load_average_start"][0] > 1 or env["load_average_end"][0] > env["threads"] + 1
        )


class Progress:
    """``[i/n] label`` lines on stderr (overwritten in place on a terminal)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        line = f"[{self.done}/{self.total}, {time.perf_counter() - self.started:.0f} s] {label}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(f"done in {time.perf_counter() - self.started:.0f} s\n")
        sys.stderr.flush()
