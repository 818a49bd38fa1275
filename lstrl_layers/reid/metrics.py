"""Standard ReID evaluation: query-gallery distances, CMC (rank-k) and mAP.

Protocol (as in the MARS and iLIDS-VID evaluations; :mod:`~lstrl_layers.reid.ranking` implements the ranking
and its exclusions): for each query the gallery is ranked by distance, then

- gallery entries of the **same identity and the same camera** as the query are removed (they are not
  cross-camera matches; this also removes the query itself when the gallery contains it);
- gallery entries with a **junk identity** (``junk_ids``, e.g. ``-1`` in MARS) are removed; distractors
  (MARS identity ``0``) stay, as negatives;
- a query with no remaining true match (or whose own identity is junk) cannot be scored: it is **skipped**
  and counted in :attr:`ReIDResult.num_skipped`. If no query at all can be scored (an empty gallery, or one
  without any cross-camera match), there is nothing to average and :func:`evaluate_ranking` raises.

CMC at rank ``k`` is the fraction of the scored queries with a true match among the first ``k`` remaining
entries; AP is the mean, over the query's true matches, of the precision at each match's rank; mAP averages
AP over scored queries. INP (inverse negative penalty, Ye et al., "Deep Learning for Person
Re-identification: A Survey and Outlook", TPAMI 2021) is the number of the query's true matches divided by
the rank of its last (hardest) one, i.e. the precision at that rank: how much of the list must be read to
find every match; mINP averages INP over scored queries. INP is not bounded by AP (true matches at ranks 2
and 3: AP 7/12, INP 2/3). Equal distances keep the gallery order (stable sort). A distance of ``+inf`` ranks
a pair last (use it to mask pairs out); NaN has no rank and is refused.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_float, check_int, got
from .losses import euclidean_distances
from .ranking import (
    average_precision,
    check_ranking,
    inverse_negative_penalty,
    nothing_to_score,
    scored_rankings,
)

__all__ = ["ReIDResult", "evaluate_ranking", "pair_auc", "pairwise_distances"]


def pairwise_distances(query: Tensor, gallery: Tensor, metric: str = "euclidean") -> Tensor:
    """Distances ``(Q, G)`` between query ``(Q, D)`` and gallery ``(G, D)`` features, in float32.

    ``metric``: ``"euclidean"`` (:func:`~lstrl_layers.reid.losses.euclidean_distances`, the triplet loss's
    distance) or ``"cosine"`` (``1 - cosine similarity``).

    Raises:
        TypeError: a feature set that is not a floating-point tensor.
        ValueError: not 2-D, different ``D``, non-finite features (NaN / inf give NaN distances), or an
            unknown ``metric``.
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    for name, features in (("query", query), ("gallery", gallery)):
        if not isinstance(features, Tensor) or not features.is_floating_point():
            kind = f"a {features.dtype} tensor" if isinstance(features, Tensor) else type(features).__name__
            raise TypeError(f"{name} must be a floating-point tensor of features (N, D), got {kind}")
        if features.ndim != 2:
            raise ValueError(f"{name} must be features (N, D), got shape {tuple(features.shape)}")
        bad = int((~torch.isfinite(features)).sum())
        if bad:
            raise ValueError(
                f"{name} must hold finite features, got {bad} NaN or inf values "
                f"in shape {tuple(features.shape)}"
            )
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query and gallery must have the same feature size D, got {tuple(query.shape)} and "
            f"{tuple(gallery.shape)}"
        )
    if metric == "euclidean":
        return euclidean_distances(query, other=gallery)
    query, gallery = query.float(), gallery.float()
    return 1.0 - F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).t()


@dataclass
class ReIDResult:
    """CMC, mAP and mINP over the scored queries (fractions in ``[0, 1]``)."""

    cmc: np.ndarray  # cmc[k - 1] = rank-k accuracy, k = 1..max_rank
    mAP: float
    mINP: float  # mean inverse negative penalty: matches / rank of the last match, averaged
    num_queries: int
    num_skipped: int  # queries without any valid match in the gallery
    ranks: tuple[int, ...] = field(default=(1, 5, 10, 20))

    def rank(self, k: int) -> float:
        """Rank-``k`` accuracy (CMC at ``k``); ranks beyond ``max_rank`` are not computed."""
        check_int("k", k)
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank must be in 1..{len(self.cmc)}, got {k}")
        return float(self.cmc[k - 1])

    def as_dict(self) -> dict[str, float | int]:
        """``{"mAP", "mINP", "rank1", "rank5", ..., "num_queries", "num_skipped"}``, ranks to ``max_rank``."""
        out: dict[str, float | int] = {"mAP": self.mAP, "mINP": self.mINP}
        out.update({f"rank{k}": self.rank(k) for k in self.ranks if k <= len(self.cmc)})
        out.update(num_queries=self.num_queries, num_skipped=self.num_skipped)
        return out

    def __str__(self) -> str:
        ranks = ", ".join(f"R-{k} {100 * self.rank(k):.1f}" for k in self.ranks if k <= len(self.cmc))
        skipped = f" ({self.num_skipped} skipped: no match)" if self.num_skipped else ""
        scored = self.num_queries - self.num_skipped
        return f"mAP {100 * self.mAP:.1f}, mINP {100 * self.mINP:.1f}, {ranks} over {scored} queries{skipped}"


