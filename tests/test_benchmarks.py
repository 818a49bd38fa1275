"""``benchmarks/flops.py`` and ``benchmarks/attention_only.py``: a run at tiny sizes, ``--compare`` against
it, and the command-line checks that refuse a wrong value before anything is measured."""

from __future__ import annotations

import contextlib
import copy
import io
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

TINY = ["--backbone", "test_resnet", "--size", "32", "16", "-T", "2", "--batch", "1", "--repeat", "1"]


def _load(name: str) -> types.ModuleType:
    return load_script(BENCHMARKS / f"{name}.py")


@pytest.fixture(scope="module")
def flops() -> types.ModuleType:
    return _load("flops")


@pytest.fixture(scope="module")
def old_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.CompletedProcess, Path]]:
    """The script run as a user runs it, at tiny sizes, with ``--json``."""
    path = tmp_path_factory.mktemp("benchmark") / "old.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny ops: a second thread only adds waiting on a busy CPU
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "flops.py"), *TINY, "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    yield completed, path


def _results(old_run: tuple[subprocess.CompletedProcess, Path]) -> dict[str, Any]:
    return json.loads(old_run[1].read_text())


def _report(flops: types.ModuleType, results: dict[str, Any], old: dict[str, Any] | None) -> str:
    """What the script prints for ``results``, compared with ``old``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        flops.print_header(results, old, "old.json")
        for name, section in flops.REPORTS.items():
            if name in results:
                section.report(results, old)
    return out.getvalue()


def _following(lines: list[str], label: str, which: str) -> list[str]:
    """The cells of the ``old`` or ``change`` row that follows the row labelled ``label``."""
    start = next(i for i, line in enumerate(lines) if line.startswith(label + "  "))
    row = next(line for line in lines[start + 1 :] if line.startswith(f"  {which}"))
    return row[len(f"  {which}") :].split()


@pytest.mark.slow
def test_run_writes_every_section_to_json(old_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    completed, _ = old_run
    assert "Table 3" in completed.stdout and "Blocks at layer2" in completed.stdout
    assert "Scaling" in completed.stdout
    result = _results(old_run)
    assert [row["name"] for row in result["table3"]] == ["Baseline", "+MAE", "+MAE+BME"]
    for row in result["table3"]:
        for key in ("params_m", "gmacs_paper", "gmacs_full", "latency_ms", "peak_mib"):
            assert isinstance(row[key], float), (row["name"], key)
        assert row["gmacs_full"] >= row["gmacs_paper"] > 0
    base, mae, both = result["table3"]
    assert base["gmacs_full"] == pytest.approx(base["gmacs_paper"])  # no attention in the baseline
    assert mae["gmacs_full"] > mae["gmacs_paper"]  # MAE's attention
    assert both["gmacs_paper_two_psi"] > both["gmacs_paper"]
    for key in ("torch", "device", "threads", "cpu", "matmul_2048_fp32_gflops", "memory_method", "date"):
        assert key in result["env"]
    assert len(result["blocks"]) == 2  # stages 2 and 3
    for stage in result["blocks"]:
        assert [row["block"] for row in stage["rows"]] == ["MAE", "MAE", "BME", "BME"]
        assert stage["ratios"]["MAE efficient / maps"]["macs_full_per_clip"] == pytest.approx(1.0)
        assert stage["ratios"]["BME ours / two-psi"]["macs_full_per_clip"] < 0.76
        assert stage["two_psi_max_abs_difference"] < 1e-4
    assert [row["num_frames"] for row in result["scaling"]["rows"]] == [4, 8, 16, 32]
    assert result["settings"]["backbone"] == "test_resnet" and result["settings"]["num_frames"] == 2
    assert [stage["num_frames"] for stage in result["blocks"]] == [2, 2]


def test_compare_with_itself_moves_nothing(flops: types.ModuleType, old_run: Any) -> None:
    results = _results(old_run)
    lines = _report(flops, results, copy.deepcopy(results)).splitlines()
    changes = [line.split()[1:] for line in lines if line.startswith("  change")]
    rows = 3 + len(results["blocks"]) * (4 + 2) + 4  # Table 3, each stage's paths and ratios, scaling
    assert len(changes) == rows
    assert {cell for cells in changes for cell in cells} == {"="}
    assert not [line for line in lines if "missing" in line or "not in the old run" in line]


def test_compare_prints_the_change_in_percent(flops: types.ModuleType, old_run: Any) -> None:
    results = _results(old_run)
    old = copy.deepcopy(results)
    old["table3"][0]["latency_ms"] = 2 * results["table3"][0]["latency_ms"]
    old["scaling"]["rows"][0]["maps_ms"] = results["scaling"]["rows"][0]["maps_ms"] / 4
    old["env"]["matmul_2048_fp32_gflops"] *= 2
    lines = _report(flops, results, old).splitlines()
    table3 = flops.REPORTS["table3"].COLUMNS  # the paper's constants are not compared
    expected = ["-50.0%" if column.value == "latency_ms" else "=" for column in table3 if column.compare]
    assert _following(lines, "Baseline", "change") == expected
    scaling = [column.value for column in flops.REPORTS["scaling"].COLUMNS]
    assert _following(lines, "4", "change")[scaling.index("maps_ms")] == "+300.0%"
    assert "(old " in lines[0] and "-50.0%)" in lines[0]  # matmul throughput, in the first line


def test_compare_shows_what_the_old_run_lacks_or_adds(flops: types.ModuleType, old_run: Any) -> None:
    results = _results(old_run)
    old = copy.deepcopy(results)
    del old["table3"][1]  # +MAE
    del old["table3"][0]["peak_mib"]
    old["table3"].append({"name": "+BME"})
    old["blocks"][1]["stage"] = "layer4"
    del old["scaling"]
    lines = _report(flops, results, old).splitlines()
    assert _following(lines, "Baseline", "old")[-1] == "missing"
    compared = sum(column.compare for column in flops.REPORTS["table3"].COLUMNS)
    assert len(_following(lines, "Baseline", "change")) == compared - 1  # none for the missing figure
    after_mae = lines[next(i for i, line in enumerate(lines) if line.startswith("+MAE  ")) + 1]
    assert after_mae.strip() == "old: not in the old run"
    assert "in the old run only: +BME" in lines
    assert "in the old run only: blocks at layer4" in lines
    titles = [line for line in lines if line.startswith("== ")]
    assert [title.endswith("(not in the old run)") for title in titles] == [False, False, True, True]


def test_compare_from_the_command_line(
    flops: types.ModuleType, old_run: Any, tmp_path: Path, capsys: Any
) -> None:
    """A second run, of one section, against the first one's JSON (one thread: tiny tensors)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        argv = [*TINY, "--only", "scaling", "--compare", str(old_run[1]), "--json", str(tmp_path / "n")]
        results = flops.main(argv)
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert f"old run ({old_run[1]})" in out
    assert "in the old run only: Table 3, Blocks" in out
    assert sum(line.startswith("  change") for line in out.splitlines()) == len(results["scaling"]["rows"])
    assert json.loads((tmp_path / "n").read_text())["scaling"]["rows"][0]["num_frames"] == 4


