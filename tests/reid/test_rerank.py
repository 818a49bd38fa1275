"""k-reciprocal re-ranking against a loop-by-loop reference, its properties, and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstrl_layers.reid import evaluate_ranking, pairwise_distances, rerank


def reference_rerank(
    q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int, k2: int, lambda_value: float
) -> tuple[np.ndarray, int]:
    """Zhong et al. (CVPR 2017) step by step, with the semantics of the authors' code; plain loops and sets.

    Returns the re-ranked distances and how many times the expansion step added an entry set that was not
    already in R(p, k1) (to know that a case exercises that step).
    """
    q_g, q_q, g_g = (np.asarray(m, dtype=np.float32) for m in (q_g, q_q, g_g))
    num_query, total = len(q_q), len(q_q) + len(g_g)
    squared = np.block([[q_q, q_g], [q_g.T, g_g]]) ** 2  # float32, as the authors' code
    dist = (squared / squared.max(axis=0)).T  # columns normalized by their maximum, then transposed
    # the ranking of every entry, ties in index order
    ranking = [sorted(range(total), key=lambda j, i=i: (dist[i, j], j)) for i in range(total)]

    def neighbours(p: int, k: int) -> list[int]:  # N(p, k): k + 1 entries, p itself normally first
        return ranking[p][: k + 1]

    def k_reciprocal(p: int, k: int) -> list[int]:  # R(p, k)
        return [g for g in neighbours(p, k) if p in neighbours(g, k)]

    half = int(np.around(k1 / 2))
    v = np.zeros((total, total))
    expansions = 0
    for p in range(total):
        r = set(k_reciprocal(p, k1))
        expanded = set(r)
        for candidate in r:
            r_half = set(k_reciprocal(candidate, half))
            if len(r_half & r) > 2 / 3 * len(r_half):
                expansions += not r_half <= r
                expanded |= r_half
        members = sorted(expanded)
        weights = np.exp(-dist[p, members].astype(np.float64))  # Gaussian kernel of the distances
        v[p, members] = weights / weights.sum()
    if k2 != 1:  # local query expansion over the k2 nearest entries
        v = np.stack([v[ranking[p][:k2]].mean(axis=0) for p in range(total)])
    jaccard = np.empty((num_query, total - num_query))
    for p in range(num_query):
        for g in range(num_query, total):
            jaccard[p, g - num_query] = 1 - np.minimum(v[p], v[g]).sum() / np.maximum(v[p], v[g]).sum()
    return (1 - lambda_value) * jaccard + lambda_value * dist[:num_query, num_query:], expansions


def euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact pairwise Euclidean distances (zeros on the diagonal of ``euclidean(a, a)``)."""
    return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))


def clustered_problem(seed: int, num_query: int, num_gallery: int, dim: int) -> list[np.ndarray]:
    """``[q_g, q_q, g_g]`` of points around 4 centres, so that neighbourhoods overlap."""
    rng = np.random.default_rng(seed)
    centres = 3 * rng.normal(size=(4, dim))
    points = centres[rng.integers(0, 4, num_query + num_gallery)] + rng.normal(
        size=(num_query + num_gallery, dim)
    )
    q, g = points[:num_query], points[num_query:]
    return [euclidean(q, g), euclidean(q, q), euclidean(g, g)]


def as_tensors(matrices: list[np.ndarray], device: torch.device | str = "cpu") -> list[torch.Tensor]:
    return [torch.tensor(m, dtype=torch.float32, device=device) for m in matrices]


