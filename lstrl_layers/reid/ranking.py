"""The gallery ranked for each query, as the ReID evaluation and its pictures see it.

:func:`check_ranking` turns a ``(Q, G)`` distance matrix (smaller is closer) and the identities (``pid``) and
cameras (``camid``) of the query and gallery entries into checked :class:`RankingInputs`;
:func:`scored_rankings` ranks the gallery for each query, closest first, after the standard exclusions (MARS,
iLIDS-VID):

- gallery entries of the **same identity and the same camera** as the query are removed (they are not
  cross-camera matches; this also removes the query itself when the gallery contains it);
- gallery entries with a **junk identity** (``junk_ids``, e.g. ``-1`` in MARS) are removed; distractors
  (MARS identity ``0``) stay, as negatives;
- a query with no remaining true match (or whose own identity is junk) cannot be scored and is left out.

Equal distances keep the gallery order (stable sort). A distance of ``+inf`` ranks a pair last (use it to
mask pairs out); NaN has no rank and is refused. :mod:`~lstrl_layers.reid.metrics` averages
:func:`average_precision` and :func:`inverse_negative_penalty` over the scored queries;
:mod:`~lstrl_layers.reid.plots` draws the worst ones.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from torch import Tensor

from .._checks import got, integer_labels

__all__ = [
    "RankingInputs",
    "ScoredQuery",
    "average_precision",
    "check_ranking",
    "inverse_negative_penalty",
    "nothing_to_score",
    "scored_rankings",
]


@dataclass(frozen=True)
class RankingInputs:
    """The checked inputs of a ranking, as NumPy arrays (made by :func:`check_ranking`)."""

    distances: np.ndarray  # (Q, G) float64, no NaN
    query_pids: np.ndarray  # (Q,) int64
    gallery_pids: np.ndarray  # (G,) int64
    query_camids: np.ndarray  # (Q,) int64
    gallery_camids: np.ndarray  # (G,) int64
    junk_ids: np.ndarray  # identities that are neither matches nor negatives, int64


class ScoredQuery(NamedTuple):
    """One query's ranked gallery, as :func:`scored_rankings` yields it.

    ``gallery``: the indices of the gallery entries left after the exclusions, closest first; ``matches``:
    which of them are true matches (at least one is).
    """

    query: int
    gallery: np.ndarray
    matches: np.ndarray


def _as_distances(distances: object) -> np.ndarray:
    """A 2-D real-valued distance matrix as float64; NaN refused, +-inf kept (they rank first / last)."""
    if isinstance(distances, Tensor):
        array = distances.detach().cpu().numpy()
    elif isinstance(distances, (str, bytes, Mapping)):
        raise TypeError(f"distances must be a (Q, G) matrix of numbers, got {got(distances)}")
    else:
        array = np.asarray(distances)
    if array.dtype.kind not in "iuf":  # bool, complex, str, object
        raise TypeError(f"distances must be a (Q, G) matrix of real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"distances must be a (Q, G) matrix, got shape {tuple(array.shape)}")
    array = array.astype(np.float64)
    nan = np.isnan(array)
    if nan.any():
        q, g = (int(i) for i in np.argwhere(nan)[0])
        raise ValueError(
            f"distances must not hold NaN, got {int(nan.sum())} NaN (the first at query {q}, gallery {g}); "
            "use +inf to rank a pair last"
        )
    return array


def check_ranking(
    distances: object,
    query_pids: object,
    gallery_pids: object,
    query_camids: object,
    gallery_camids: object,
    junk_ids: object = (-1,),
) -> RankingInputs:
    """The distances, identities and cameras of a ranking, checked, as :class:`RankingInputs`.

    Args:
        distances: ``(Q, G)`` real numbers (a tensor, an array or nested lists); ``+inf`` allowed, NaN not.
        query_pids: the ``Q`` query identities; integers (a tensor, an array or a list; whole-number floats
            such as ``2.0`` are accepted, ``1.7`` is refused rather than truncated). The same for
            ``gallery_pids`` (``G``), ``query_camids`` (``Q``) and ``gallery_camids`` (``G``).
        junk_ids: identities that are neither matches nor negatives (MARS: ``(-1,)``; ``()`` for none).

    Raises:
        TypeError: non-numeric distances, identities or cameras that are not integers, ``junk_ids`` not a
            list of ints.
        ValueError: NaN distances, shapes that do not match, an empty query set or gallery.
    """
    dist = _as_distances(distances)
    q_pids, g_pids = integer_labels("query_pids", query_pids), integer_labels("gallery_pids", gallery_pids)
    q_camids = integer_labels("query_camids", query_camids)
    g_camids = integer_labels("gallery_camids", gallery_camids)
    if (
        dist.shape != (len(q_pids), len(g_pids))
        or len(q_camids) != len(q_pids)
        or len(g_camids) != len(g_pids)
    ):
        raise ValueError(
            f"distances {dist.shape} must be (len(query_pids), len(gallery_pids)) = "
            f"({len(q_pids)}, {len(g_pids)}), with as many query_camids ({len(q_camids)}) and gallery_camids "
            f"({len(g_camids)})"
        )
    if dist.size == 0:
        raise ValueError(
            f"the query set and the gallery must not be empty, got distances of shape {dist.shape}"
        )
    if isinstance(junk_ids, (str, bytes)) or not isinstance(junk_ids, Iterable):
        raise TypeError(f"junk_ids must be a list of identities, e.g. (-1,) or (), got {got(junk_ids)}")
    junk = list(junk_ids)
    if not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in junk):
        raise TypeError(f"junk_ids must hold integer identities, got {junk!r}")
    return RankingInputs(dist, q_pids, g_pids, q_camids, g_camids, np.array(junk, dtype=np.int64))


def scored_rankings(ranking: RankingInputs) -> Iterator[ScoredQuery]:
    """The ranked gallery of each query that can be scored, in query order (see the module docstring)."""
    junk = np.isin(ranking.gallery_pids, ranking.junk_ids)
    for q, (pid, camid) in enumerate(zip(ranking.query_pids, ranking.query_camids)):
        if pid in ranking.junk_ids:
            continue
        order = np.argsort(ranking.distances[q], kind="stable")
        same = ranking.gallery_pids[order] == pid
        kept = order[~(junk[order] | (same & (ranking.gallery_camids[order] == camid)))]
        matches = ranking.gallery_pids[kept] == pid
        if matches.any():
            yield ScoredQuery(q, kept, matches)


def average_precision(matches: np.ndarray) -> float:
    """The mean, over the true matches of a ranked list (``matches``, closest first), of the precision at
    each match's rank.

    Example:
        >>> average_precision(np.array([False, True, True]))  # (1/2 + 2/3) / 2
        0.5833333333333333
    """
    hit_ranks = np.flatnonzero(matches) + 1  # 1-based ranks of the true matches
    return float((np.arange(1, len(hit_ranks) + 1) / hit_ranks).mean())


def inverse_negative_penalty(matches: np.ndarray) -> float:
    """The number of true matches of a ranked list (``matches``, closest first) over the rank of the last.

    Example:
        >>> inverse_negative_penalty(np.array([False, True, True]))  # 2 matches, the last at rank 3
        0.6666666666666666
    """
    hit_ranks = np.flatnonzero(matches) + 1
    return float(len(hit_ranks) / hit_ranks[-1])


def nothing_to_score(ranking: RankingInputs) -> ValueError:
    """The error to raise for a ranking in which no query has a valid match (nothing to average)."""
    return ValueError(
        f"no query has a valid match in the gallery ({len(ranking.query_pids)} queries, "
        f"{len(ranking.gallery_pids)} gallery entries): a match needs the query's identity, a camera other "
        f"than the query's, and an identity not in junk_ids={tuple(int(i) for i in ranking.junk_ids)}; check "
        "that the query and gallery identities belong together"
    )
