"""k-reciprocal re-ranking of a query-gallery distance matrix (Zhong et al., CVPR 2017).

"Re-ranking Person Re-identification with k-reciprocal Encoding" re-scores every query-gallery pair by how
much their neighbourhoods overlap. With ``N = Q + G`` entries (the queries, then the gallery) and the joint
``(N, N)`` distance matrix ``[[q_q, q_g], [q_gᵀ, g_g]]``, as in the authors' code and the widely used
implementations derived from it (torchreid, fast-reid):

1. The original distance ``d(i, j)`` is the squared distance divided by the largest squared distance to
   ``i`` (row ``i`` of the transposed matrix divided by its maximum; for symmetric inputs, row ``i``). A
   row of zeros stays zeros (the reference code divides 0 by 0 there).
2. ``N(i, k)``: the ``k + 1`` closest entries to ``i`` (``i`` itself, normally, first); equal distances keep
   the index order. ``R(i, k)``: the entries ``j`` of ``N(i, k)`` that have ``i`` in ``N(j, k)``.
3. The expanded set ``R*(i)`` is ``R(i, k1)`` plus, for every ``c`` in it, ``R(c, round(k1 / 2))`` when more
   than two thirds of that set lie in ``R(i, k1)`` (``round`` halves to even, as NumPy's ``around``).
4. ``V[i, j] = exp(-d(i, j))`` over ``j`` in ``R*(i)``, normalized to sum to 1 (0 elsewhere).
5. Local query expansion: with ``k2 > 1``, ``V[i]`` is replaced by the mean of ``V[j]`` over the ``k2``
   closest entries ``j`` of ``i`` (``i`` included).
6. The Jaccard distance ``1 - s / (2 - s)`` with ``s = sum_k min(V[i, k], V[j, k])``, and the result
   ``(1 - lambda_value) * jaccard + lambda_value * d``, for queries ``i`` and gallery entries ``j``.

Neighbourhoods are truncated to the ``N`` entries there are (``k1 + 1 > N`` takes all). No ``N x N``
matrix is built (the reference code holds several): the neighbour lists come from blocks of rows, ``V`` is
kept sparse (a few hundred entries a row at most), and the Jaccard step visits only the pairs of non-zero
entries that share a column. Beyond its inputs and its ``(Q, G)`` result, memory grows as ``N`` times the
neighbourhood sizes (MARS, ``Q = 1980``, ``G = 9330``: under 1 GB on top of the inputs, a few seconds on
two CPU cores).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange, reduce
from torch import Tensor

from .._checks import check_float, check_int

__all__ = ["RERANK_K1", "RERANK_K2", "RERANK_LAMBDA", "rerank"]

# the defaults of Zhong et al. (2017), used by every re-ranking in the package
RERANK_K1, RERANK_K2, RERANK_LAMBDA = 20, 6, 0.3

_BLOCK = 1 << 24  # elements per block of distance rows (64 MB in float32)
_PAIRS = 1 << 20  # pairs of non-zero entries of V per group in the Jaccard step
_NEGATIVE_TOLERANCE = 1e-5  # distances down to -1e-5 x the largest one are rounding errors


def rerank(
    q_g: Tensor,
    q_q: Tensor,
    g_g: Tensor,
    k1: int = RERANK_K1,
    k2: int = RERANK_K2,
    lambda_value: float = RERANK_LAMBDA,
) -> Tensor:
    """The k-reciprocal re-ranked ``(Q, G)`` distances (see the module docstring for the steps).

    Args:
        q_g: query-gallery distances, e.g. from :func:`~lstrl_layers.reid.pairwise_distances`.
        q_q: query-query distances.
        g_g: gallery-gallery distances.
        k1: size of the k-reciprocal neighbourhoods (the paper's 20).
        k2: size of the local query expansion (the paper's 6; 1 for none).
        lambda_value: weight of the original distance against the Jaccard distance (the paper's 0.3; 1 gives
            the normalized original distances back, 0 the Jaccard distance alone).

    Returns:
        The re-ranked distances, float32, on the device of the inputs; smaller is closer, in ``[0, 1]``.

    Shape:
        ``q_g``: ``(Q, G)``; ``q_q``: ``(Q, Q)``; ``g_g``: ``(G, G)``; the result: ``(Q, G)``.

    Raises:
        TypeError: a distance matrix that is not a floating-point tensor; ``k1``, ``k2`` not ints;
            ``lambda_value`` not a number.
        ValueError: shapes that do not fit together, an empty query set or gallery, inputs on different
            devices, NaN / inf or negative distances (rounding errors down to ``-1e-5`` times the largest
            distance pass), ``k1 < 1``, ``k2 < 1``, ``lambda_value`` outside ``[0, 1]``.
    """
    _check_distances(q_g, q_q, g_g)
    k1, k2 = check_int("k1", k1), check_int("k2", k2)
    lambda_value = check_float("lambda_value", lambda_value, "a number in [0, 1]", 0.0, 1.0)
    with torch.no_grad():
        return _rerank(q_g, q_q, g_g, k1, k2, lambda_value)


def _rerank(q_g: Tensor, q_q: Tensor, g_g: Tensor, k1: int, k2: int, lambda_value: float) -> Tensor:
    """:func:`rerank` on checked arguments."""
    num_query, num_gallery = q_g.shape
    total = num_query + num_gallery

    # steps 1 and 2: the k1 + 1 (and k2) nearest entries of every entry, by row blocks
    num_neighbours = min(max(k1 + 1, k2), total)
    step = max(1, _BLOCK // total)
    neighbours, row_max = [], []
    for start in range(0, total, step):
        rows = _squared_rows(q_g, q_q, g_g, start, min(start + step, total))
        row_max.append(rows.amax(dim=1).clamp_min(torch.finfo(rows.dtype).tiny))  # a row of zeros stays 0
        neighbours.append(_nearest(rows.div_(row_max[-1][:, None]), num_neighbours))
    nearest, scale = torch.cat(neighbours), torch.cat(row_max)
    near = nearest[:, : min(k1 + 1, total)]
    near_half = nearest[:, : min(round(k1 / 2) + 1, total)]
    reciprocal, reciprocal_half = _reciprocal(near), _reciprocal(near_half)

    # steps 3 and 4: the expanded sets R*(i) and their Gaussian weights: row i of V, as a short list
    members = torch.cat(
        [
            _expanded_sets(
                torch.arange(start, min(start + step, total), device=q_g.device),
                near,
                reciprocal,
                near_half,
                reciprocal_half,
            )
            for start in range(0, total, step)
        ]
    )
    width = int((members < total).sum(dim=1).max())  # the members come first in each row
    v_index = members[:, :width].clamp_max(total - 1)  # unused slots: weight 0
    rows = torch.arange(total, device=q_g.device)[:, None].expand_as(v_index)
    original = _squared_at(q_g, q_q, g_g, rows, v_index) / scale[:, None]
    v_weight = torch.where(members[:, :width] < total, torch.exp(-original), 0.0)
    v_weight = v_weight / v_weight.sum(dim=1, keepdim=True).clamp_min(torch.finfo(v_weight.dtype).tiny)

    # step 5: local query expansion, the mean of the rows of the k2 nearest entries
    if k2 != 1:
        expansion = nearest[:, : min(k2, total)]
        v_index = rearrange(v_index[expansion], "n k l -> n (k l)")
        v_weight = rearrange(v_weight[expansion], "n k l -> n (k l)") / expansion.shape[1]

    # step 6: Jaccard distances of the queries to the gallery entries, mixed with the original distances
    overlap = _overlap(v_index, v_weight, num_query)
    jaccard = 1 - overlap / (2 - overlap)
    original = torch.cat(
        [
            _squared_rows(q_g, q_q, g_g, start, min(start + step, num_query))[:, num_query:]
            / scale[start : min(start + step, num_query), None]
            for start in range(0, num_query, step)
        ]
    )
    return (1 - lambda_value) * jaccard + lambda_value * original


def _check_distances(q_g: Tensor, q_q: Tensor, g_g: Tensor) -> None:
    """Floating-point tensors of shapes ``(Q, G)``, ``(Q, Q)``, ``(G, G)``, on one device, finite, >= 0."""
    named = {"q_g": q_g, "q_q": q_q, "g_g": g_g}
    for name, value in named.items():
        if not isinstance(value, Tensor) or not value.is_floating_point():
            kind = f"a {value.dtype} tensor" if isinstance(value, Tensor) else type(value).__name__
            raise TypeError(f"{name} must be a floating-point tensor of distances, got {kind}")
        if value.ndim != 2:
            raise ValueError(f"{name} must be a matrix of distances, got shape {tuple(value.shape)}")
    num_query, num_gallery = q_g.shape
    if q_q.shape != (num_query, num_query) or g_g.shape != (num_gallery, num_gallery):
        raise ValueError(
            f"q_g (Q, G), q_q (Q, Q) and g_g (G, G) must fit together, got q_g {tuple(q_g.shape)}, "
            f"q_q {tuple(q_q.shape)} and g_g {tuple(g_g.shape)}"
        )
    if num_query == 0 or num_gallery == 0:
        raise ValueError(
            f"the query set and the gallery must not be empty, got q_g of shape {tuple(q_g.shape)}"
        )
    if q_q.device != q_g.device or g_g.device != q_g.device:
        raise ValueError(
            f"q_g, q_q and g_g must be on one device, got {q_g.device}, {q_q.device} and {g_g.device}"
        )
    named = {name: value.detach() for name, value in named.items()}
    largest = 0.0
    for name, value in named.items():
        low, high = (float(v) for v in torch.aminmax(value))  # NaN and inf come out
        if not (math.isfinite(low) and math.isfinite(high)):
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(
                f"{name} must hold finite distances, got {bad} NaN or inf values in shape "
                f"{tuple(value.shape)}"
            )
        largest = max(largest, abs(low), abs(high))
    for name, value in named.items():
        smallest = float(value.min())
        if smallest < -_NEGATIVE_TOLERANCE * largest:
            where = tuple(int(i) for i in divmod(int(value.argmin()), value.shape[1]))
            raise ValueError(
                f"{name} must hold distances (>= 0), got {smallest!r} at {where}; similarities (larger is "
                "closer) must be turned into distances first"
            )


def _squared_rows(q_g: Tensor, q_q: Tensor, g_g: Tensor, start: int, stop: int) -> Tensor:
    """Rows ``start:stop`` of the squared distances, float32: row ``i`` is column ``i`` of the joint matrix
    ``[[q_q, q_g], [q_gᵀ, g_g]]`` (the reference code normalizes the columns, then transposes).

    Shape:
        ``(stop - start, Q + G)``.
    """
    num_query = q_q.shape[0]
    parts = []
    if start < num_query:
        end = min(stop, num_query)
        parts.append(torch.cat([q_q[:, start:end].t(), q_g[start:end]], dim=1))
    if stop > num_query:
        first, end = max(start, num_query) - num_query, stop - num_query
        parts.append(torch.cat([q_g[:, first:end].t(), g_g[:, first:end].t()], dim=1))
    return torch.cat(parts).float().square()


def _squared_at(q_g: Tensor, q_q: Tensor, g_g: Tensor, rows: Tensor, columns: Tensor) -> Tensor:
    """The squared distances at ``(rows, columns)`` of the matrix :func:`_squared_rows` builds, float32.

    Shape:
        ``rows``, ``columns``: int64, any shapes that broadcast together; the result: their broadcast shape.
    """
    num_query, num_gallery = q_g.shape
    rows, columns = torch.broadcast_tensors(rows, columns)
    query_row, query_column = rows < num_query, columns < num_query
    row_q, row_g = rows.clamp_max(num_query - 1), (rows - num_query).clamp(0, num_gallery - 1)
    column_q, column_g = columns.clamp_max(num_query - 1), (columns - num_query).clamp(0, num_gallery - 1)
    value = torch.where(
        query_row,
        torch.where(query_column, q_q[column_q, row_q], q_g[row_q, column_g]),
        torch.where(query_column, q_g[column_q, row_g], g_g[column_g, row_g]),
    )
    return value.float().square()


def _nearest(rows: Tensor, count: int) -> Tensor:
    """The column indices of the ``count`` smallest entries of each row of non-negative ``rows``, closest
    first, equal values in index order (int64).

    A non-negative float32's bit pattern orders as the number does: the value's bits above the column index
    make one int64 key per entry, whose ``topk`` is exact and breaks ties by index.
    """
    columns = torch.arange(rows.shape[1], device=rows.device)
    keys = rows.view(torch.int32).long().bitwise_left_shift_(32).bitwise_or_(columns)
    return keys.topk(count, dim=1, largest=False).values & 0xFFFFFFFF


def _reciprocal(near: Tensor) -> Tensor:
    """``reciprocal[i, a]``: whether ``i`` is among the neighbours of its neighbour ``near[i, a]``.

    Each pair "``j`` lists ``i``" is the key ``j * N + i``: the neighbour lists become one sorted array of
    keys, searched once for every pair (memory ``N * K``, not ``N * K * K``).

    Shape:
        ``near``: ``(N, K)`` int64, distinct entries in each row; the result: ``(N, K)`` bool.
    """
    total = len(near)
    rows = torch.arange(total, device=near.device)[:, None]
    listed = (rows * total + near).flatten().sort().values  # j * N + i for every i in j's list
    wanted = (near * total + rows).flatten()  # near[i, a] * N + i: does near[i, a] list i?
    found = listed[torch.searchsorted(listed, wanted).clamp_max(len(listed) - 1)] == wanted
    return found.view_as(near)


def _expanded_sets(
    rows: Tensor, near: Tensor, reciprocal: Tensor, near_half: Tensor, reciprocal_half: Tensor
) -> Tensor:
    """``R*(i)`` for each of ``rows``: its entries in increasing order, then ``N`` in unused slots (int64).

    Shape:
        ``rows``: ``(B,)``; ``near``, ``reciprocal``: ``(N, K)``; ``near_half``, ``reciprocal_half``:
        ``(N, K')``; the result: ``(B, K + K * K')``.
    """
    total = len(near)
    candidates, is_reciprocal = near[rows], reciprocal[rows]  # R(i, k1): the candidates that are reciprocal
    half, half_reciprocal = near_half[candidates], reciprocal_half[candidates]  # (B, K, K'): R(c, k1 / 2)
    r_sorted = torch.where(is_reciprocal, candidates, total).sort(dim=1).values  # R(i, k1), then N
    flat = rearrange(half, "b k h -> b (k h)")
    found = r_sorted.gather(1, torch.searchsorted(r_sorted, flat).clamp_max(r_sorted.shape[1] - 1)) == flat
    in_set = rearrange(found, "b (k h) -> b k h", k=half.shape[1])
    shared = reduce(in_set & half_reciprocal, "b k h -> b k", "sum")
    size = reduce(half_reciprocal, "b k h -> b k", "sum")
    added = is_reciprocal & (3 * shared > 2 * size)  # more than two thirds of R(c, k1 / 2) in R(i, k1)
    members = torch.cat([candidates, rearrange(half, "b k h -> b (k h)")], dim=1)
    keep = torch.cat(
        [is_reciprocal, rearrange(added[..., None] & half_reciprocal, "b k h -> b (k h)")], dim=1
    )
    members = torch.where(keep, members, total).sort(dim=1).values
    repeated = torch.zeros_like(keep)
    repeated[:, 1:] = members[:, 1:] == members[:, :-1]
    return torch.where(repeated, total, members).sort(dim=1).values


def _overlap(v_index: Tensor, v_weight: Tensor, num_query: int) -> Tensor:
    """``sum_k min(V[q, k], V[g, k])`` for every query ``q`` and gallery entry ``g``, over the ``k`` where
    both are non-zero (the others add nothing: ``V >= 0``).

    ``V`` comes as lists (``v_index``, ``v_weight``) in which an index may repeat (the weights add up); the
    pairs of non-zero entries that share a ``k`` are enumerated in groups of about ``_PAIRS``.

    Shape:
        ``v_index``, ``v_weight``: ``(N, L)``; the result: ``(Q, G)``, float32.
    """
    total = len(v_index)
    num_gallery = total - num_query
    rows = torch.arange(total, device=v_index.device)[:, None].expand_as(v_index)
    listed = v_weight > 0
    row, column, weight = _merged(rows[listed], v_index[listed], v_weight[listed], total)
    query = row < num_query
    query_row, query_column, query_weight = row[query], column[query], weight[query]
    # V of the gallery by column: the gallery entries of each k, with their weights
    by_column, gallery, gallery_weight = _merged(
        column[~query], row[~query] - num_query, weight[~query], total
    )
    counts = torch.bincount(by_column, minlength=total)
    starts = counts.cumsum(0) - counts
    pairs = counts[query_column]  # gallery entries sharing each query entry's k
    ends = pairs.cumsum(0)
    out = torch.zeros(num_query * num_gallery, device=v_weight.device)
    first = 0
    while first < len(pairs):
        done = int(ends[first - 1]) if first else 0
        last = max(first + 1, int(torch.searchsorted(ends, done + _PAIRS, right=True)))
        count = pairs[first:last]
        entry = torch.repeat_interleave(torch.arange(first, last, device=out.device), count)
        offset = torch.arange(len(entry), device=out.device) - (count.cumsum(0) - count)[entry - first]
        position = starts[query_column[entry]] + offset
        shared = torch.minimum(query_weight[entry], gallery_weight[position])
        out.index_add_(0, query_row[entry] * num_gallery + gallery[position], shared)
        first = last
    return out.view(num_query, num_gallery)


def _merged(rows: Tensor, columns: Tensor, values: Tensor, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """The entries ``(rows, columns, values)`` of a sparse matrix ``width`` columns wide, sorted by row then
    column, the values at the same place added up.
    """
    places, where = torch.unique(rows * width + columns, return_inverse=True)
    summed = torch.zeros(len(places), dtype=values.dtype, device=values.device).index_add_(0, where, values)
    return places // width, places % width, summed