def evaluate_ranking(
    distances: Tensor | np.ndarray | Sequence[Sequence[float]],
    query_pids: Tensor | np.ndarray | Sequence[int],
    gallery_pids: Tensor | np.ndarray | Sequence[int],
    query_camids: Tensor | np.ndarray | Sequence[int],
    gallery_camids: Tensor | np.ndarray | Sequence[int],
    max_rank: int = 20,
    junk_ids: Iterable[int] = (-1,),
) -> ReIDResult:
    """CMC up to ``max_rank``, mAP and mINP of a ``(Q, G)`` distance matrix (smaller is closer).

    See the module docstring for the protocol. ``junk_ids``: identities that are neither matches nor
    negatives (MARS: ``(-1,)``; ``()`` for none). A query with fewer than ``max_rank`` valid gallery
    entries counts as matched at the ranks beyond them if it matched at all.

    Identities (``query_pids``, ``gallery_pids``) and cameras (``query_camids``, ``gallery_camids``) are
    integers (tensors, arrays or lists; whole-number floats such as ``2.0`` are accepted, ``1.7`` is refused
    rather than truncated). ``+inf`` distances are allowed (the pair ranks last); NaN is refused.

    Raises:
        TypeError: non-numeric distances, identities or cameras that are not integers, ``max_rank`` not an
            int.
        ValueError: NaN distances, shapes that do not match, an empty query set or gallery, or no query with
            a valid match in the gallery (nothing to score).
    """
    ranking = check_ranking(distances, query_pids, gallery_pids, query_camids, gallery_camids, junk_ids)
    check_int("max_rank", max_rank)
    cmc_sum = np.zeros(max_rank)
    average_precisions, inverse_negative_penalties = [], []
    for _, _, matches in scored_rankings(ranking):
        first_hit = int(np.argmax(matches))
        if first_hit < max_rank:
            cmc_sum[first_hit:] += 1
        average_precisions.append(average_precision(matches))
        inverse_negative_penalties.append(inverse_negative_penalty(matches))
    scored = len(average_precisions)
    if not scored:
        raise nothing_to_score(ranking)
    return ReIDResult(
        cmc=cmc_sum / scored,
        mAP=float(np.mean(average_precisions)),
        mINP=float(np.mean(inverse_negative_penalties)),
        num_queries=len(ranking.query_pids),
        num_skipped=len(ranking.query_pids) - scored,
    )


def pair_auc(
    distances: Tensor | np.ndarray | Sequence[Sequence[float]],
    query_pids: Tensor | np.ndarray | Sequence[int],
    gallery_pids: Tensor | np.ndarray | Sequence[int],
    query_camids: Tensor | np.ndarray | Sequence[int],
    gallery_camids: Tensor | np.ndarray | Sequence[int],
    partners: Mapping[int, int],
    tolerance: float = 1e-5,
) -> float:
    """How well queries tell their own identity from its partner's: a within-pair AUC in ``[0, 1]``.

    For a query of identity ``p`` in camera ``c``, its score is the probability that a random gallery entry
    of ``p`` and a random one of ``partners[p]``, both from cameras other than ``c``, are ranked in the
    right order (the own entry closer); ties count one half. The result is the mean over the queries that
    have entries of both. With pairs that share one appearance and play the same tracklets in opposite time
    order, a model that gives a clip and the clip played backwards the same embedding ties every comparison
    and scores exactly ``0.5``, whatever it has learnt; ``1.0`` separates every pair.

    ``tolerance``: distances that differ by at most this count as a tie, so that the float round-off of a
    model blind to the difference (about ``1e-7`` for cosine distances of float32 features) does not decide
    the comparison.

    Raises:
        TypeError: non-numeric distances, identities or cameras that are not integers, ``partners`` not a
            mapping of ints, a non-numeric ``tolerance``.
        ValueError: shapes that do not match, or no query with gallery entries of itself and its partner in
            other cameras.
    """
    ranking = check_ranking(distances, query_pids, gallery_pids, query_camids, gallery_camids, ())
    if not isinstance(partners, Mapping) or not all(
        isinstance(k, numbers.Integral) and isinstance(v, numbers.Integral) for k, v in partners.items()
    ):
        raise TypeError(f"partners must map identities (int) to identities (int), got {got(partners)}")
    check_float("tolerance", tolerance, "a float >= 0", low=0.0)
    scores = []
    for q, (pid, camid) in enumerate(zip(ranking.query_pids, ranking.query_camids)):
        if int(pid) not in partners:
            continue
        other_camera = ranking.gallery_camids != camid
        own = ranking.distances[q, other_camera & (ranking.gallery_pids == pid)]
        partner = ranking.distances[q, other_camera & (ranking.gallery_pids == partners[int(pid)])]
        if own.size and partner.size:
            difference = partner[None, :] - own[:, None]  # > 0: the own entry is closer
            wins = np.where(np.abs(difference) <= tolerance, 0.5, (difference > 0).astype(np.float64))
            scores.append(float(wins.mean()))
    if not scores:
        raise ValueError(
            f"no query has gallery entries of its own identity and of its partner in other cameras "
            f"({len(ranking.query_pids)} queries, {len(partners)} identities in partners)"
        )
    return float(np.mean(scores))
