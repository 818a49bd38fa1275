"""Pictures of a ReID evaluation: CMC curves, and the ranked gallery lists of the worst queries.

The drawing functions import matplotlib when called (it comes with the ``examples`` extra);
:func:`ranked_rows`, which picks what :func:`plot_ranked` draws, needs only NumPy. Every picture is a PNG
written atomically: to a temporary file in the same folder, then renamed over ``path``, so that a reader
never sees half a picture and a failed drawing leaves the previous file in place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from .._checks import check_int, got
from .._files import atomic_path
from .metrics import ReIDResult
from .ranking import RankingInputs, average_precision, check_ranking, nothing_to_score, scored_rankings

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["RankedRow", "plot_cmc", "plot_ranked", "ranked_rows"]

DPI = 100
CMC_SIZE = (6.4, 4.8)  # inches: 640 x 480 pixels
CELL_SIZE = (1.2, 2.4)  # inches per clip of plot_ranked: 120 x 240 pixels
_QUERY, _MATCH, _OTHER = "#1f77b4", "#2ca02c", "#d62728"  # frame colours: blue, green, red


class RankedRow(NamedTuple):
    """One query's row of :func:`plot_ranked`.

    ``gallery``: its closest gallery entries, closest first, after the exclusions of
    :func:`~lstrl_layers.reid.evaluate_ranking` (junk identities, same identity in the same camera);
    ``matches``: which of them are true matches; ``average_precision``: the query's AP over its whole list.
    """

    query: int
    gallery: tuple[int, ...]
    matches: tuple[bool, ...]
    average_precision: float


def ranked_rows(
    distances: Tensor | np.ndarray | Sequence[Sequence[float]],
    query_pids: Tensor | np.ndarray | Sequence[int],
    gallery_pids: Tensor | np.ndarray | Sequence[int],
    query_camids: Tensor | np.ndarray | Sequence[int],
    gallery_camids: Tensor | np.ndarray | Sequence[int],
    num_queries: int = 8,
    top_k: int = 10,
    junk_ids: Iterable[int] = (-1,),
) -> list[RankedRow]:
    """The ``num_queries`` worst queries, by AP (lowest first; equal APs in query order), with their
    ``top_k`` closest gallery entries: what :func:`plot_ranked` draws.

    Queries that :func:`~lstrl_layers.reid.evaluate_ranking` skips (no valid match, junk identity) are left
    out. Arguments as for :func:`~lstrl_layers.reid.evaluate_ranking`.

    Returns:
        At most ``num_queries`` rows; a row has fewer than ``top_k`` entries when fewer are left after the
        exclusions.

    Raises:
        TypeError: as :func:`~lstrl_layers.reid.evaluate_ranking`; ``num_queries`` or ``top_k`` not an int.
        ValueError: as :func:`~lstrl_layers.reid.evaluate_ranking`, including no query with a valid match;
            ``num_queries < 1`` or ``top_k < 1``.
    """
    ranking = check_ranking(distances, query_pids, gallery_pids, query_camids, gallery_camids, junk_ids)
    return _worst_rows(ranking, check_int("num_queries", num_queries), check_int("top_k", top_k))


def plot_cmc(results: Mapping[str, ReIDResult], path: str | os.PathLike[str], max_rank: int = 20) -> None:
    """CMC curves, one per named result (e.g. ``{"plain": r1, "re-ranked": r2}``), as a PNG.

    Ranks 1 to ``max_rank`` on the x axis, CMC in percent on the y axis; the title gives each result's mAP,
    mINP and rank-1. The picture is 640 x 480 pixels.

    Args:
        results: results of :func:`~lstrl_layers.reid.evaluate_ranking`, by the names of the legend.
        path: the ``.png`` file to write (its folder is created if missing).
        max_rank: the last rank drawn; every result must have been computed up to it.

    Raises:
        TypeError: ``results`` not a mapping of names to :class:`~lstrl_layers.reid.ReIDResult`; ``path``
            not a path; ``max_rank`` not an int.
        ValueError: no result; ``max_rank < 1`` or beyond a result's CMC; ``path`` not ending in ``.png``.
        ImportError: matplotlib is not installed.
    """
    if not isinstance(results, Mapping):
        raise TypeError(f"results must map names to ReIDResult, e.g. {{'plain': result}}, got {got(results)}")
    if not results:
        raise ValueError("results must hold at least one named ReIDResult, got an empty mapping")
    for name, result in results.items():
        if not isinstance(name, str) or not isinstance(result, ReIDResult):
            raise TypeError(
                f"results must map names (str) to ReIDResult, got {got(name)}: {type(result).__name__}"
            )
    check_int("max_rank", max_rank)
    for name, result in results.items():
        if max_rank > len(result.cmc):
            raise ValueError(
                f"max_rank must be at most the ranks computed, got {max_rank} while {name!r} has its CMC up "
                f"to rank {len(result.cmc)} (evaluate_ranking's max_rank)"
            )
    target = _png_path(path)
    figure = _figure(CMC_SIZE)
    from matplotlib.ticker import MaxNLocator

    axes = figure.add_subplot()
    ranks = np.arange(1, max_rank + 1)
    for name, result in results.items():
        axes.plot(ranks, 100 * np.asarray(result.cmc[:max_rank]), marker="o", markersize=3, label=name)
    axes.set_xlabel("rank")
    axes.set_ylabel("CMC (%)")
    axes.set_xlim(0.5, max_rank + 0.5)
    axes.set_ylim(top=100.5)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title(
        "\n".join(
            f"{name}: mAP {100 * r.mAP:.1f}%, mINP {100 * r.mINP:.1f}%, rank-1 {100 * r.cmc[0]:.1f}%"
            for name, r in results.items()
        ),
        fontsize=9,
    )
    _save(figure, target)


def plot_ranked(
    distances: Tensor | np.ndarray | Sequence[Sequence[float]],
    query_pids: Tensor | np.ndarray | Sequence[int],
    gallery_pids: Tensor | np.ndarray | Sequence[int],
    query_camids: Tensor | np.ndarray | Sequence[int],
    gallery_camids: Tensor | np.ndarray | Sequence[int],
    query_frames: Callable[[int], Tensor],
    gallery_frames: Callable[[int], Tensor],
    path: str | os.PathLike[str],
    num_queries: int = 8,
    top_k: int = 10,
    junk_ids: Iterable[int] = (-1,),
) -> list[RankedRow]:
    """The worst queries and their closest gallery entries, as a PNG: one row per query of
    :func:`ranked_rows` (lowest AP first), the query then its ``top_k`` entries after the exclusions of
    :func:`~lstrl_layers.reid.evaluate_ranking`; true matches framed green, others red, the query blue.

    Every clip is a 120 x 240 pixel cell: the picture is ``120 * (top_k + 1)`` pixels wide and ``240`` per
    row high. The frames are all fetched and checked before anything is drawn.

    ``distances``, ``query_pids``, ``gallery_pids``, ``query_camids``, ``gallery_camids`` and ``junk_ids``
    are as for :func:`~lstrl_layers.reid.evaluate_ranking`.

    Args:
        query_frames: query index -> one frame of that clip, a float ``(3, H, W)`` tensor in ``[0, 1]``.
        gallery_frames: gallery index -> one frame of that clip, likewise.
        path: the ``.png`` file to write (its folder is created if missing).
        num_queries: how many of the worst queries to draw (fewer if fewer can be scored).
        top_k: how many gallery entries to draw per query.

    Returns:
        The rows drawn, top to bottom.

    Raises:
        TypeError: as :func:`ranked_rows`; a frame source that is not callable, or a frame that is not a
            floating-point tensor; ``path`` not a path.
        ValueError: as :func:`ranked_rows`; a frame not ``(3, H, W)`` or outside ``[0, 1]``; ``path`` not
            ending in ``.png``.
        ImportError: matplotlib is not installed.
    """
    for name, frames in (("query_frames", query_frames), ("gallery_frames", gallery_frames)):
        if not callable(frames):
            raise TypeError(
                f"{name} must be a function from an index to a (3, H, W) frame tensor, got {got(frames)}"
            )
    target = _png_path(path)
    ranking = check_ranking(distances, query_pids, gallery_pids, query_camids, gallery_camids, junk_ids)
    rows = _worst_rows(ranking, check_int("num_queries", num_queries), check_int("top_k", top_k))
    images = [
        (
            _frame(query_frames, "query_frames", row.query),
            [_frame(gallery_frames, "gallery_frames", g) for g in row.gallery],
        )
        for row in rows
    ]
    figure = _figure((CELL_SIZE[0] * (top_k + 1), CELL_SIZE[1] * len(rows)))
    grid = figure.subplots(len(rows), top_k + 1, squeeze=False)
    for row, (query_image, gallery_images), cells in zip(rows, images, grid):
        q = row.query
        _cell(
            cells[0],
            query_image,
            f"query {q}\nid {ranking.query_pids[q]}, cam {ranking.query_camids[q]}\n"
            f"AP {100 * row.average_precision:.1f}%",
            _QUERY,
        )
        for rank, (g, match, image) in enumerate(zip(row.gallery, row.matches, gallery_images), start=1):
            title = f"{rank}: gallery {g}\nid {ranking.gallery_pids[g]}, cam {ranking.gallery_camids[g]}"
            _cell(cells[rank], image, title, _MATCH if match else _OTHER)
        for empty in cells[len(row.gallery) + 1 :]:
            empty.set_axis_off()
    _save(figure, target)
    return rows


def _worst_rows(ranking: RankingInputs, num_queries: int, top_k: int) -> list[RankedRow]:
    """:func:`ranked_rows` on checked arguments."""
    rows = [
        RankedRow(
            query=q,
            gallery=tuple(int(g) for g in gallery[:top_k]),
            matches=tuple(bool(m) for m in matches[:top_k]),
            average_precision=average_precision(matches),
        )
        for q, gallery, matches in scored_rankings(ranking)
    ]
    if not rows:
        raise nothing_to_score(ranking)
    rows.sort(key=lambda row: row.average_precision)  # stable: equal APs stay in query order
    return rows[:num_queries]


def _frame(frames: Callable[[int], Tensor], name: str, index: int) -> np.ndarray:
    """``frames(index)`` checked, as an ``(H, W, 3)`` float32 array for ``imshow``."""
    image = frames(index)
    expected = "a floating-point (3, H, W) tensor in [0, 1]"
    if not isinstance(image, Tensor) or not image.is_floating_point():
        kind = f"a {image.dtype} tensor" if isinstance(image, Tensor) else got(image)
        raise TypeError(f"{name}({index}) must return {expected}, got {kind}")
    if image.ndim != 3 or image.shape[0] != 3 or image.numel() == 0:
        raise ValueError(f"{name}({index}) must return {expected}, got shape {tuple(image.shape)}")
    image = image.detach().float().cpu()
    low, high = (float(v) for v in torch.aminmax(image))
    if not 0 <= low <= high <= 1:  # NaN fails too
        raise ValueError(f"{name}({index}) must return {expected}, got values from {low} to {high}")
    return rearrange(image, "c h w -> h w c").numpy()


def _cell(axes: Axes, image: np.ndarray, title: str, colour: str) -> None:
    """One clip: its frame, a title, and a coloured frame around it."""
    axes.imshow(image)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title, fontsize=7, color=colour)
    for spine in axes.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(4)


def _png_path(path: object) -> Path:
    """``path`` as a :class:`~pathlib.Path` to a ``.png`` file."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or pathlib.Path), got {got(path)}")
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise ValueError(f"path must name a .png file (the pictures are PNG), got {str(target)!r}")
    return target


def _figure(size: tuple[float, float]) -> Figure:
    """A matplotlib figure of ``size`` inches at :data:`DPI`, outside pyplot (no global state)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            f"the ReID pictures need matplotlib: pip install matplotlib, or the examples extra ({err})"
        ) from None
    return Figure(figsize=size, dpi=DPI, layout="constrained")


def _save(figure: Figure, path: Path) -> None:
    """``figure`` as a PNG at ``path``, atomically: a temporary file in the same folder, then a rename."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
