"""BME against the paper's Eq. 4-6 as written (two psi passes, ``references.TwoPsiBME``), and its own
properties."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from _tiny import randomized
from einops import rearrange
from references import TwoPsiBME
from torch import nn

from lstrl_layers import BME


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(edge="replicate"),
        dict(directions=("forward",)),
        dict(directions="backward", edge="replicate"),
        dict(mode="local"),
        dict(zero_init=False, reduction=4),
        dict(antisymmetric=True),
        dict(antisymmetric=True, mode="local", edge="replicate"),
    ],
)
@pytest.mark.parametrize("num_frames", [1, 2, 4])
def test_matches_the_equations_with_two_psi_passes(
    kwargs: dict, num_frames: int, device: torch.device
) -> None:
    torch.manual_seed(0)
    bme = randomized(BME(8, num_frames, **kwargs)).to(device, torch.float64)
    clips = torch.randn(2, num_frames, 8, 3, 2, dtype=torch.float64, device=device)
    with torch.no_grad():
        out, maps = bme(clips, return_maps=True)
        expected, expected_maps = TwoPsiBME(bme).with_maps(rearrange(clips, "b t c h w -> (b t) c h w"))
    torch.testing.assert_close(out, rearrange(expected, "(b t) c h w -> b t c h w", t=num_frames))
    assert list(maps) == list(expected_maps) and len(maps) == len(bme.directions)
    for name in maps:
        torch.testing.assert_close(maps[name], expected_maps[name])


def test_psi_runs_once_per_frame_where_the_equations_as_written_run_it_twice() -> None:
    bme = BME(8, 4)
    calls: list[int] = []
    bme.psi.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    frames = torch.randn(3 * 4, 8, 2, 2)
    bme(frames)
    assert calls == [12]
    calls.clear()
    TwoPsiBME(bme)(frames)
    assert calls == [12, 12]  # F_{t+1} and F_{t-1} of every frame, as the paper counts


@pytest.mark.parametrize("edge", ["zero", "replicate"])
def test_output_at_frame_t_depends_only_on_frames_t_minus_1_to_t_plus_1(
    edge: str, device: torch.device
) -> None:
    torch.manual_seed(0)
    bme = randomized(BME(8, 6, edge=edge)).to(device)
    clips = torch.randn(1, 6, 8, 3, 2, device=device)
    for changed_frame in range(6):
        changed = clips.clone()
        changed[:, changed_frame] += torch.randn_like(changed[:, changed_frame]) * 3
        moved = (bme(changed) - bme(clips)).abs().amax(dim=(0, 2, 3, 4)) > 1e-6
        assert moved.nonzero().flatten().tolist() == [t for t in range(6) if abs(t - changed_frame) <= 1], (
            f"changing frame {changed_frame}"
        )


def test_zero_edge_has_no_motion_past_the_clip_ends(device: torch.device) -> None:
    torch.manual_seed(0)
    _, maps = randomized(BME(8, 3)).to(device)(torch.randn(2, 3, 8, 2, 2, device=device), return_maps=True)
    assert maps["Mb"][:, 0].eq(0).all() and maps["Mf"][:, -1].eq(0).all()
    assert maps["Mb"][:, 1:].ne(0).any() and maps["Mf"][:, :-1].ne(0).any()


def test_local_and_global_modes_agree_on_1x1_maps_and_differ_otherwise(device: torch.device) -> None:
    torch.manual_seed(0)
    global_bme = randomized(BME(8, 3)).to(device)
    local_bme = BME(8, 3, mode="local").to(device)
    local_bme.load_state_dict(global_bme.state_dict())
    one_pixel = torch.randn(2, 3, 8, 1, 1, device=device)
    torch.testing.assert_close(local_bme(one_pixel), global_bme(one_pixel))
    maps_input = torch.randn(2, 3, 8, 3, 2, device=device)
    assert not torch.allclose(local_bme(maps_input), global_bme(maps_input))


def test_act_layer_is_any_module_factory_applied_after_upsilon() -> None:
    torch.manual_seed(0)
    bme = randomized(BME(8, 3, act_layer=functools.partial(nn.LeakyReLU, 0.1)))
    pre: list[torch.Tensor] = []
    bme.upsilon.register_forward_hook(lambda module, args, out: pre.append(out))
    clips = torch.randn(2, 3, 8, 3, 2)
    with torch.no_grad():
        motion = rearrange(bme(clips) - clips, "b t c h w -> (b t) c h w")  # F^m
    assert isinstance(bme.act, nn.LeakyReLU) and motion.min() < 0  # a ReLU's F^m is never negative
    torch.testing.assert_close(motion, torch.where(pre[0] > 0, pre[0], 0.1 * pre[0]))


def test_single_direction_halves_upsilon_input() -> None:
    bme = BME(16, 2, directions=("backward",))
    assert bme.upsilon.in_channels == 8 and bme.directions == ("backward",)
    _, maps = bme(torch.randn(4, 16, 2, 2), return_maps=True)
    assert list(maps) == ["Mb"] and maps["Mb"].shape == (2, 2, 8, 2, 2)


def test_parameter_counts_of_table_3() -> None:
    """Two MAEs + two BMEs at layer2/layer3 add 4.27M (24.79M -> 29.06M); BME alone 2.62M."""
    bme_paper = sum(p.numel() for c in (512, 1024) for p in BME(c, 8, zero_init=False).parameters())
    assert bme_paper == sum(2 * (c * c // 2 + c // 2) + c * c + c for c in (512, 1024)) == 2_624_512
    assert bme_paper + 1_640_320 == 4_264_832  # + the two MAEs of test_mae.py
    assert sum(p.numel() for c in (512, 1024) for p in BME(c, 8).parameters()) == bme_paper  # zero_init too
    assert round((24_792_128 + 1_640_320 + bme_paper) / 1e6, 2) == 29.06


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(directions=()), "directions must be a non-empty subset"),
        (dict(directions=("forward", "forward")), r"got \('forward', 'forward'\)"),
        (dict(directions=("left",)), r"got \('left',\)"),
        (dict(mode="pixel"), r"mode must be one of \('global', 'local'\), got 'pixel'"),
        (dict(edge="circular"), r"edge must be one of \('zero', 'replicate'\), got 'circular'"),
        (dict(reduction=-2), "reduction must be an int >= 1, got -2"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BME(16, 2, **kwargs)


def test_zero_init_is_the_identity_plus_1e_6_and_learns_from_the_first_step() -> None:
    torch.manual_seed(0)
    bme = BME(16, 4)
    x = torch.randn(8, 16, 3, 2)
    torch.testing.assert_close(bme(x) - x, torch.full_like(x, 1e-6), rtol=0, atol=1e-7)
    assert not torch.allclose(BME(16, 4, zero_init=False)(x), x)
    # the first gradient reaches υ's weights in full, the second φ and ψ (through υ's new weights)
    optimizer = torch.optim.Adam(bme.parameters(), lr=1e-3)
    target = torch.randn_like(x)
    grads = []
    for _ in range(2):
        optimizer.zero_grad()
        (bme(x) - target).pow(2).mean().backward()
        grads.append({name: p.grad.abs().sum().item() for name, p in bme.named_parameters()})
        optimizer.step()
    assert grads[0]["upsilon.weight"] > 0 and grads[0]["phi.weight"] == grads[0]["psi.weight"] == 0
    assert all(value > 0 for value in grads[1].values())


def test_reset_parameters_and_meta_device() -> None:
    bme = BME(16, 4, device="meta")
    assert bme.phi.weight.is_meta
    bme = bme.to_empty(device="cpu")
    bme.reset_parameters()
    x = torch.randn(8, 16, 3, 2)
    torch.testing.assert_close(bme(x), x + 1e-6, rtol=0, atol=1e-7)
    paper = BME(16, 4, zero_init=False)
    before = paper.upsilon.weight.clone()
    paper.reset_parameters()
    assert not torch.equal(before, paper.upsilon.weight) and paper.upsilon.weight.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_zero_init_passes_gradient_under_autocast(dtype: torch.dtype) -> None:
    """υ's 1e-6 bias stays positive in half precision (a float16 subnormal), so the ReLU passes gradient."""
    bme = BME(16, 4)
    x = torch.randn(8, 16, 3, 2)
    with torch.autocast("cpu", dtype=dtype):
        out = bme(x)
    out.float().sum().backward()
    assert bme.upsilon.weight.grad is not None and bme.upsilon.weight.grad.abs().sum() > 0


