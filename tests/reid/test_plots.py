"""CMC curves and ranked lists: the rows picked (by hand), the PNG files written, the arguments refused."""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from lstrl_layers.reid import RankedRow, evaluate_ranking, plot_cmc, plot_ranked, ranked_rows

# gallery: identity, camera
G_PIDS = [1, 2, 1, -1, 3, 1, 2]  # g3: junk
G_CAMIDS = [1, 1, 0, 1, 2, 2, 2]
Q_PIDS = [1, 2, 4, -1, 3, 3]  # q2: no match in the gallery; q3: junk
Q_CAMIDS = [0, 0, 0, 0, 0, 1]
ORDERS = [  # each query's gallery order, closest first
    [3, 2, 1, 0, 4, 5, 6],  # g3 junk, g2 same identity and camera: g1, g0 (hit), g4, g5 (hit), g6
    [6, 0, 1, 3, 2, 4, 5],  # g6 (hit), g0, g1 (hit), g2, g4, g5
    [0, 1, 2, 3, 4, 5, 6],
    [0, 1, 2, 3, 4, 5, 6],
    [0, 1, 2, 3, 5, 6, 4],  # g0, g1, g2, g5, g6, g4 (hit)
    [0, 1, 2, 3, 5, 6, 4],  # the same list (g4 is in another camera than q5's): the same AP as q4
]
DIST = np.array([np.argsort(order) for order in ORDERS], dtype=float)  # dist[q, g] = g's place in q's order
ARGS = (DIST, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS)


def test_ranked_rows_worst_first_by_hand() -> None:
    rows = ranked_rows(*ARGS, num_queries=8, top_k=3)
    assert rows == [
        RankedRow(4, (0, 1, 2), (False, False, False), 1 / 6),  # its only match at rank 6
        RankedRow(5, (0, 1, 2), (False, False, False), 1 / 6),  # the same AP: query order
        RankedRow(0, (1, 0, 4), (False, True, False), (1 / 2 + 2 / 4) / 2),
        RankedRow(1, (6, 0, 1), (True, False, True), (1 + 2 / 3) / 2),
    ]  # q2 and q3 are skipped, as evaluate_ranking skips them
    assert np.mean([row.average_precision for row in rows]) == pytest.approx(evaluate_ranking(*ARGS).mAP)


def test_ranked_rows_cut_to_num_queries_and_to_the_entries_left() -> None:
    rows = ranked_rows(*ARGS, num_queries=2, top_k=10)
    assert [row.query for row in rows] == [4, 5]
    assert rows[0].gallery == (0, 1, 2, 5, 6, 4) and rows[0].matches == (False,) * 5 + (True,)
    assert ranked_rows(*ARGS, junk_ids=())[0] == RankedRow(
        4, (0, 1, 2, 3, 5, 6, 4), (False,) * 6 + (True,), 1 / 7
    )  # g3 is a negative now


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(num_queries=0), ValueError, "num_queries must be an int >= 1, got 0"),
        (dict(top_k=1.5), TypeError, r"top_k must be an int >= 1, got 1.5 \(float\)"),
        (dict(query_pids=[7] * 6), ValueError, "no query has a valid match in the gallery"),
        (dict(distances=DIST[:, :3]), ValueError, r"distances \(6, 3\) must be"),
    ],
)
def test_ranked_rows_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    arguments = dict(zip(("distances", "query_pids", "gallery_pids", "query_camids", "gallery_camids"), ARGS))
    with pytest.raises(error, match=match):
        ranked_rows(**(arguments | kwargs))


