"""The benchmark's figures as plain-text tables, each next to the figure of an earlier run (``--compare``).

With an earlier run, every row of a table is followed by the earlier run's row (``old``) and by the change
in percent (``=`` where the figure did not move). A row, figure or section that the earlier run lacks is
shown as such (``not in the old run``, ``missing``); rows only the earlier run has are listed after the table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Union

MISSING = "missing"  # a figure the earlier run's JSON lacks (written where the figure would be)
SECTIONS = {"table3": "Table 3", "blocks": "Blocks", "scaling": "Scaling", "throughput": "Throughput"}
DERIVED_SETTINGS = ("stage_shapes",)  # follow from the others: a difference there is one of theirs
Row = Mapping[str, Any]
Getter = Union[str, Callable[[Row], Any]]


@dataclass(frozen=True)
class Column:
    """One figure of each row: ``row[value]`` (or ``value(row)``) formatted with ``spec``; ``suffix(row)``
    is written after it (a footnote mark, a fraction); ``compare=False`` for constants (the paper's)."""

    header: str
    value: Getter
    spec: str = ".2f"
    suffix: Callable[[Row], str] | None = None
    compare: bool = True


def scaled(key: str, factor: float) -> Callable[[Row], float | None]:
    """``row[key] * factor`` (``None`` stays ``None``)."""
    return lambda row: None if row[key] is None else row[key] * factor


def quotient(numerator: str, denominator: str) -> Callable[[Row], float | None]:
    """``row[numerator] / row[denominator]`` (``None`` where either is ``None`` or the denominator is 0)."""
    return lambda row: (
        row[numerator] / row[denominator] if row[numerator] is not None and row[denominator] else None
    )


def figure(row: Any, value: Getter) -> Any:
    """The figure ``value`` of ``row``: a number, ``None`` (not measured) or ``MISSING``."""
    try:
        found = value(row) if callable(value) else row[value]
    except (KeyError, TypeError, ZeroDivisionError):  # an older or partial JSON
        return MISSING
    return found if found is None or _is_number(found) else MISSING


def lookup(results: Any, *keys: str) -> Any:
    """``results[k1][k2]...`` as a figure (``MISSING`` where a key is absent)."""
    for key in keys:
        if not isinstance(results, Mapping) or key not in results:
            return MISSING
        results = results[key]
    return results if results is None or _is_number(results) else MISSING


def text(value: Any, spec: str) -> str:
    """A figure as printed: ``-`` for ``None`` (not measured), ``missing`` for ``MISSING``."""
    if value is None:
        return "-"
    return format(value, spec) if _is_number(value) else str(value)


def change(new: Any, old: Any) -> str:
    """``new`` against ``old`` in percent; ``=`` where equal, empty where either is not a number."""
    if not (_is_number(new) and _is_number(old)):
        return ""
    if new == old:
        return "="
    return f"{new / old - 1:+.1%}" if old else ""


def versus(new: Any, spec: str, old: Mapping[str, Any] | None, *keys: str) -> str:
    """A figure in a sentence; with the earlier run's results ``old``, followed by its figure at ``keys`` and
    the change."""
    if old is None:
        return text(new, spec)
    before = lookup(old, *keys)
    moved = change(new, before)
    return f"{text(new, spec)} (old {text(before, spec)}{', ' + moved if moved else ''})"


def figure_table(
    first: str, columns: Sequence[Column], rows: Sequence[tuple[str, Row]], old: Mapping[str, Row] | None
) -> str:
    """A table of ``rows`` (label, row); with ``old`` (label -> the earlier run's row), each row is followed
    by the earlier one and the change of each figure."""
    body: list[list[str]] = []
    for label, row in rows:
        body.append([label, *(_cell(column, row) for column in columns)])
        if old is None:
            continue
        before = old.get(label)
        if before is None:
            body.append(["  old: not in the old run", *([""] * len(columns))])
            continue
        body.append(["  old", *(_cell(column, before) if column.compare else "" for column in columns)])
        body.append(
            [
                "  change",
                *(
                    change(figure(row, column.value), figure(before, column.value)) if column.compare else ""
                    for column in columns
                ),
            ]
        )
    lines = table([first, *(column.header for column in columns)], body)
    labels = {label for label, _ in rows}
    extra = [label for label in old or {} if label not in labels]
    return lines + (f"\nin the old run only: {', '.join(extra)}" if extra else "")


def absent(old: Mapping[str, Any] | None, section: str) -> str:
    """A note for a section's title when the earlier run lacks the section."""
    return " (not in the old run)" if old is not None and section not in old else ""


def keyed(items: Any, label: Callable[[Row], str]) -> dict[str, Row]:
    """The earlier run's rows by label (rows without one are left out)."""
    found = {}
    for item in items if isinstance(items, list) else []:
        try:
            found[label(item)] = item
        except (KeyError, TypeError):
            continue
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(column: Column, row: Row) -> str:
    value = figure(row, column.value)
    if column.suffix is None or not _is_number(value):
        return text(value, column.spec)
    try:
        return text(value, column.spec) + column.suffix(row)
    except (KeyError, TypeError):
        return text(value, column.spec)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def load_old(path: str) -> dict[str, Any]:
    """The results of an earlier run, as its ``--json`` wrote them.

    Raises:
        ValueError: ``path`` cannot be read, is not JSON, or not the JSON of this benchmark.
    """
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except OSError as error:
        raise ValueError(f"cannot read {path!r}: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path!r} is not JSON ({error})") from None
    problem = _problem(data)
    if problem:
        raise ValueError(f"{path!r} is not a JSON written by benchmarks/flops.py --json: {problem}")
    return current_names(data)


# what earlier versions of the benchmark wrote under another name: old key -> key
RENAMED_SETTINGS = {"model": "backbone", "frames": "num_frames"}
RENAMED_FIGURES = {"frames": "num_frames"}  # of each stage in "blocks" and each row in "scaling"


def current_names(data: dict[str, Any]) -> dict[str, Any]:
    """The results of an earlier run (``load_old``'s, checked) with the keys that earlier versions wrote under
    other names (``"model"``, ``"frames"``) renamed to today's, so that they compare with a new run."""

    def renamed(item: Any, names: Mapping[str, str]) -> Any:
        if not isinstance(item, dict):
            return item
        return {names[key] if key in names and names[key] not in item else key: v for key, v in item.items()}

    out = {**data, "settings": renamed(data["settings"], RENAMED_SETTINGS)}
    if "blocks" in data:
        out["blocks"] = [renamed(stage, RENAMED_FIGURES) for stage in data["blocks"]]
    if "scaling" in data:
        scaling = data["scaling"]
        out["scaling"] = {
            **scaling,
            "rows": [renamed(row, RENAMED_FIGURES) for row in scaling.get("rows", [])],
        }
    return out


def _problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"expected an object at the top, got {type(data).__name__}"
    for key in ("env", "settings"):
        if not isinstance(data.get(key), dict):
            return f"no {key!r} object"
    if not any(key in data for key in SECTIONS):
        return f"none of the sections {', '.join(map(repr, SECTIONS))}"
    scaling = data.get("scaling", {})
    if not isinstance(scaling, dict):
        return f"'scaling' is a {type(scaling).__name__}, expected an object"
    lists = {
        "table3": data.get("table3", []),
        "throughput": data.get("throughput", []),
        "blocks": data.get("blocks", []),
        "scaling.rows": scaling.get("rows", []),
    }
    if _objects(lists["blocks"]):
        lists.update({f"blocks[{i}].rows": stage.get("rows", []) for i, stage in enumerate(lists["blocks"])})
    for name, items in lists.items():
        if not _objects(items):
            return f"{name!r} is not a list of objects"
    return None


def _objects(items: Any) -> bool:
    return isinstance(items, list) and all(isinstance(item, dict) for item in items)


def _matmul_shape(env: Mapping[str, Any]) -> tuple[Any, Any]:
    """The precision and size of the matmul a run's GFLOP/s fractions are of (older runs: fp32 at 2048)."""
    return env.get("matmul_dtype", "float32"), env.get("matmul_size", 2048)


def matmul_text(env: Mapping[str, Any]) -> str:
    """The matmul rate that a run's GFLOP/s fractions are of, in words."""
    dtype, size = _matmul_shape(env)
    rate = env.get("matmul_gflops", env.get("matmul_2048_fp32_gflops"))
    rate_text = f"{rate:,.0f}" if isinstance(rate, (int, float)) else MISSING
    device = str(env.get("device", MISSING)).upper()
    return f"this {device}'s dense {dtype} {size}x{size} matmul ({rate_text} GFLOP/s)"


def print_header(results: Mapping[str, Any], old: Mapping[str, Any] | None, old_path: str | None) -> None:
    """Where and how the figures were measured; with ``old``, where the earlier run's were, and the settings
    that differ between the two."""
    env, settings = results["env"], results["settings"]
    matmul = versus(env["matmul_2048_fp32_gflops"], ".0f", old, "env", "matmul_2048_fp32_gflops")
    keys = ("cuda", "cudnn", "capability", "tf32_matmul", "tf32_cudnn")
    versions = ", ".join(f"{key} {env[key]}" for key in keys if key in env)
    print(
        f"torch {env['torch']}, {env['device']} ({env['device_name']}{', ' + versions if versions else ''}), "
        f"threads: {env['threads']}; dense fp32 matmul {matmul} GFLOP/s; load average "
        f"{env.get('load_average_start')} -> {env.get('load_average_end')}"
    )
    if "matmul_gflops" in env:
        comparable = old is not None and _matmul_shape(old["env"]) == _matmul_shape(env)
        rate = versus(env["matmul_gflops"], ",.0f", old if comparable else None, "env", "matmul_gflops")
        before = "" if old is None or comparable else f" (old run: {matmul_text(old['env'])})"
        print(
            f"GFLOP/s fractions are of the dense {env['matmul_dtype']} {env['matmul_size']}x"
            f"{env['matmul_size']} matmul, {rate} GFLOP/s{before}"
        )
    print(
        f"precision: {settings.get('dtype', 'float32')}"
        + (" under autocast (parameters in float32)" if settings.get("dtype", "float32") != "float32" else "")
        + f"; channels-last: {'yes' if settings.get('channels_last') else 'no'}"
        + f"; torch.compile: {'yes' if settings.get('compile') else 'no'}"
    )
    if env["busy"]:
        print(
            "WARNING: other processes were using the CPU (1-min load average above "
            f"{env['threads']} threads + 1 at the end, or above 1 at the start): the timings, their ratios "
            "and the fractions of matmul throughput are unreliable; rerun on an idle machine"
        )
    print(f"timing: {env['timing_method']}, {settings['repeat']} timed calls")
    print(f"peak memory: {env['memory_method']}")
    if old is None:
        return
    before = old["env"]
    print(
        f"old run ({old_path}): torch {before.get('torch', MISSING)}, {before.get('device', MISSING)} "
        f"({before.get('device_name', MISSING)}), threads: {before.get('threads', MISSING)}"
        + (f", {before['date']}" if "date" in before else "")
        + ("; its machine was busy, its timings are unreliable" if before.get("busy") else "")
    )
    differ = [
        f"{key} {settings.get(key)} (old {old['settings'].get(key, MISSING)})"
        for key in dict.fromkeys([*settings, *old["settings"]])
        if key not in DERIVED_SETTINGS and settings.get(key) != old["settings"].get(key)
    ]
    if differ:
        print(
            f"settings differ from the old run: {', '.join(differ)}; "
            "the figures they change measure other work"
        )