def test_training_on_one_frame_clips_warns_that_phi_and_psi_cannot_learn() -> None:
    bme = BME(8, 1).train()
    with pytest.warns(UserWarning, match=r"^BME is training on clips of T=1 frame, which have no neighbour"):
        bme(torch.randn(2, 1, 8, 3, 2)).sum().backward()
    assert bme.phi.weight.grad is None or not bme.phi.weight.grad.any()  # what the warning says
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bme.eval()(torch.randn(2, 1, 8, 3, 2))  # a one-frame clip at test time: a short track, no warning
        bme.train()(torch.randn(2, 2, 8, 3, 2))


@pytest.mark.parametrize(
    ("act_layer", "match"),
    [
        (nn.ReLU(), r"act_layer must be a module class or a callable that returns a module \(nn.ReLU, not "
                    r"nn.ReLU\(\)\), got ReLU\(\) \(ReLU\)"),
        ("relu", r"act_layer must be a module class .*got 'relu' \(str\)"),
        (lambda: torch.relu, r"act_layer\(\) must return an nn.Module, got <built-in method relu"),
    ],
)  # fmt: skip
def test_act_layer_must_make_a_module(act_layer: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        BME(8, 2, act_layer=act_layer)  # type: ignore[arg-type]


def test_layer_scale_multiplies_the_papers_branch_by_gamma_per_channel(device: torch.device) -> None:
    torch.manual_seed(0)
    scaled = randomized(BME(8, 4, ls_init_value=0.5)).to(device, torch.float64)
    paper = BME(8, 4, zero_init=False).to(device, torch.float64)
    missing, unexpected = paper.load_state_dict(scaled.state_dict(), strict=False)
    assert (missing, unexpected) == ([], ["gamma"])
    x = torch.randn(2, 4, 8, 3, 2, dtype=torch.float64, device=device)
    gamma = rearrange(scaled.gamma, "c -> 1 1 c 1 1")
    with torch.no_grad():
        torch.testing.assert_close(scaled(x) - x, gamma * (paper(x) - x))


def test_layer_scale_starts_near_the_identity_with_the_directions_apart() -> None:
    """γ = ls_init_value scales F^m, the convolutions keep PyTorch's initialization: unlike zero_init's υ = 0,
    a clip played backwards is not the reversal of the clip's output, and every parameter learns at once."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 3, 2)
    reverse = functools.partial(torch.flip, dims=(1,))
    scaled, zero = BME(16, 4, ls_init_value=1e-3), BME(16, 4)
    torch.testing.assert_close(zero(reverse(x)), reverse(zero(x)))  # υ = 0: both directions alike
    assert not torch.allclose(scaled(reverse(x)), reverse(scaled(x)), rtol=0, atol=1e-6)
    torch.testing.assert_close(scaled(x), x, rtol=0, atol=1e-2)  # F^m is O(1) here, times 1e-3
    assert not torch.equal(scaled(x), x)
    torch.testing.assert_close(scaled.gamma, torch.full((16,), 1e-3))
    (scaled(x) - torch.randn_like(x)).pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in scaled.parameters())
    assert sum(p.numel() for p in scaled.parameters()) == sum(p.numel() for p in zero.parameters()) + 16
    with torch.no_grad():
        scaled.gamma.fill_(3.0)
    scaled.reset_parameters()
    torch.testing.assert_close(scaled.gamma, torch.full((16,), 1e-3))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(ls_init_value=0.0), ValueError, r"ls_init_value must be None or a float > 0, got 0.0"),
        (dict(ls_init_value=float("nan")), ValueError, r"ls_init_value must be None or a float > 0, got nan"),
        (dict(ls_init_value="1e-2"), TypeError, r"must be None or a float > 0, got '1e-2' \(str\)"),
        (dict(ls_init_value=0.1, zero_init=False), ValueError,
         r"ls_init_value=0.1 sets BME's start .* so zero_init=False would change nothing"),
    ],
)  # fmt: skip
def test_layer_scale_refusals(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        BME(16, 2, **kwargs)


def test_antisymmetric_delta_is_what_tells_a_clip_from_its_reversal(device: torch.device) -> None:
    """With υ's two halves equal, BME gives a clip played backwards the reversal of the clip's output (the
    two directions swap, Mf <-> Mb); δ(Mf - Mb) changes sign under that swap, so δ alone breaks it. δ starts
    at zero (the block without it), and folds into υ's halves (υ^f + δ, υ^b - δ)."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 3, 2, dtype=torch.float64, device=device)
    reverse = functools.partial(torch.flip, dims=(1,))
    bme = randomized(BME(8, 4, antisymmetric=True)).to(device, torch.float64)
    paper = BME(8, 4).to(device, torch.float64)
    assert paper.load_state_dict(bme.state_dict(), strict=False) == ([], ["delta"])
    with torch.no_grad():
        half = bme.upsilon.in_channels // 2
        bme.upsilon.weight[:, half:] = bme.upsilon.weight[:, :half]  # υ^f = υ^b: symmetric in time
        assert not torch.allclose(bme(reverse(x)), reverse(bme(x)))  # δ tells the directions apart
        folded = BME(8, 4).to(device, torch.float64)
        folded.load_state_dict(bme.state_dict(), strict=False)
        folded.upsilon.weight += torch.cat([bme.delta, -bme.delta], dim=1)
        torch.testing.assert_close(bme(x), folded(x))
        bme.delta.zero_()
        torch.testing.assert_close(bme(reverse(x)), reverse(bme(x)))  # δ = 0: both directions alike
    bme.reset_parameters()
    assert bme.delta is not None and not bme.delta.any()
    assert sum(p.numel() for p in bme.parameters()) == sum(p.numel() for p in paper.parameters()) + 8 * 4


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(antisymmetric=True, directions=("forward",)), ValueError,
         r"antisymmetric=True adds a term on the difference of the two directions, so it needs both: "
         r"directions=\('forward', 'backward'\), got directions=\('forward',\)"),
        (dict(antisymmetric=1), TypeError, r"antisymmetric must be"),
    ],
)  # fmt: skip
def test_antisymmetric_refusals(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        BME(16, 2, **kwargs)
