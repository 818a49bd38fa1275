"""Batch-hard triplet loss and CE + triplet, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lstrl_layers.reid import BatchHardTripletLoss, ReIDLoss, batch_hard_triplet_loss, euclidean_distances


def test_distances_match_cdist_with_zero_diagonal() -> None:
    x = torch.randn(6, 5)
    torch.testing.assert_close(euclidean_distances(x), torch.cdist(x, x), atol=1e-4, rtol=0)
    assert torch.all(euclidean_distances(x).diagonal() == 0)


def test_batch_hard_triplet_hand_computed() -> None:
    # 1-D features; d(a, hardest p), d(a, hardest n): (1, 3), (1, 2), (2, 2), (2, 4)
    features = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    expected = (0 + 0 + 0.3 + 0) / 4  # relu(dp - dn + 0.3)
    assert batch_hard_triplet_loss(features, labels, margin=0.3).item() == pytest.approx(expected)
    soft = sum(math.log1p(math.exp(dp - dn)) for dp, dn in [(1, 3), (1, 2), (2, 2), (2, 4)]) / 4
    assert batch_hard_triplet_loss(features, labels, margin=None).item() == pytest.approx(soft, rel=1e-5)


def test_hardest_positive_and_negative_are_chosen() -> None:
    # anchor 0: positives at 1 and 4 -> hardest 4; negatives at 2 and 6 -> hardest 2
    features = torch.tensor([[0.0], [1.0], [4.0], [2.0], [6.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    losses = [max(0.0, dp - dn + 1.0) for dp, dn in [(4, 2), (3, 1), (4, 2), (0, 1), (0, 2)]]
    # anchors 3 and 4: positive distance |2 - 6| = 4, nearest negatives 1 and 2
    losses[3], losses[4] = 4 - 1 + 1.0, 4 - 2 + 1.0
    assert batch_hard_triplet_loss(features, labels, margin=1.0).item() == pytest.approx(sum(losses) / 5)


def test_anchors_without_positive_are_left_out() -> None:
    features = torch.tensor([[0.0], [1.0], [3.0]])
    labels = torch.tensor([0, 0, 1])  # the identity-1 sample has no positive
    assert batch_hard_triplet_loss(features, labels, margin=1.5).item() == pytest.approx((0 + 0.5) / 2)
    single = torch.zeros(3, 4, requires_grad=True)
    loss = batch_hard_triplet_loss(single, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph


def test_gradient_is_finite_for_identical_features() -> None:
    features = torch.ones(4, 8, requires_grad=True)
    BatchHardTripletLoss(0.3)(features, torch.tensor([0, 0, 1, 1])).backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


def test_reid_loss_is_ce_plus_triplet() -> None:
    torch.manual_seed(0)
    logits, features, labels = torch.randn(8, 5), torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    total, parts = ReIDLoss(margin=0.3, label_smoothing=0.1)(logits, features, labels)
    ce = F.cross_entropy(logits, labels, label_smoothing=0.1)
    triplet = batch_hard_triplet_loss(features, labels, 0.3)
    torch.testing.assert_close(total, ce + triplet)
    assert parts == pytest.approx({"ce": ce.item(), "triplet": triplet.item()})


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError):
        batch_hard_triplet_loss(torch.randn(4, 2), torch.tensor([0, 1, 0]))
