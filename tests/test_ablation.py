"""benchmarks/ablation.py end to end at a tiny budget, and its ceiling for models blind to time reversal."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch
from _scripts import BENCHMARKS, load_script

from lstrl_layers.reid import synthetic_motion_reid


def _ablation() -> ModuleType:
    return load_script(BENCHMARKS / "ablation.py")


def test_blind_ceiling_is_the_expected_ap_of_a_random_order_of_matches_and_decoys() -> None:
    # each query: 2 true matches (its other cameras) and 2 decoys (its partner's tracklets that are not
    # queries). Random order of 2 matches among 4: AP averaged over the 6 placements, by hand:
    # {1,2}: 1, {1,3}: 5/6, {1,4}: 3/4, {2,3}: 7/12, {2,4}: 1/2, {3,4}: 5/12 -> 49/72; rank-1: 2/4
    data = synthetic_motion_reid(4, 4, num_cams=3, length=(4, 4), size=(32, 16))
    ceiling = _ablation().blind_ceiling(data)
    assert ceiling["mAP"] == pytest.approx(49 / 72) and ceiling["rank1"] == pytest.approx(0.5)


def test_partners_last_moves_each_querys_partner_clips_to_the_end() -> None:
    distances = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.1, 0.2, 0.3]])
    query_pids, gallery_pids = torch.tensor([1, 2]), torch.tensor([2, 1, 3, 2])
    out = _ablation().partners_last(distances, query_pids, gallery_pids, {1: 2, 2: 1, 3: 4})
    inf = float("inf")
    torch.testing.assert_close(out, torch.tensor([[inf, 0.2, 0.3, inf], [0.4, inf, 0.2, 0.3]]))
    assert distances[0, 0] == pytest.approx(0.1)  # the input is left as it was


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences() -> None:
    stats = pytest.importorskip("scipy.stats")
    ablation = _ablation()
    for df in range(1, 31):
        assert ablation._T975[df - 1] == pytest.approx(stats.t.ppf(0.975, df), abs=5e-4)
    values, baseline = [0.5, 0.7, 0.6, 0.9, 0.4], [0.4, 0.5, 0.5, 0.6, 0.45]
    differences = [v - b for v, b in zip(values, baseline)]
    low, high = stats.t.interval(0.95, 4, loc=stats.tmean(differences), scale=stats.sem(differences))
    got = ablation.paired_difference(values, baseline)
    assert got["mean"] == pytest.approx(sum(differences) / 5)
    assert (got["low"], got["high"]) == pytest.approx((low, high), abs=1e-3)
    assert ablation.paired_difference([0.5], [0.4])["low"] != ablation.paired_difference([0.5], [0.4])["low"]


def test_direction_captured_is_the_share_of_the_baselines_gain_with_the_direction_known() -> None:
    direction_captured = _ablation().direction_captured
    base = {"mAP": [0.4, 0.6], "mAP_direction_known": [0.7, 0.9]}  # knowing the direction is worth 0.3
    assert direction_captured([0.4, 0.6], base) == pytest.approx(0.0)  # the Baseline itself
    assert direction_captured([0.7, 0.9], base) == pytest.approx(1.0)  # all of it
    assert direction_captured([0.6, 0.7], base) == pytest.approx(0.5)  # half: +0.15 of 0.3, on average
    blind = {"mAP": [0.5, 0.5], "mAP_direction_known": [0.5, 0.5]}  # nothing to gain: no share
    assert direction_captured([0.6, 0.6], blind) != direction_captured([0.6, 0.6], blind)


def test_trace_rows_pair_each_seed_with_its_baseline_at_each_step() -> None:
    ablation = _ablation()
    steps = (0, 6, 12)
    baseline = {seed: [{"step": st, "mAP": 0.1 * seed + 0.01 * st} for st in steps] for seed in (3, 1, 2)}
    gains = {1: 0.05, 2: 0.10, 3: 0.30}  # per seed, the same at every step
    aucs = {1: 0.5, 2: 0.9, 3: 0.8}
    curves = {  # the seeds in another order than the Baseline's: they are paired by seed, not by position
        seed: [
            {"step": st, "mAP": baseline[seed][i]["mAP"] + gains[seed], "pair_auc": aucs[seed]}
            for i, st in enumerate(steps)
        ]
        for seed in (2, 3, 1)
    }
    rows = ablation.trace_rows(curves, baseline)
    assert [row["step"] for row in rows] == list(steps)
    expected = ablation.paired_difference([gains[s] for s in (1, 2, 3)], [0.0, 0.0, 0.0])
    for row in rows:
        assert row["vs_baseline"] == pytest.approx(expected)
        assert row["pair_auc"] == pytest.approx({"mean": 2.2 / 3, "min": 0.5, "below": 2})
    assert rows[2]["mAP"] == pytest.approx(0.2 + 0.12 + 0.15)  # the mean of the seeds' mAP at step 12
    assert "vs_baseline" not in ablation.trace_rows(baseline, None)[0]  # the Baseline itself


def test_default_and_quick_runs() -> None:
    ablation = _ablation()
    default = ablation.parse_args([])
    assert default.seeds >= 5 and default.datasets == ["approach", "squat", "appearance", "occlusion"]
    assert ablation.variants_of("occlusion", default) == ["Baseline", "+MAE"]
    assert ablation.variants_of("squat", default) == list(ablation.TABLE3)
    data = synthetic_motion_reid(8, 4, num_cams=3, length=(4, 4), size=(32, 16))
    settings = ablation.run_settings(ablation.TABLE3["+BME"], default, 0, data)
    assert not settings.amp and ablation.run_settings(dict(), ablation.parse_args(["--amp"]), 0, data).amp
    every = {**ablation.TABLE3, **ablation.FULL}
    rows = {name: ablation.run_settings(row, default, 0, data) for name, row in every.items()}  # all valid
    assert rows["Baseline"].direction_lr_factor == 1.0 and "bme_kwargs" not in rows["Baseline"].model_kwargs
    for name in ("+BME", "+MAE+BME"):  # δ at 10x, the rest of BME at the base rate
        assert rows[name].model_kwargs["bme_kwargs"] == dict(antisymmetric=True)
        assert (rows[name].direction_lr_factor, rows[name].bme_lr_factor) == (10.0, 1.0)
    old = rows["+BME block at 10x"]  # 0.2's recipe: the whole block at 10x, no δ
    assert (old.direction_lr_factor, old.bme_lr_factor, old.model_kwargs["bme_kwargs"]) == (
        1.0,
        10.0,
        {"antisymmetric": False},
    )
    quick = ablation.parse_args(["--quick"])
    assert quick.datasets == list(ablation.QUICK_SETS) and quick.seeds == ablation.QUICK_SEEDS
    assert list(quick.variant_settings) == list(ablation.QUICK_VARIANTS)


@pytest.mark.slow
def test_runs_end_to_end_and_writes_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--steps",
        "1",
        "--seeds",
        "2",
        "--first-seed",
        "3",
        "--variants",
        "Baseline",
        "+BME",
        "--identities",
        "8",
        "4",
    ]
    argv += ["--datasets", "approach", "occlusion", "--jobs", "1", "--trace", "1"]
    argv += ["--json", str(tmp_path / "a.json"), "--plot", str(tmp_path / "a.png"), "--device", "cpu"]
    results = _ablation().main(argv)
    saved = json.loads((tmp_path / "a.json").read_text())
    assert set(saved["datasets"]) == {"approach", "occlusion"} and saved["settings"]["first_seed"] == 3
    for name, rows in saved["datasets"].items():
        assert set(rows) == {"Baseline", "+BME"}
        for row in rows.values():
            assert len(row["mAP"]) == len(row["rank1"]) == 2 and all(0 <= v <= 1 for v in row["mAP"])
            assert ("pair_auc" in row) == ("mAP_direction_known" in row) == (name == "approach")
            if name == "approach":  # the partner's clips are non-matches: ranking them last cannot lower AP
                assert all(k >= m for k, m in zip(row["mAP_direction_known"], row["mAP"]))
    assert saved["datasets"]["approach"]["Baseline"]["pair_auc"] == [0.5, 0.5]
    assert "direction_captured" in saved["differences"]["approach"]["+BME"]
    assert "direction_captured" not in saved["differences"]["occlusion"]["+BME"]
    difference = saved["differences"]["approach"]["+BME"]["mAP"]
    assert set(difference) == {"mean", "low", "high"} and difference["low"] <= difference["mean"]
    assert saved["datasets"] == json.loads(json.dumps(results["datasets"]))
    assert (tmp_path / "a.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "] approach seed 4 +BME: mAP" in out and "] occlusion seed 3 Baseline: mAP" in out
    assert "approach set (2 seeds, 3-4;" in out and "blind to time reversal" in out and "pair AUC" in out
    assert "approach set, +BME, by step (2 seeds, 3-4;" in out  # --trace: the curves, by step
    assert [c["step"] for c in saved["curves"]["approach"]["+BME"]["3"]] == [0, 1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "--steps: expected an int >= 1"),
        (["--seeds", "x"], "--seeds: expected an int >= 1"),
        (["--first-seed", "-1"], "--first-seed: expected an int >= 0"),
        (["--variants", "+XYZ"], "unknown --variants ['+XYZ']"),
        (["--json", "/no/such/dir/a.json"], "no directory '/no/such/dir'"),
        (["--datasets", "mars"], "invalid choice: 'mars'"),
        (["--identities", "9", "4"], "--identities: expected even numbers"),
        (["--device", "tpu"], "--device: expected cpu, cuda or cuda:N, got 'tpu'"),
        (
            ["--quick", "--full"],
            "--quick runs Baseline, +MAE+BME only, so --full would add nothing: give one",
        ),
        (["--full", "--variants", "+MAE"], "--variants names the rows to run (Table 3's and --full's alike)"),
    ],
)
def test_bad_flags_fail_at_once(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _ablation().main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