# (num_query, num_gallery, dim, k1, k2, lambda_value, whether the expansion step must fire)
CASES = [
    (60, 240, 8, 20, 6, 0.3, True),  # the paper's parameters
    (8, 30, 2, 6, 3, 0.3, True),
    (10, 40, 3, 8, 4, 0.5, True),
    (5, 20, 3, 4, 2, 0.3, False),
    (4, 10, 4, 20, 6, 0.3, False),  # k1 + 1 > N: every entry is a neighbour
    (6, 25, 2, 5, 1, 0.0, False),  # no query expansion, Jaccard alone
    (3, 9, 2, 1, 4, 0.7, False),  # round(1 / 2) = 0: R(c, 0) is c alone
    (7, 30, 3, 3, 50, 0.2, False),  # k2 > N: the mean of every row
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("num_query", "num_gallery", "dim", "k1", "k2", "lambda_value", "expands"), CASES)
def test_matches_the_reference(
    seed: int,
    num_query: int,
    num_gallery: int,
    dim: int,
    k1: int,
    k2: int,
    lambda_value: float,
    expands: bool,
) -> None:
    matrices = clustered_problem(seed, num_query, num_gallery, dim)
    expected, expansions = reference_rerank(*matrices, k1, k2, lambda_value)
    assert expansions > 0 or not expands
    got = rerank(*as_tensors(matrices), k1=k1, k2=k2, lambda_value=lambda_value)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_matches_the_reference_on_the_test_device(device: torch.device) -> None:
    matrices = clustered_problem(7, 12, 50, 3)
    expected, expansions = reference_rerank(*matrices, 6, 3, 0.3)
    got = rerank(*as_tensors(matrices, device), k1=6, k2=3)
    assert expansions > 0 and got.device == device
    np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_equal_distances_rank_in_index_order_as_in_the_reference() -> None:
    rng = np.random.default_rng(3)
    points = rng.normal(size=(12, 2))
    points = np.concatenate([points, points[[1, 4, 4, 9]]])  # exact duplicates: ties, self included
    q, g = points[:5], points[5:]
    matrices = [euclidean(q, g), euclidean(q, q), euclidean(g, g)]
    for k1, k2 in [(3, 2), (5, 3)]:
        expected, _ = reference_rerank(*matrices, k1, k2, 0.3)
        got = rerank(*as_tensors(matrices), k1=k1, k2=k2)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_lambda_one_gives_the_normalized_original_distances() -> None:
    q_g, q_q, g_g = as_tensors(clustered_problem(0, 6, 20, 3))
    largest = torch.cat([q_q, q_g], dim=1).square().amax(dim=1, keepdim=True)  # each query's farthest entry
    torch.testing.assert_close(rerank(q_g, q_q, g_g, lambda_value=1.0), q_g.square() / largest)


def test_shape_dtype_range_and_no_gradient() -> None:
    q_g, q_q, g_g = (torch.tensor(m, requires_grad=True) for m in clustered_problem(1, 5, 17, 4))  # float64
    out = rerank(q_g, q_q, g_g)
    assert out.shape == (5, 17) and out.dtype == torch.float32 and not out.requires_grad
    assert out.min() >= 0 and out.max() <= 1


def test_a_row_of_zeros_stays_finite() -> None:
    """All entries at one point: every distance 0 (the reference code divides 0 by 0 there)."""
    out = rerank(torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(3, 3), k1=2, k2=2)
    assert torch.isfinite(out).all()


def test_rounding_errors_below_zero_are_tolerated() -> None:
    """Cosine distances of a point to itself can come out a little below 0."""
    q_g, q_q, g_g = as_tensors(clustered_problem(2, 4, 12, 3))
    rounded = q_q.clone()
    rounded.fill_diagonal_(-1e-7)
    torch.testing.assert_close(rerank(q_g, rounded, g_g), rerank(q_g, q_q, g_g))


