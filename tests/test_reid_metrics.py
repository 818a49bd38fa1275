"""CMC and mAP under the standard ReID protocol, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstrl_layers.reid import evaluate_ranking, pairwise_distances

# gallery: identity, camera
G_IDS = [1, 2, 1, -1, 1, 0]  # -1: junk, 0: distractor
G_CAMS = [0, 1, 1, 1, 2, 1]
Q_IDS, Q_CAMS = [1, 3, 2], [0, 0, 0]
DIST = np.array(
    [
        [0.1, 0.2, 0.5, 0.3, 0.9, 0.6],  # order g0 g1 g3 g2 g5 g4; g0 same id + cam, g3 junk
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # identity 3 is not in the gallery
        [0.4, 0.1, 0.2, 0.3, 0.5, 0.6],  # its match g1 comes first
    ]
)


def test_hand_computed_cmc_and_map() -> None:
    result = evaluate_ranking(DIST, Q_IDS, G_IDS, Q_CAMS, G_CAMS, max_rank=4)
    # query 0, left after exclusions: g1 (neg), g2 (hit), g5 (distractor, neg), g4 (hit)
    ap0 = (1 / 2 + 2 / 4) / 2
    assert result.num_queries == 3 and result.num_skipped == 1  # query 1 has no match
    assert result.mAP == pytest.approx((ap0 + 1.0) / 2)
    np.testing.assert_allclose(result.cmc, [0.5, 1.0, 1.0, 1.0])
    assert result.rank(1) == 0.5
    assert result.as_dict() == pytest.approx({"mAP": 0.75, "rank1": 0.5, "num_queries": 3, "num_skipped": 1})


def test_junk_ids_are_negatives_when_not_declared_junk() -> None:
    result = evaluate_ranking(DIST[:1], Q_IDS[:1], G_IDS, Q_CAMS[:1], G_CAMS, junk_ids=())
    # g1 (neg), g3 (now a negative), g2 (hit), g5, g4 (hit)
    assert result.mAP == pytest.approx((1 / 3 + 2 / 5) / 2)
    assert result.rank(1) == 0 and result.rank(2) == 0 and result.rank(3) == 1


def test_same_camera_same_identity_is_excluded_only_for_that_camera() -> None:
    other_cam = evaluate_ranking(DIST[:1], Q_IDS[:1], G_IDS, [5], G_CAMS)
    # g0 is now a cross-camera match at rank 1: hits at 1, 3, 5 after removing junk g3
    assert other_cam.mAP == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    only_same_cam = evaluate_ranking([[0.5, 0.1]], [7], [7, 8], [0], [0, 1])
    assert only_same_cam.num_skipped == 1 and only_same_cam.mAP == 0.0


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


def test_torch_inputs_and_shape_checks() -> None:
    result = evaluate_ranking(
        torch.tensor(DIST),
        torch.tensor(Q_IDS),
        torch.tensor(G_IDS),
        torch.tensor(Q_CAMS),
        torch.tensor(G_CAMS),
    )
    assert result.mAP == pytest.approx(0.75)
    with pytest.raises(ValueError):
        evaluate_ranking(DIST[:, :5], Q_IDS, G_IDS, Q_CAMS, G_CAMS)


def test_pairwise_distances() -> None:
    q, g = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 0.0], [6.0, 8.0], [-3.0, -4.0]])
    torch.testing.assert_close(pairwise_distances(q, g), torch.tensor([[5.0, 5.0, 10.0]]))
    torch.testing.assert_close(pairwise_distances(q, g[1:], "cosine"), torch.tensor([[0.0, 2.0]]))
    with pytest.raises(ValueError):
        pairwise_distances(q, g, "manhattan")
