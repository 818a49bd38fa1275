"""``benchmarks/flops.py`` in the precisions and layouts of GPU training (``--dtype``, ``--channels-last``,
``--compile``) and its throughput section, run at ``--smoke`` sizes on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _scripts import BENCHMARKS, load_script

from lstrl_layers import VideoReIDNet

VARIANTS = ["Baseline", "+MAE", "+BME", "+MAE+BME"]


@pytest.fixture(scope="module")
def flops() -> types.ModuleType:
    return load_script(BENCHMARKS / "flops.py")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any], Path]]:
    """``--smoke --dtype bfloat16 --channels-last`` run as a user runs it: (stdout, JSON, its path)."""
    path = tmp_path_factory.mktemp("smoke") / "bf16.json"
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "flops.py"), "--smoke", "--dtype", "bfloat16", "--channels-last"]
        + ["--json", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    yield completed.stdout, json.loads(path.read_text()), path


def test_smoke_runs_every_section_in_the_precision_and_layout_asked(smoke_run: Any) -> None:
    out, result, _ = smoke_run
    assert [name for name in ("table3", "blocks", "scaling", "throughput") if name in result] == [
        "table3",
        "blocks",
        "scaling",
        "throughput",
    ]
    settings, env = result["settings"], result["env"]
    assert (settings["dtype"], settings["channels_last"], settings["compile"]) == ("bfloat16", True, False)
    assert (settings["backbone"], settings["size"], settings["num_frames"]) == ("test_resnet", [32, 16], 2)
    assert (settings["throughput_batch"], settings["P"], settings["K"]) == (2, 2, 2)
    assert env["matmul_dtype"] == "bfloat16" and env["matmul_size"] >= 256 and env["matmul_gflops"] > 0
    assert "precision: bfloat16 under autocast (parameters in float32); channels-last: yes" in out
    assert "GFLOP/s fractions are of the dense bfloat16" in out and "== Throughput" in out


def test_throughput_rows_are_consistent_with_their_times_and_macs(smoke_run: Any) -> None:
    _, result, _ = smoke_run
    rows = {row["name"]: row for row in result["throughput"]}
    assert list(rows) == VARIANTS
    peak = result["env"]["matmul_gflops"]
    for row in rows.values():
        for prefix, clips, flops_per_mac in (("infer", 2, 2), ("train", 4, 6)):
            seconds = row[f"{prefix}_ms"] / 1e3
            assert row[f"{prefix}_clips"] == clips
            assert row[f"{prefix}_clips_per_s"] == pytest.approx(clips / seconds)
            gflops = flops_per_mac * row["macs_full_per_clip"] * clips / seconds / 1e9
            assert row[f"{prefix}_gflops"] == pytest.approx(gflops)
            assert row[f"{prefix}_matmul_fraction"] == pytest.approx(gflops / peak)
            assert row[f"{prefix}_peak_mib"] > 0
    # the same models as Table 3's rows, counted there per frame: the two sections agree
    num_frames = result["settings"]["num_frames"]
    for table3 in result["table3"]:
        per_clip = rows[table3["name"]]["macs_full_per_clip"]
        assert per_clip / num_frames / 1e9 == pytest.approx(table3["gmacs_full"])
    assert rows["+MAE+BME"]["macs_full_per_clip"] > rows["+BME"]["macs_full_per_clip"]
    assert rows["+BME"]["macs_full_per_clip"] > rows["Baseline"]["macs_full_per_clip"]
    overhead = result["throughput_overhead"]
    assert list(overhead) == VARIANTS[1:]
    base = rows["Baseline"]
    assert overhead["+BME"]["train_time_overhead"] == pytest.approx(
        rows["+BME"]["train_ms"] / base["train_ms"] - 1
    )


def test_the_sdpa_back_end_that_ran_is_named(smoke_run: Any) -> None:
    """On a CPU the fused kernel is the CPU flash kernel; only MAE's efficient path calls SDPA."""
    out, result, _ = smoke_run
    for stage in result["blocks"]:
        assert [row.get("sdpa") for row in stage["rows"]] == [["flash (CPU)"], None, None, None]
    assert out.count("SDPA back end that ran in MAE's efficient path (profiler): flash (CPU)") == 2