@pytest.mark.parametrize("seed", range(5))
def test_improves_map_and_minp_on_noisy_identities(seed: int) -> None:
    """20 identities, 2 queries and 5 gallery entries each, noisy features: the paper's defaults help (on
    seeds 0 to 39, +10 to +21 mAP points and +18 to +39 mINP points)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(20, 32, generator=generator)
    query_pids, gallery_pids = torch.arange(20).repeat_interleave(2), torch.arange(20).repeat_interleave(5)
    query = centres[query_pids] + 1.2 * torch.randn(len(query_pids), 32, generator=generator)
    gallery = centres[gallery_pids] + 1.2 * torch.randn(len(gallery_pids), 32, generator=generator)
    query_camids, gallery_camids = torch.zeros_like(query_pids), torch.ones_like(gallery_pids)
    q_g = pairwise_distances(query, gallery)
    plain = evaluate_ranking(q_g, query_pids, gallery_pids, query_camids, gallery_camids)
    reranked_distances = rerank(q_g, pairwise_distances(query, query), pairwise_distances(gallery, gallery))
    reranked = evaluate_ranking(reranked_distances, query_pids, gallery_pids, query_camids, gallery_camids)
    assert reranked.mAP > plain.mAP + 0.05
    assert reranked.mINP > plain.mINP + 0.05


def _arguments(**changes: object) -> dict[str, object]:
    q_g, q_q, g_g = as_tensors(clustered_problem(0, 3, 5, 2))
    return dict(q_g=q_g, q_q=q_q, g_g=g_g) | changes


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        (
            dict(q_g=np.ones((3, 5))),
            TypeError,
            "q_g must be a floating-point tensor of distances, got ndarray",
        ),
        (dict(g_g=torch.ones(5, 5, dtype=torch.long)), TypeError, "g_g must be .* got a torch.int64 tensor"),
        (dict(q_q=torch.ones(3)), ValueError, r"q_q must be a matrix of distances, got shape \(3,\)"),
        (
            dict(q_q=torch.ones(3, 4)),
            ValueError,
            r"must fit together, got q_g \(3, 5\), q_q \(3, 4\) and g_g \(5, 5\)",
        ),
        (dict(g_g=torch.ones(4, 4)), ValueError, r"got q_g \(3, 5\), q_q \(3, 3\) and g_g \(4, 4\)"),
        (
            dict(q_g=torch.ones(0, 5), q_q=torch.ones(0, 0)),
            ValueError,
            r"the query set and the gallery must not be empty, got q_g of shape \(0, 5\)",
        ),
        (
            dict(q_g=torch.full((3, 5), float("nan"))),
            ValueError,
            "q_g must hold finite distances, got 15 NaN",
        ),
        (
            dict(g_g=torch.zeros(5, 5).fill_diagonal_(float("inf"))),
            ValueError,
            r"g_g must hold finite distances, got 5 NaN or inf values in shape \(5, 5\)",
        ),
        (
            dict(q_q=torch.tensor([[0.0, 0.5, 1.0], [0.5, 0.0, -0.5], [1.0, -0.5, 0.0]])),
            ValueError,
            r"q_q must hold distances \(>= 0\), got -0.5 at \(1, 2\); similarities",
        ),
        (dict(k1=0), ValueError, "k1 must be an int >= 1, got 0"),
        (dict(k2=0), ValueError, "k2 must be an int >= 1, got 0"),
        (dict(k1=2.5), TypeError, r"k1 must be an int >= 1, got 2.5 \(float\)"),
        (dict(k2=True), TypeError, r"k2 must be an int >= 1, got True \(bool\)"),
        (dict(lambda_value=-0.1), ValueError, r"lambda_value must be a number in \[0, 1\], got -0.1"),
        (dict(lambda_value=1.5), ValueError, r"lambda_value must be a number in \[0, 1\], got 1.5"),
        (dict(lambda_value=float("nan")), ValueError, "lambda_value must be a number in .* got nan"),
        (
            dict(lambda_value="0.3"),
            TypeError,
            r"lambda_value must be a number in \[0, 1\], got '0.3' \(str\)",
        ),
    ],
)
def test_bad_arguments(changes: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        rerank(**_arguments(**changes))  # type: ignore[arg-type]
