"""LSTRLBlock: the paper's Fig. 2 composition x + F^a(x) + F^m(x)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lstrl_layers import BME, MAE, LSTRLBlock
from lstrl_layers.blocks import LSTRLArgs


def test_block_is_x_plus_both_branches_on_the_same_input(device: torch.device) -> None:
    torch.manual_seed(0)
    block = LSTRLBlock(
        16, 3, zero_init=False, mae_kwargs=dict(granularities=(1, 4)), bme_kwargs=dict(edge="replicate")
    )
    mae = MAE(16, 3, granularities=(1, 4))
    bme = BME(16, 3, edge="replicate", zero_init=False)
    mae.load_state_dict(block.mae.state_dict())
    bme.load_state_dict(block.bme.state_dict())
    block, mae, bme = block.to(device), mae.to(device), bme.to(device)
    x = torch.randn(6, 16, 3, 2, device=device)
    out, maps = block(x, return_maps=True)
    torch.testing.assert_close(out, x + (mae(x) - x) + (bme(x) - x))
    assert sorted(maps) == ["D1", "D4", "Mb", "Mf"]


@pytest.mark.parametrize("mae, bme", [(True, False), (False, True)])
def test_single_branch_block_equals_that_branch(mae: bool, bme: bool, device: torch.device) -> None:
    torch.manual_seed(0)
    block = LSTRLBlock(16, 2, mae=mae, bme=bme, zero_init=False)
    alone = MAE(16, 2) if mae else BME(16, 2, zero_init=False)
    alone.load_state_dict((block.mae or block.bme).state_dict())
    assert (block.mae is None) != (block.bme is None)
    block, alone = block.to(device), alone.to(device)
    x = torch.randn(2, 2, 16, 3, 3, device=device)
    torch.testing.assert_close(block(x), alone(x))


def test_num_frames_reaches_both_branches(device: torch.device) -> None:
    block = LSTRLBlock(16, 8).to(device)
    block.num_frames = 16
    assert (block.num_frames, block.mae.num_frames, block.bme.num_frames) == (16, 16, 16)
    assert block(torch.randn(32, 16, 2, 2, device=device)).shape == (32, 16, 2, 2)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(mae=False, bme=False), ValueError, "at least one branch"),
        (
            dict(mae=False, mae_kwargs=dict(reduction=2)),
            ValueError,
            r"mae_kwargs=\{'reduction': 2\} given but",
        ),
        (dict(mae_kwargs=dict(granularities=(5,))), ValueError, r"granularities .* got \(5,\)"),
        (dict(bme_kwargs=dict(edge="wrap")), ValueError, "edge must be one of"),
        (dict(mae="yes"), TypeError, r"mae must be True or False, got 'yes' \(str\)"),
        (dict(bme=1), TypeError, r"bme must be True or False, got 1 \(int\)"),
        (dict(zero_init=None), TypeError, r"zero_init must be True or False, got None"),
        (dict(mae_kwargs=[("reduction", 2)]), TypeError, "mae_kwargs must be a dict of keyword arguments"),
        (dict(mae_kwargs=dict(channels=8)), ValueError, r"mae_kwargs must not set \['channels'\]"),
        (dict(bme_kwargs=dict(zero_init=False)), ValueError, r"bme_kwargs must not set \['zero_init'\]"),
        (dict(bme_kwargs=dict(num_frames=4)), ValueError, r"bme_kwargs must not set \['num_frames'\]"),
        (dict(mae_kwargs=dict(reductoin=2)), ValueError,
         r"^mae_kwargs must hold MAE arguments \(granularities, reduction, scale\), got \['reductoin'\] in"),
        (dict(bme_kwargs={1: 2}), TypeError,
         r"bme_kwargs must have argument names \(str\) as keys, got \{1: 2\} \(dict\)"),
        (dict(layout="NCHW"), ValueError, r"layout must be one of \('BTCHW', 'BCTHW'\), got 'NCHW'"),
    ],
)  # fmt: skip
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        LSTRLBlock(16, 2, **kwargs)


def test_drops_into_nn_sequential_after_a_stage(device: torch.device) -> None:
    stage = torch.nn.Conv2d(3, 16, kernel_size=3, padding=1)
    model = torch.nn.Sequential(stage, MAE(16, 4), BME(16, 4), LSTRLBlock(16, 4)).to(device)
    frames = torch.randn(8, 3, 6, 4, device=device)
    torch.testing.assert_close(model(frames), stage(frames))  # identity at init
    model(frames).sum().backward()
    assert stage.weight.grad is not None


def test_block_arguments_are_one_frozen_copy() -> None:
    given = dict(granularities=(1, 4))
    args = LSTRLArgs(bme=False, mae_kwargs=given)
    given["scale"] = 2.0  # a later change to the caller's dict stays out
    assert args.mae_kwargs == dict(granularities=(1, 4)) and args.bme_kwargs == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        args.mae = False  # type: ignore[misc]
    no_block = LSTRLArgs(mae=False, bme=False)  # describes a baseline; building from it is refused
    with pytest.raises(ValueError, match=r"^X needs at least one branch, got mae=False and bme=False$"):
        no_block.require_branch("X")
    assert LSTRLArgs().require_branch("X") == LSTRLArgs(mae_kwargs={}, bme_kwargs=None)


def test_build_is_the_block_of_the_same_arguments() -> None:
    arguments = dict(bme=False, zero_init=False, mae_kwargs=dict(granularities=(2, 3)), layout="BCTHW")
    torch.manual_seed(0)
    built = LSTRLArgs(**arguments).build(16, 3)  # type: ignore[arg-type]
    torch.manual_seed(0)
    direct = LSTRLBlock(16, 3, **arguments)  # type: ignore[arg-type]
    assert (built.layout, built.bme, built.mae.granularities) == ("BCTHW", None, (2, 3))
    assert built.state_dict().keys() == direct.state_dict().keys()
    assert all(torch.equal(v, direct.state_dict()[k]) for k, v in built.state_dict().items())