def test_compare_across_precisions(
    flops: types.ModuleType, smoke_run: Any, tmp_path: Path, capsys: Any
) -> None:
    """A float32 run of the throughput section against the bfloat16 run: the figures side by side, the
    precisions named."""
    _, _, path = smoke_run
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        flops.main(["--smoke", "--only", "throughput", "--compare", str(path), "--json", str(tmp_path / "f")])
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    header = "\n".join(lines[:8])
    assert "settings differ from the old run:" in header
    assert "dtype float32 (old bfloat16)" in header and "channels_last False (old True)" in header
    (fractions,) = [line for line in lines if line.startswith("GFLOP/s fractions are of")]
    assert (
        "(old run: this CPU's dense bfloat16" in fractions and "%" not in fractions
    )  # rates of two precisions
    changes = [line for line in lines if line.startswith("  change")]
    assert len(changes) == len(VARIANTS)
    assert "in the old run only: Table 3, Blocks, Scaling (not run this time)" in lines


def test_a_training_step_trains_in_each_precision(flops: types.ModuleType) -> None:
    """The step timed is a real one: it changes the parameters, in float32 and under autocast."""
    throughput, measure = sys.modules["_throughput"], sys.modules["_measure"]
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(0)
        model = VideoReIDNet("test_resnet", 625, stages=(2, 3), num_frames=2, zero_init=False).train()
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        clips = torch.randn(4, 2, 3, 32, 16)
        step, _ = throughput._train_case(model, model, clips, measure.Mode(dtype), 2, 2)
        step()
        moved = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
        assert len(moved) > 0.9 * len(before), dtype
        assert all(p.dtype == torch.float32 for p in model.parameters())


def test_smoke_sizes_are_defaults_that_flags_override(flops: types.ModuleType) -> None:
    args = flops.parse_args(["--smoke", "-T", "3", "--size", "64", "32"])
    assert (args.backbone, args.num_frames, args.size, args.batch, args.repeat) == (
        "test_resnet",
        3,
        [64, 32],
        1,
        1,
    )
    assert flops.sections_to_run(args) == ["table3", "blocks", "scaling", "throughput"]
    plain = flops.parse_args(["--backbone", "test_resnet", "--size", "32", "16"])
    assert (plain.num_frames, plain.batch, plain.throughput_batch, plain.P, plain.K) == (8, 4, 64, 8, 4)
    assert flops.sections_to_run(plain) == ["table3", "blocks", "scaling"]  # a CPU: not at real batches
    assert flops.sections_to_run(flops.parse_args(["--smoke", "--only", "throughput"])) == ["throughput"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dtype", "float64"], "--dtype: invalid choice: 'float64'"),
        (["--dtype", "bf16"], "--dtype: invalid choice: 'bf16'"),
        (["-K", "1"], "-K 1: the training step's triplet loss needs at least 2"),
        (["-P", "1"], "-P 1: the training step's triplet loss needs at least 2"),
        (["--throughput-batch", "0"], "--throughput-batch"),
        (["--compile", "yes"], "unrecognized arguments: yes"),
    ],
)
def test_wrong_precision_or_batch_refused_at_once(
    flops: types.ModuleType, capsys: Any, argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        flops.parse_args(["--smoke", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


def test_mode_runs_modules_as_asked(flops: types.ModuleType) -> None:
    mode = sys.modules["_measure"].Mode("bfloat16", channels_last=True)
    conv = mode.module(torch.nn.Conv2d(3, 4, 3))
    frames = mode.inputs(torch.randn(2, 3, 8, 8))
    assert frames.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.dtype == torch.float32 and conv.weight.is_contiguous(memory_format=torch.channels_last)
    with mode.autocast(frames.device):
        assert conv(frames).dtype == torch.bfloat16
    clips = torch.randn(1, 2, 3, 8, 8)
    assert mode.inputs(clips) is clips  # clips: the model's first convolution decides their layout


@pytest.mark.slow
def test_compiled_bfloat16_run(flops: types.ModuleType, tmp_path: Path) -> None:
    """``--compile`` under bfloat16 autocast, on the blocks of one stage (compiling the whole smoke run takes
    minutes on a CPU): every path compiled runs, and the SDPA back end is named whatever the compiler made of
    the attention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        argv = ["--smoke", "--dtype", "bfloat16", "--compile", "--only", "blocks", "--stages", "3"]
        result = flops.main([*argv, "--json", str(tmp_path / "c.json")])
    finally:
        torch.set_num_threads(threads)
    assert (result["settings"]["compile"], result["settings"]["dtype"]) == (True, "bfloat16")
    (stage,) = result["blocks"]
    assert all(row["fwd_ms"] > 0 and row["fwd_bwd_ms"] > 0 for row in stage["rows"])
    assert len(stage["rows"][0]["sdpa"]) >= 1
