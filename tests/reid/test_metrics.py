"""CMC and mAP under the standard ReID protocol, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstrl_layers.reid import euclidean_distances, evaluate_ranking, pairwise_distances

# gallery: identity, camera
G_PIDS = [1, 2, 1, -1, 1, 0]  # -1: junk, 0: distractor
G_CAMIDS = [0, 1, 1, 1, 2, 1]
Q_PIDS, Q_CAMIDS = [1, 3, 2], [0, 0, 0]
DIST = np.array(
    [
        [0.1, 0.2, 0.5, 0.3, 0.9, 0.6],  # order g0 g1 g3 g2 g5 g4; g0 same id + cam, g3 junk
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # identity 3 is not in the gallery
        [0.4, 0.1, 0.2, 0.3, 0.5, 0.6],  # its match g1 comes first
    ]
)


def test_hand_computed_cmc_and_map() -> None:
    result = evaluate_ranking(DIST, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS, max_rank=4)
    # query 0, left after exclusions: g1 (neg), g2 (hit), g5 (distractor, neg), g4 (hit)
    ap0 = (1 / 2 + 2 / 4) / 2
    assert result.num_queries == 3 and result.num_skipped == 1  # query 1 has no match
    assert result.mAP == pytest.approx((ap0 + 1.0) / 2)
    np.testing.assert_allclose(result.cmc, [0.5, 1.0, 1.0, 1.0])
    assert result.rank(1) == 0.5
    # INP: query 0's 2 matches, the last at rank 4: 2 / 4; query 2's only match at rank 1: 1
    assert result.mINP == pytest.approx((2 / 4 + 1.0) / 2)
    assert result.as_dict() == pytest.approx(
        {"mAP": 0.75, "mINP": 0.75, "rank1": 0.5, "num_queries": 3, "num_skipped": 1}
    )
    assert list(result.as_dict()) == ["mAP", "mINP", "rank1", "num_queries", "num_skipped"]
    assert str(result) == "mAP 75.0, mINP 75.0, R-1 50.0 over 2 queries (1 skipped: no match)"


def test_minp_hand_computed_after_the_exclusions() -> None:
    # junk_ids=(): query 0 keeps g1 (neg), g3 (neg), g2 (hit), g5 (neg), g4 (hit): 2 matches, the last at 5
    assert evaluate_ranking(DIST[:1], Q_PIDS[:1], G_PIDS, Q_CAMIDS[:1], G_CAMIDS, junk_ids=()).mINP == 2 / 5
    # camera 5: g0 is a cross-camera match; junk g3 removed: g0 (hit), g1, g2 (hit), g5, g4 (hit)
    assert evaluate_ranking(DIST[:1], Q_PIDS[:1], G_PIDS, [5], G_CAMIDS).mINP == 3 / 5
    # the skipped query 1 does not count; query 2: 1 / 1
    both = evaluate_ranking(DIST, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS, junk_ids=())
    assert both.num_skipped == 1 and both.mINP == pytest.approx((2 / 5 + 1) / 2)


def test_minp_is_bounded_by_map_in_neither_direction() -> None:
    """INP is the precision at the last match only; AP averages the precisions at every match."""
    late_start = evaluate_ranking([[0.1, 0.2, 0.3]], [1], [2, 1, 1], [0], [1, 1, 1])  # hits at ranks 2, 3
    assert late_start.mAP == pytest.approx((1 / 2 + 2 / 3) / 2) and late_start.mINP == pytest.approx(2 / 3)
    assert late_start.mINP > late_start.mAP
    long_tail = evaluate_ranking([np.arange(10.0)], [1], [1] + [2] * 8 + [1], [0], [1] * 10)  # ranks 1, 10
    assert long_tail.mAP == pytest.approx((1 + 2 / 10) / 2) and long_tail.mINP == pytest.approx(2 / 10)
    assert long_tail.mINP < long_tail.mAP


def test_minp_is_one_exactly_when_every_match_comes_before_every_negative() -> None:
    perfect = evaluate_ranking([[0.3, 0.1, 0.2, 0.9]], [1], [1, 1, 1, 2], [0], [1, 2, 1, 1])
    assert perfect.mINP == 1 and perfect.mAP == 1
    one_negative_first = evaluate_ranking([[0.3, 0.1, 0.05, 0.9]], [1], [1, 1, 2, 1], [0], [1, 2, 1, 1])
    assert one_negative_first.mINP == 3 / 4


@pytest.mark.parametrize("seed", range(5))
def test_minp_against_counting_on_random_matrices(seed: int) -> None:
    """INP = matches / (valid entries no farther than the farthest match), counted without sorting."""
    rng = np.random.default_rng(seed)
    q, g = 12, 40
    dist = rng.random((q, g))  # continuous: no ties
    q_pids, g_pids = rng.integers(0, 4, q), rng.integers(-1, 4, g)
    q_camids, g_camids = rng.integers(0, 3, q), rng.integers(0, 3, g)
    expected = []
    for i in range(q):
        valid = (g_pids != -1) & ~((g_pids == q_pids[i]) & (g_camids == q_camids[i]))
        hits = valid & (g_pids == q_pids[i])
        if hits.any():
            farthest = dist[i, hits].max()
            expected.append(hits.sum() / (valid & (dist[i] <= farthest)).sum())
            assert hits.sum() / valid.sum() <= expected[-1] <= 1
    result = evaluate_ranking(dist, q_pids, g_pids, q_camids, g_camids)
    assert result.num_queries - result.num_skipped == len(expected)
    assert result.mINP == pytest.approx(np.mean(expected))


def test_junk_ids_are_negatives_when_not_declared_junk() -> None:
    result = evaluate_ranking(DIST[:1], Q_PIDS[:1], G_PIDS, Q_CAMIDS[:1], G_CAMIDS, junk_ids=())
    # g1 (neg), g3 (now a negative), g2 (hit), g5, g4 (hit)
    assert result.mAP == pytest.approx((1 / 3 + 2 / 5) / 2)
    assert result.rank(1) == 0 and result.rank(2) == 0 and result.rank(3) == 1


def test_same_camera_same_identity_is_excluded_only_for_that_camera() -> None:
    other_cam = evaluate_ranking(DIST[:1], Q_PIDS[:1], G_PIDS, [5], G_CAMIDS)
    # g0 is now a cross-camera match at rank 1: hits at 1, 3, 5 after removing junk g3
    assert other_cam.mAP == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    with pytest.raises(ValueError, match="no query has a valid match in the gallery"):
        evaluate_ranking([[0.5, 0.1]], [7], [7, 8], [0], [0, 1])  # its only match is in its own camera


def test_junk_queries_are_skipped_and_ties_keep_gallery_order() -> None:
    result = evaluate_ranking(np.zeros((2, 3)), [-1, 4], [4, 5, 4], [0, 0], [1, 1, 1])
    assert result.num_skipped == 1
    assert result.mAP == pytest.approx((1 + 2 / 3) / 2)  # stable: g0 (hit), g1, g2 (hit)


def test_ranks_beyond_the_gallery_count_as_matched() -> None:
    result = evaluate_ranking([[0.2, 0.1]], [1], [1, 2], [0], [1, 1], max_rank=20)
    assert result.cmc.shape == (20,)
    assert result.rank(1) == 0 and result.rank(2) == 1 and result.rank(20) == 1
    with pytest.raises(ValueError):
        result.rank(21)


def test_torch_inputs_and_shape_checks(device: torch.device) -> None:
    result = evaluate_ranking(
        *(torch.tensor(values, device=device) for values in (DIST, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS))
    )
    assert result.mAP == pytest.approx(0.75)
    with pytest.raises(
        ValueError, match=r"distances \(3, 5\) must be \(len\(query_pids\), len\(gallery_pids\)\)"
    ):
        evaluate_ranking(DIST[:, :5], Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS)


def test_nan_distance_is_refused() -> None:
    dist = DIST.copy()
    dist[2, 4] = np.nan
    with pytest.raises(ValueError, match=r"must not hold NaN, got 1 NaN \(the first at query 2, gallery 4\)"):
        evaluate_ranking(dist, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS)
    with pytest.raises(ValueError, match="must not hold NaN"):
        evaluate_ranking(torch.tensor(dist), Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS)


def test_inf_distance_ranks_the_pair_last() -> None:
    """+inf masks a pair: the result is that of the same ranking with the pair moved to the end."""
    masked = DIST.copy()
    masked[0, 2] = np.inf  # query 0's best true match (g2, rank 2 after exclusions) is masked
    moved = DIST.copy()
    moved[0, 2] = 10.0  # beyond every other distance
    got, expected = (
        evaluate_ranking(d, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS, max_rank=4) for d in (masked, moved)
    )
    assert (
        got.mAP == pytest.approx(expected.mAP)
        and got.mAP < evaluate_ranking(DIST, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS).mAP
    )
    np.testing.assert_allclose(got.cmc, expected.cmc)


def test_float_ids_are_compared_exactly_never_truncated() -> None:
    with pytest.raises(
        ValueError, match=r"query_pids must hold integer labels, got the non-integer value 1.7"
    ):
        evaluate_ranking([[0.1]], np.array([1.7]), np.array([1.2]), [0], [1])
    with pytest.raises(
        ValueError, match=r"gallery_camids must hold integer labels, got the non-integer value 0.5"
    ):
        evaluate_ranking([[0.1]], [1], [1], [0], [0.5])
    # whole-number floats are the same labels as the ints
    as_float = evaluate_ranking(
        DIST, np.array(Q_PIDS, dtype=float), torch.tensor(G_PIDS, dtype=torch.float32), Q_CAMIDS, G_CAMIDS
    )
    assert as_float.mAP == evaluate_ranking(DIST, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS).mAP


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            dict(query_pids=["a", "b", "c"]),
            TypeError,
            r"query_pids must hold integer labels, got dtype <U1 such as 'a'",
        ),
        (dict(gallery_pids=[True] * 6), TypeError, "gallery_pids must hold integer labels, got dtype bool"),
        (
            dict(query_camids=5),
            TypeError,
            r"query_camids must be a 1-D tensor, array or list of integer labels, got 5",
        ),
        (
            dict(query_pids=[Q_PIDS]),
            ValueError,
            r"query_pids must be 1-D \(one label per entry\), got shape \(1, 3\)",
        ),
        (
            dict(gallery_camids=G_CAMIDS[:5]),
            ValueError,
            r"with as many query_camids \(3\) and gallery_camids \(5\)",
        ),
        (dict(distances=DIST[0]), ValueError, r"distances must be a \(Q, G\) matrix, got shape \(6,\)"),
        (dict(distances=DIST.astype(str)), TypeError, "distances must be a .* of real numbers, got dtype <U"),
        (dict(distances=DIST > 0.3), TypeError, "of real numbers, got dtype bool"),
        (dict(distances="far"), TypeError, r"distances must be a \(Q, G\) matrix of numbers, got 'far'"),
        (dict(max_rank=0), ValueError, "max_rank must be an int >= 1, got 0"),
        (dict(max_rank=2.5), TypeError, r"max_rank must be an int >= 1, got 2.5 \(float\)"),
        (dict(max_rank=True), TypeError, r"got True \(bool\)"),
        (
            dict(junk_ids=-1),
            TypeError,
            r"junk_ids must be a list of identities, e.g. \(-1,\) or \(\), got -1",
        ),
        (dict(junk_ids=(1.5,)), TypeError, r"junk_ids must hold integer identities, got \[1.5\]"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    arguments = (
        dict(
            distances=DIST,
            query_pids=Q_PIDS,
            gallery_pids=G_PIDS,
            query_camids=Q_CAMIDS,
            gallery_camids=G_CAMIDS,
        )
        | kwargs
    )
    with pytest.raises(error, match=match):
        evaluate_ranking(**arguments)


@pytest.mark.parametrize("shape", [(3, 0), (0, 6)])
def test_empty_query_or_gallery_is_refused(shape: tuple[int, int]) -> None:
    q, g = shape
    with pytest.raises(ValueError, match=rf"must not be empty, got distances of shape \({q}, {g}\)"):
        evaluate_ranking(np.zeros(shape), Q_PIDS[:q], G_PIDS[:g], Q_CAMIDS[:q], G_CAMIDS[:g])


def test_gallery_without_any_match_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no query has a valid match in the gallery \(3 queries, 6 gallery"):
        evaluate_ranking(DIST, [7, 8, 9], G_PIDS, Q_CAMIDS, G_CAMIDS)
    with pytest.raises(ValueError, match=r"junk_ids=\(1, 2\)"):
        evaluate_ranking(DIST, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS, junk_ids=(1, 2))


def test_rank_must_be_an_int() -> None:
    result = evaluate_ranking(DIST, Q_PIDS, G_PIDS, Q_CAMIDS, G_CAMIDS, max_rank=4)
    with pytest.raises(TypeError, match=r"k must be an int >= 1, got 1.5 \(float\)"):
        result.rank(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"rank must be in 1..4, got 5"):
        result.rank(5)


def test_pairwise_distances(device: torch.device) -> None:
    q = torch.tensor([[3.0, 4.0]], device=device)
    g = torch.tensor([[0.0, 0.0], [6.0, 8.0], [-3.0, -4.0]], device=device)
    torch.testing.assert_close(pairwise_distances(q, g).cpu(), torch.tensor([[5.0, 5.0, 10.0]]))
    torch.testing.assert_close(pairwise_distances(q, g[1:], "cosine").cpu(), torch.tensor([[0.0, 2.0]]))
    assert pairwise_distances(q, g).device == q.device
    with pytest.raises(ValueError, match="metric must be 'euclidean' or 'cosine', got 'manhattan'"):
        pairwise_distances(q, g, "manhattan")


def test_pairwise_euclidean_distances_are_the_triplet_loss_distances(device: torch.device) -> None:
    torch.manual_seed(0)
    query, gallery = torch.randn(4, 8, device=device), torch.randn(7, 8, device=device)
    distances = pairwise_distances(query, gallery)
    assert torch.equal(distances, euclidean_distances(query, other=gallery))
    torch.testing.assert_close(distances, torch.cdist(query, gallery), atol=1e-4, rtol=0)
    half = pairwise_distances(query.half(), gallery.half())
    assert half.dtype == torch.float32
    assert torch.equal(half, euclidean_distances(query.half().float(), other=gallery.half().float()))


@pytest.mark.parametrize(
    ("query", "gallery", "error", "match"),
    [
        (torch.randn(4), torch.randn(3, 4), ValueError, r"query must be features \(N, D\), got shape \(4,\)"),
        (torch.randn(2, 4), torch.randn(3, 5), ValueError, r"same feature size D, got \(2, 4\) and \(3, 5\)"),
        ([[0.0, 1.0]], torch.randn(3, 2), TypeError, "query must be a floating-point tensor .* got list"),
        (
            torch.randn(2, 2),
            torch.ones(3, 2, dtype=torch.long),
            TypeError,
            "gallery must be .* got a torch.int64",
        ),
        (
            torch.tensor([[float("nan"), 0.0]]),
            torch.randn(3, 2),
            ValueError,
            "query must hold finite features, got 1",
        ),
        (
            torch.randn(2, 2),
            torch.tensor([[float("inf"), 0.0]]),
            ValueError,
            "gallery must hold finite features",
        ),
    ],
)
def test_pairwise_distances_bad_features(
    query: object, gallery: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        pairwise_distances(query, gallery)  # type: ignore[arg-type]
