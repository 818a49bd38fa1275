"""The within-pair AUC, the test clips of the motion sets, and what a model blind to time reversal scores."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from _tiny import TINY_RESNET

from lstrl_layers.reid import (
    ClipDataset,
    even_indices,
    pair_auc,
    synthetic_motion_reid,
)
from lstrl_layers.reid.engine import TrainSettings, fit

GALLERY_PIDS = torch.tensor([0, 0, 1, 1])  # gallery: identity 0 and its partner 1, cameras 1 and 2
GALLERY_CAMIDS = torch.tensor([1, 2, 1, 2])
PARTNERS = {0: 1, 1: 0}


def _auc(row: list[float], query_pid: int = 0, query_camid: int = 0, **kwargs: object) -> float:
    distances = torch.tensor([row])
    return pair_auc(
        distances,
        torch.tensor([query_pid]),
        GALLERY_PIDS,
        torch.tensor([query_camid]),
        GALLERY_CAMIDS,
        PARTNERS,
        **kwargs,
    )


def test_pair_auc_counts_ordered_pairs_and_ties_as_one_half() -> None:
    assert _auc([0.1, 0.2, 0.3, 0.4]) == 1.0  # own clips closer than both partner clips
    assert _auc([0.3, 0.4, 0.1, 0.2]) == 0.0
    assert _auc([0.1, 0.4, 0.2, 0.3]) == 0.5  # (0.1 < 0.2, 0.1 < 0.3, 0.4 > 0.2, 0.4 > 0.3)
    assert _auc([0.1, 0.2, 0.1, 0.2]) == 0.5  # two ties (1/2 each), one win, one loss
    assert _auc([0.1, 0.3, 0.1 + 1e-7, 0.3 + 1e-7]) == 0.5  # round-off is a tie
    assert _auc([0.1, 0.3, 0.1 + 1e-7, 0.3 + 1e-7], tolerance=0.0) == 0.75


def test_pair_auc_leaves_out_the_query_camera_and_queries_without_a_partner() -> None:
    # query in camera 1: only camera-2 entries count (0.4 own vs 0.3 partner: a loss)
    assert _auc([0.1, 0.4, 0.9, 0.3], query_camid=1) == 0.0
    distances = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    with_unpaired = pair_auc(
        distances, torch.tensor([0, 7]), GALLERY_PIDS, torch.tensor([0, 0]), GALLERY_CAMIDS, PARTNERS
    )
    assert with_unpaired == 1.0  # identity 7 has no partner: not scored


def test_pair_auc_is_the_mean_over_queries_of_the_pairwise_counts() -> None:
    generator = np.random.default_rng(0)
    distances = generator.random((6, 12))
    query_pids, query_camids = np.repeat([0, 1, 2], 2), np.tile([0, 1], 3)
    gallery_pids, gallery_camids = np.repeat([0, 1, 2, 3], 3), np.tile([1, 2, 0], 4)
    partners = {0: 1, 1: 0, 2: 3, 3: 2}
    expected = []
    for q in range(6):
        own = [
            g for g in range(12) if gallery_pids[g] == query_pids[q] and gallery_camids[g] != query_camids[q]
        ]
        other = [
            g
            for g in range(12)
            if gallery_pids[g] == partners[query_pids[q]] and gallery_camids[g] != query_camids[q]
        ]
        wins = [distances[q, a] < distances[q, b] for a in own for b in other]
        expected.append(sum(wins) / len(wins))
    got = pair_auc(distances, query_pids, gallery_pids, query_camids, gallery_camids, partners)
    assert got == pytest.approx(sum(expected) / len(expected))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(partners=[(0, 1)]), TypeError, "partners must map"),
        (dict(partners={0: "1"}), TypeError, "partners must map"),
        (dict(tolerance=-1.0), ValueError, "tolerance must be a float >= 0, got -1.0"),
        (dict(partners={5: 6}), ValueError, "no query has gallery entries of its own identity"),
    ],
)
def test_pair_auc_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    arguments: dict = dict(partners=PARTNERS, **{k: v for k, v in kwargs.items() if k != "partners"})
    arguments["partners"] = kwargs.get("partners", PARTNERS)
    with pytest.raises(error, match=match):
        pair_auc(
            torch.zeros(1, 4), torch.tensor([0]), GALLERY_PIDS, torch.tensor([0]), GALLERY_CAMIDS, **arguments
        )


@pytest.mark.parametrize("length", range(1, 30))
@pytest.mark.parametrize("num_frames", [1, 2, 3, 4, 8])
def test_even_indices_of_a_reversed_tracklet_are_the_indices_mirrored(length: int, num_frames: int) -> None:
    picks = even_indices(length, num_frames)
    assert len(picks) == num_frames and picks == sorted(picks) and 0 <= picks[0] and picks[-1] < length
    if num_frames > 1:  # within half a frame of the evenly spaced positions, first and last included
        positions = [t * (length - 1) / (num_frames - 1) for t in range(num_frames)]
        assert all(abs(p - x) <= 0.5 for p, x in zip(picks, positions)) and picks[-1] == length - 1
    mirrored = [length - 1 - p for p in reversed(picks)]
    if num_frames % 2 == 0 or length % 2 == 1:
        assert mirrored == picks
    else:  # the middle position lies between two frames: only it differs, by one frame
        assert sum(a != b for a, b in zip(mirrored, picks)) == 1


@pytest.mark.parametrize("motion", ["approach", "squat"])
def test_partner_test_clips_are_exact_reversals(motion: str) -> None:
    data = synthetic_motion_reid(2, 4, num_cams=2, length=(5, 11), size=(32, 16), seed=2, motion=motion)
    query = ClipDataset(data.query, 4, (32, 16), "even")
    gallery = ClipDataset(data.gallery, 4, (32, 16), "even")
    for dataset in (query, gallery):
        items = {(int(dataset[i][1]), int(dataset[i][2])): dataset[i][0] for i in range(len(dataset))}
        for (pid, cam), clip in items.items():
            assert torch.equal(items[(data.partners[pid], cam)], clip.flip(1))


def _settings(**overrides: object) -> TrainSettings:
    values: dict = dict(
        backbone="resnet18",
        pretrained=False,
        model_kwargs=dict(TINY_RESNET),
        size=(32, 16),
        num_frames=4,
        P=4,
        K=2,
        workers=0,
        progress=False,
        test_batch=16,
        test_sampling="even",
        epochs=2,
        max_steps=3,
        eval_every=2,
        lr=1e-3,
    )
    return TrainSettings(**{**values, **overrides})


@pytest.mark.parametrize("blocks", [dict(mae=False, bme=False), dict(mae=True, bme=False)])
def test_models_blind_to_time_reversal_score_one_half_and_stay_under_the_blind_ceiling(blocks: dict) -> None:
    sys.path.insert(0, "benchmarks")
    try:
        from ablation import blind_ceiling
    finally:
        sys.path.remove("benchmarks")
    data = synthetic_motion_reid(8, 8, num_cams=3, length=(6, 12), size=(32, 16), seed=0)
    # trained a little: not at random
    history = fit(_settings(**blocks), data, log=lambda message: None).history
    assert [entry["pair_auc"] for entry in history] == [0.5, 0.5]
    assert history[-1]["mAP"] <= blind_ceiling(data)["mAP"]