def test_compare_names_the_settings_that_differ(flops: types.ModuleType, old_run: Any) -> None:
    results = _results(old_run)
    old = copy.deepcopy(results)
    old["settings"]["num_frames"] = 8
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        flops.print_header(results, old, "old.json")
    assert "settings differ from the old run: num_frames 2 (old 8)" in out.getvalue()
    old["settings"].update(backbone="resnet18", num_classes=10)  # any setting, not a chosen few
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        flops.print_header(results, old, "old.json")
    backbone = results["settings"]["backbone"]
    assert (
        f"settings differ from the old run: backbone {backbone} (old resnet18), num_frames 2 (old 8), "
        "num_classes" in out.getvalue()
    )


def test_compare_reads_the_names_earlier_versions_wrote(
    flops: types.ModuleType, old_run: Any, tmp_path: Path
) -> None:
    """Files of earlier versions call the backbone "model" and T "frames": they compare as today's files."""
    results = _results(old_run)
    earlier = copy.deepcopy(results)
    settings = earlier["settings"]
    settings["model"], settings["frames"] = settings.pop("backbone"), settings.pop("num_frames")
    for item in [*earlier["blocks"], *earlier["scaling"]["rows"]]:
        item["frames"] = item.pop("num_frames")
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(earlier))
    old = flops.parse_args([*TINY, "--compare", str(path)]).old
    assert old == results
    lines = _report(flops, results, old).splitlines()
    assert not [line for line in lines if "missing" in line or "not in the old run" in line]
    assert "settings differ" not in "\n".join(lines)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        ("not json", "is not JSON"),
        ("[1, 2]", "expected an object at the top, got list"),
        ('{"env": {}, "table3": []}', "no 'settings' object"),
        ('{"env": {}, "settings": {}}', "none of the sections"),
        ('{"env": {}, "settings": {}, "blocks": [{"rows": 3}]}', "'blocks[0].rows' is not a list of objects"),
        ('{"env": {}, "settings": {}, "scaling": []}', "'scaling' is a list"),
    ],
)
def test_compare_refuses_what_the_benchmark_did_not_write(
    flops: types.ModuleType, tmp_path: Path, capsys: Any, content: str | None, expected: str
) -> None:
    path = tmp_path / "old.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        flops.parse_args(["--compare", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:")
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--compare:" in errors[0] and repr(str(path)) in errors[0]
    assert expected in errors[0]


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--repeat", "0"], "--repeat"),
        (["--repeat", "x"], "--repeat"),
        (["--batch", "-1"], "--batch"),
        (["-T", "2.5"], "-T/--num-frames"),
        (["--backbone", "no_such_model"], "--backbone: timm has no model 'no_such_model'"),
        (["--size", "0", "16"], "--size"),
        (["--size", "32"], "--size"),
        (["--stages", "2,3"], "--stages"),
        (["--stages", "-1"], "--stages"),
        (["--only", "checks"], "--only"),
        (["--device", "tpu"], "--device"),
        (["--device", "auto"], "--device"),  # every script: cpu, cuda or cuda:N, default cuda if available
        (["--json", "/no/such/folder/x.json"], "--json"),
        (["--backbone", "test_resnet", "--stages", "9"], "--backbone test_resnet --stages 9"),
        (["--backbone", "test_resnet", "--stages", "layer9"], "--backbone test_resnet --stages layer9"),
        (["--backbone", "no_such_model"], "--backbone: timm has no model 'no_such_model'"),
    ],
)
def test_flops_refuses_a_wrong_flag_at_once(
    flops: types.ModuleType, capsys: Any, argv: list[str], flag: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        flops.parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:") and flag in err.splitlines()[-1]


@pytest.mark.parametrize(("old", "value"), [("--model", "test_resnet"), ("--frames", "3")])
def test_flops_refuses_the_spellings_of_0_1_by_name(
    flops: types.ModuleType, capsys: Any, old: str, value: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        flops.parse_args(["--size", "32", "16", old, value])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"unrecognized arguments: {old} {value}")


def test_stages_by_index_and_by_name(flops: types.ModuleType) -> None:
    args = flops.parse_args(["--backbone", "test_resnet", "--size", "32", "16", "--stages", "layer2", "3"])
    assert args.stages == ["layer2", 3]
    assert [shape[0] for shape in args.shapes] == ["layer2", "layer3"]


def test_plot_refused_without_scaling(flops: types.ModuleType, capsys: Any) -> None:
    with pytest.raises(SystemExit):
        flops.parse_args(["--only", "blocks", "--plot", "x.png"])
    assert "scaling" in capsys.readouterr().err


def test_plot_needs_matplotlib(flops: types.ModuleType, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: importing it fails
    with pytest.raises(SystemExit):
        flops.parse_args(["--plot", "x.png"])
    assert "pip install matplotlib" in capsys.readouterr().err


@pytest.mark.slow
def test_attention_only_runs() -> None:
    args = ["--clips", "1", "--positions", "64", "--extra-queries", "9", "--dim", "8", "--repeat", "1"]
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "attention_only.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "73 queries x 64 keys" in completed.stdout and "fused / materialized:" in completed.stdout


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--repeat", "0"], "--repeat"),
        (["--dim", "x"], "--dim"),
        (["--clips", "-2"], "--clips"),
        (["--positions", "8", "--extra-queries", "9"], "--extra-queries"),
    ],
)
def test_attention_only_refuses_a_wrong_flag_at_once(capsys: Any, argv: list[str], flag: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _load("attention_only").main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:") and flag in err.splitlines()[-1]


@pytest.mark.slow
def test_placements_counts_the_papers_model_and_every_placement(capsys: pytest.CaptureFixture) -> None:
    placements = _load("placements")
    rows = {row["placement"]: row for row in placements.main(["-T", "2", "--size", "64", "32"])}
    assert rows["Baseline (no block)"]["params"] == 24_792_128  # Table 3: 24.79 M
    assert rows["layer2, layer3 (paper)"]["params"] == 29_056_960  # Table 3: 29.06 M
    assert rows["every other block of layer3"]["stages"] == ["layer3.0", "layer3.2", "layer3.4"]
    assert rows["every block of layer3"]["blocks"] == 6 and rows["layer1 to layer4"]["blocks"] == 4
    baseline = rows["Baseline (no block)"]
    for row in rows.values():  # blocks only add: parameters, and MACs in both conventions
        assert row["macs_full"] >= row["macs_paper"] >= baseline["macs_paper"]
        assert (row["params"] > baseline["params"]) == bool(row["blocks"])
    printed = capsys.readouterr().out
    assert "torchvision:resnet50, 64x32, T=2" in printed and "every other block of layer2, layer3" in printed


@pytest.mark.slow
def test_train_step_benchmark_prints_each_variant_in_each_layout(capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script(BENCHMARKS / "train_step.py")
    script.main(["--steps", "2", "--smoke"])
    out = capsys.readouterr().out
    assert "on 1 thread(s): float32" in out and "bfloat16" in out
    for name in ("Baseline", "+MAE", "+BME", "+MAE+BME"):
        rows = [line for line in out.splitlines() if line.startswith(f"{name} ")]
        assert [layout in row for row, (layout, _, _) in zip(rows, script.LAYOUTS)] == [True] * 3


@pytest.mark.slow
def test_embed_benchmark_times_each_backend_against_eager(capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script(BENCHMARKS / "embed.py")
    argv = [
        "--smoke",
        "--backends",
        "eager",
        "channels-last",
        "onnxruntime",
        "--repeats",
        "1",
        "--threads",
        "1",
    ]
    result = script.main(argv)
    rows = {(row["backend"], row["batch"]): row for row in result["rows"]}
    assert sorted(rows) == [(b, n) for b in ("channels-last", "eager", "onnxruntime") for n in (1, 2)]
    assert all(row["clips_per_s"] > 0 and row["max_abs_diff"] < 1e-4 for row in rows.values())
    assert rows["eager", 2]["max_abs_diff"] == 0  # eager against itself
    printed = capsys.readouterr().out
    assert "VideoReIDNet(test_resnet, +MAE+BME at stages 2 and 3), T=4, 32x16" in printed
    assert (
        len([line for line in printed.splitlines() if line.startswith(("eager ", "channels-last ", "onnx"))])
        == 6
    )
