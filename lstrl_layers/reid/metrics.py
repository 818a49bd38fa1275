"""Standard ReID evaluation: query-gallery distances, CMC (rank-k) and mAP.

Protocol (as in the MARS and iLIDS-VID evaluations): for each query the gallery is ranked by distance, then

- gallery entries of the **same identity and the same camera** as the query are removed (they are not
  cross-camera matches; this also removes the query itself when the gallery contains it);
- gallery entries with a **junk identity** (``junk_ids``, e.g. ``-1`` in MARS) are removed; distractors
  (MARS identity ``0``) stay, as negatives;
- a query with no remaining true match (or whose own identity is junk) cannot be scored: it is **skipped**
  and counted in :attr:`ReIDResult.num_skipped`.

CMC at rank ``k`` is the fraction of the scored queries with a true match among the first ``k`` remaining
entries; AP is the mean, over the query's true matches, of the precision at each match's rank; mAP averages
AP over scored queries. Equal distances keep the gallery order (stable sort).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ReIDResult", "evaluate_ranking", "pairwise_distances"]


def pairwise_distances(query: Tensor, gallery: Tensor, metric: str = "euclidean") -> Tensor:
    """Distances ``(Q, G)`` between query ``(Q, D)`` and gallery ``(G, D)`` features, in float32.

    ``metric``: ``"euclidean"`` or ``"cosine"`` (``1 - cosine similarity``).
    """
    query, gallery = query.float(), gallery.float()
    if metric == "euclidean":
        return torch.cdist(query, gallery)
    if metric == "cosine":
        return 1.0 - F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).t()
    raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")


@dataclass
class ReIDResult:
    """CMC and mAP over the scored queries (fractions in ``[0, 1]``)."""

    cmc: np.ndarray  # cmc[k - 1] = rank-k accuracy, k = 1..max_rank
    mAP: float
    num_queries: int
    num_skipped: int  # queries without any valid match in the gallery
    ranks: tuple[int, ...] = field(default=(1, 5, 10, 20))

    def rank(self, k: int) -> float:
        """Rank-``k`` accuracy (CMC at ``k``); ranks beyond ``max_rank`` are not computed."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank must be in 1..{len(self.cmc)}, got {k}")
        return float(self.cmc[k - 1])

    def as_dict(self) -> dict[str, float | int]:
        """``{"mAP", "rank1", "rank5", ..., "num_queries", "num_skipped"}`` (ranks up to ``max_rank``)."""
        out: dict[str, float | int] = {"mAP": self.mAP}
        out.update({f"rank{k}": self.rank(k) for k in self.ranks if k <= len(self.cmc)})
        out.update(num_queries=self.num_queries, num_skipped=self.num_skipped)
        return out

    def __str__(self) -> str:
        ranks = ", ".join(f"R-{k} {100 * self.rank(k):.1f}" for k in self.ranks if k <= len(self.cmc))
        skipped = f" ({self.num_skipped} skipped: no match)" if self.num_skipped else ""
        scored = self.num_queries - self.num_skipped
        return f"mAP {100 * self.mAP:.1f}, {ranks} over {scored} queries{skipped}"


def _as_numpy(values: Tensor | np.ndarray | Sequence[int] | Sequence[Sequence[float]]) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def evaluate_ranking(
    distances: Tensor | np.ndarray | Sequence[Sequence[float]],
    query_ids: Tensor | np.ndarray | Sequence[int],
    gallery_ids: Tensor | np.ndarray | Sequence[int],
    query_cams: Tensor | np.ndarray | Sequence[int],
    gallery_cams: Tensor | np.ndarray | Sequence[int],
    max_rank: int = 20,
    junk_ids: Iterable[int] = (-1,),
) -> ReIDResult:
    """CMC up to ``max_rank`` and mAP of a ``(Q, G)`` distance matrix (smaller is closer).

    See the module docstring for the protocol. ``junk_ids``: identities that are neither matches nor
    negatives (MARS: ``(-1,)``; ``()`` for none). A query with fewer than ``max_rank`` valid gallery
    entries counts as matched at the ranks beyond them if it matched at all.
    """
    dist = _as_numpy(distances).astype(np.float64)
    q_ids, g_ids = _as_numpy(query_ids).astype(np.int64), _as_numpy(gallery_ids).astype(np.int64)
    q_cams, g_cams = _as_numpy(query_cams).astype(np.int64), _as_numpy(gallery_cams).astype(np.int64)
    if dist.shape != (len(q_ids), len(g_ids)) or len(q_cams) != len(q_ids) or len(g_cams) != len(g_ids):
        raise ValueError(
            f"distances {dist.shape} must be (len(query_ids), len(gallery_ids)) = "
            f"({len(q_ids)}, {len(g_ids)}), with as many query cams ({len(q_cams)}) and gallery cams "
            f"({len(g_cams)})"
        )
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    junk_ids = np.fromiter(junk_ids, dtype=np.int64)
    junk = np.isin(g_ids, junk_ids)
    cmc_sum = np.zeros(max_rank)
    average_precisions = []
    for q in range(len(q_ids)):
        order = np.argsort(dist[q], kind="stable")
        excluded = junk[order] | ((g_ids[order] == q_ids[q]) & (g_cams[order] == q_cams[q]))
        matches = (g_ids[order] == q_ids[q])[~excluded]
        if q_ids[q] in junk_ids or not matches.any():
            continue
        first_hit = int(np.argmax(matches))
        if first_hit < max_rank:
            cmc_sum[first_hit:] += 1
        hit_ranks = np.flatnonzero(matches) + 1  # 1-based ranks of the true matches
        precision_at_hits = np.arange(1, len(hit_ranks) + 1) / hit_ranks
        average_precisions.append(float(precision_at_hits.mean()))
    scored = len(average_precisions)
    return ReIDResult(
        cmc=cmc_sum / max(scored, 1),
        mAP=float(np.mean(average_precisions)) if scored else 0.0,
        num_queries=len(q_ids),
        num_skipped=len(q_ids) - scored,
    )
