"""The ranked gallery of each query, shared by the metrics and the pictures: exclusions, order, AP and INP."""

from __future__ import annotations

import numpy as np
import pytest

from lstrl_layers.reid.ranking import (
    RankingInputs,
    average_precision,
    check_ranking,
    inverse_negative_penalty,
    nothing_to_score,
    scored_rankings,
)

# gallery: pid 1 in cameras 0, 2 and 1; a junk entry (-1); a distractor (0); pid 2 in camera 0
GALLERY_PIDS = [1, 1, -1, 0, 1, 2]
GALLERY_CAMIDS = [0, 2, 1, 1, 1, 0]


def test_the_same_identity_in_the_same_camera_and_junk_are_left_out_in_distance_order() -> None:
    distances = [[0.0, 0.5, 0.1, 0.2, 0.3, 0.4]]  # query: pid 1, camera 0
    (scored,) = scored_rankings(check_ranking(distances, [1], GALLERY_PIDS, [0], GALLERY_CAMIDS))
    # g0 (pid 1, camera 0) and g2 (junk) go; the others, closest first: g3, g4, g5, g1
    assert scored.query == 0
    assert scored.gallery.tolist() == [3, 4, 5, 1]
    assert scored.matches.tolist() == [False, True, False, True]


def test_without_junk_ids_the_junk_entry_is_a_negative() -> None:
    distances = [[0.0, 0.5, 0.1, 0.2, 0.3, 0.4]]
    ranking = check_ranking(distances, [1], GALLERY_PIDS, [0], GALLERY_CAMIDS, junk_ids=())
    (scored,) = scored_rankings(ranking)
    assert scored.gallery.tolist() == [2, 3, 4, 5, 1]


def test_queries_without_a_match_or_with_a_junk_identity_are_not_scored() -> None:
    distances = np.zeros((4, 6))
    # query 0: pid 2, camera 0, whose only entry is in its own camera; query 1: junk; query 3: no entry at all
    ranking = check_ranking(distances, [2, -1, 1, 9], GALLERY_PIDS, [0, 1, 0, 0], GALLERY_CAMIDS)
    scored = list(scored_rankings(ranking))
    assert [entry.query for entry in scored] == [2]
    # equal distances keep the gallery order
    assert scored[0].gallery.tolist() == [1, 3, 4, 5]


def test_average_precision_and_inverse_negative_penalty_of_a_ranked_list() -> None:
    hits = np.array([True, False, True, False, False, True])  # matches at ranks 1, 3 and 6
    assert average_precision(hits) == pytest.approx((1 / 1 + 2 / 3 + 3 / 6) / 3)
    assert inverse_negative_penalty(hits) == pytest.approx(3 / 6)
    assert average_precision(np.array([True, True])) == inverse_negative_penalty(np.array([True, True])) == 1


def test_check_ranking_gives_arrays_and_the_error_for_nothing_to_score_names_the_sizes() -> None:
    ranking = check_ranking([[1, 2.5]], [3.0], [3, 4], [0], [1, 1], junk_ids=[7])
    assert isinstance(ranking, RankingInputs)
    assert ranking.distances.dtype == np.float64 and ranking.query_pids.tolist() == [3]
    assert ranking.junk_ids.tolist() == [7]
    error = nothing_to_score(ranking)
    assert isinstance(error, ValueError)
    assert "(1 queries, 2 gallery entries)" in str(error) and "junk_ids=(7,)" in str(error)


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        (([[0.1]], [1.5], [1], [0], [1]), ValueError, "query_pids must hold integer labels"),
        (([[0.1]], [1], ["x"], [0], [1]), TypeError, "gallery_pids must hold integer labels"),
        (
            ([[0.1]], [1], [1], [0], [1, 2]),
            ValueError,
            r"as many query_camids \(1\) and gallery_camids \(2\)",
        ),
        (([[np.nan]], [1], [1], [0], [1]), ValueError, "distances must not hold NaN"),
    ],
)
def test_check_ranking_refuses_what_cannot_be_ranked(
    arguments: tuple, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        check_ranking(*arguments)