def png_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a PNG file, after checking that it decodes."""
    image = pytest.importorskip("matplotlib.image")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert image.imread(path).shape[:2] == (height, width)
    return width, height


def recording_frames(
    calls: list[int], shape: tuple[int, int, int] = (3, 32, 16)
) -> Callable[[int], torch.Tensor]:
    def frame(index: int) -> torch.Tensor:
        calls.append(index)
        return torch.full(shape, (index % 10) / 10)

    return frame


def test_plot_ranked_draws_the_rows_and_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    query_calls: list[int] = []
    gallery_calls: list[int] = []
    path = tmp_path / "pictures" / "ranked.png"  # the folder is created
    rows = plot_ranked(
        *ARGS, recording_frames(query_calls), recording_frames(gallery_calls), path, num_queries=3, top_k=3
    )
    assert rows == ranked_rows(*ARGS, num_queries=3, top_k=3)
    assert query_calls == [4, 5, 0] and gallery_calls == [0, 1, 2, 0, 1, 2, 1, 0, 4]
    assert png_size(path) == (120 * 4, 240 * 3)
    assert [p.name for p in path.parent.iterdir()] == ["ranked.png"]  # no temporary file left


def test_plot_ranked_with_short_rows_and_few_queries(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "ranked.png"
    calls: list[int] = []
    rows = plot_ranked(*ARGS, recording_frames([]), recording_frames(calls, (3, 20, 20)), str(path), top_k=8)
    assert len(rows) == 4 and len(calls) == 6 + 6 + 5 + 6  # each row holds the entries left, up to 8
    assert png_size(path) == (120 * 9, 240 * 4)


def good_frame(index: int) -> torch.Tensor:
    return torch.zeros(3, 8, 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            dict(query_frames="frames/"),
            TypeError,
            r"query_frames must be a function .* got 'frames/' \(str\)",
        ),
        (
            dict(gallery_frames=lambda i: torch.zeros(8, 4, 3)),
            ValueError,
            r"gallery_frames\(0\) must return a floating-point \(3, H, W\) tensor in \[0, 1\], "
            r"got shape \(8, 4, 3\)",
        ),
        (
            dict(query_frames=lambda i: torch.full((3, 8, 4), 255.0)),
            ValueError,
            r"query_frames\(4\) must return .* got values from 255.0 to 255.0",
        ),
        (
            dict(gallery_frames=lambda i: torch.zeros(3, 8, 4, dtype=torch.uint8)),
            TypeError,
            r"gallery_frames\(0\) must return .* got a torch.uint8 tensor",
        ),
        (
            dict(query_frames=lambda i: np.zeros((3, 8, 4))),
            TypeError,
            r"query_frames\(4\) must return .* got array",
        ),
        (dict(path="ranked.jpg"), ValueError, r"path must name a .png file .* got 'ranked.jpg'"),
        (dict(path=3), TypeError, r"path must be a file path \(str or pathlib.Path\), got 3 \(int\)"),
        (dict(top_k=0), ValueError, "top_k must be an int >= 1, got 0"),
    ],
)
def test_plot_ranked_bad_arguments_leave_the_previous_file(
    tmp_path: Path, kwargs: dict, error: type[Exception], match: str
) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "ranked.png"
    path.write_bytes(b"previous")
    arguments = dict(zip(("distances", "query_pids", "gallery_pids", "query_camids", "gallery_camids"), ARGS))
    arguments |= dict(query_frames=good_frame, gallery_frames=good_frame, path=path)
    with pytest.raises(error, match=match):
        plot_ranked(**(arguments | kwargs))
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["ranked.png"]


def test_plot_cmc_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plain = evaluate_ranking(*ARGS)
    reversed_order = evaluate_ranking(-DIST, *ARGS[1:])
    path = tmp_path / "cmc.png"
    path.write_bytes(b"previous")
    plot_cmc({"plain": plain, "reversed": reversed_order}, path, max_rank=5)
    assert png_size(path) == (640, 480)
    plot_cmc({"plain": plain}, tmp_path / "new" / "one.PNG")
    assert png_size(tmp_path / "new" / "one.PNG") == (640, 480)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cmc.png", "new", "one.PNG"]


@pytest.mark.parametrize(
    ("results", "kwargs", "error", "match"),
    [
        ([], {}, TypeError, r"results must map names to ReIDResult, e.g. \{'plain': result\}, got \[\]"),
        ({}, {}, ValueError, "results must hold at least one named ReIDResult, got an empty mapping"),
        (
            {"plain": 0.5},
            {},
            TypeError,
            r"results must map names \(str\) to ReIDResult, got 'plain' \(str\): float",
        ),
        (None, dict(max_rank=21), ValueError, r"got 21 while 'plain' has its CMC up to rank 20"),
        (None, dict(max_rank=0), ValueError, "max_rank must be an int >= 1, got 0"),
        (None, dict(path=Path("cmc.svg")), ValueError, "path must name a .png file"),
    ],
)
def test_plot_cmc_bad_arguments(
    tmp_path: Path, results: object, kwargs: dict, error: type[Exception], match: str
) -> None:
    valid = {"plain": evaluate_ranking(*ARGS)}
    arguments = dict(results=valid if results is None else results, path=tmp_path / "cmc.png") | kwargs
    with pytest.raises(error, match=match):
        plot_cmc(**arguments)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_the_package_imports_without_matplotlib() -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from lstrl_layers.reid import plot_cmc, ranked_rows, evaluate_ranking\n"
        "result = evaluate_ranking([[0.1, 0.2]], [1], [1, 2], [0], [1, 1])\n"
        "try:\n"
        "    plot_cmc({'plain': result}, 'cmc.png')\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("the ReID pictures need matplotlib: pip install matplotlib")
