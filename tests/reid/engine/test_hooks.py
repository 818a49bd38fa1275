"""fit's hooks and its result: the order of the events, what each hook sees, no effect on the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _tiny import tiny_data, tiny_settings

from lstrl_layers.reid.engine import (
    FitResult,
    Hook,
    TrainSettings,
    TrainState,
    evaluate,
    fit,
    load_checkpoint,
)


def _settings(**overrides: Any) -> TrainSettings:
    return tiny_settings(**{"epochs": 2, "eval_every": 2, **overrides})


class _Recorder(Hook):
    """Records every event with the epoch and step it saw, and copies of what it was given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []
        self.step_losses: dict[int, list[float]] = {}
        self.epoch_stats: dict[int, dict[str, float]] = {}
        self.evaluations: list[dict[str, float]] = []
        self.seen: dict[str, Any] = {}

    def _record(self, name: str, state: TrainState) -> None:
        self.events.append((name, state.epoch, state.step))

    def before_train(self, state: TrainState) -> None:
        self._record("before_train", state)
        self.seen["model"], self.seen["settings"] = state.model, state.settings

    def after_train(self, state: TrainState) -> None:
        self._record("after_train", state)
        self.seen["history"] = [dict(entry) for entry in state.history]

    def before_epoch(self, state: TrainState) -> None:
        self._record("before_epoch", state)
        assert state.metrics is None and state.stats is None

    def after_epoch(self, state: TrainState) -> None:
        self._record("after_epoch", state)
        self.epoch_stats[state.epoch] = dict(state.stats or {})

    def before_step(self, state: TrainState) -> None:
        self._record("before_step", state)

    def after_step(self, state: TrainState) -> None:
        self._record("after_step", state)
        self.step_losses.setdefault(state.epoch, []).append((state.stats or {})["loss"])

    def before_evaluation(self, state: TrainState) -> None:
        self._record("before_evaluation", state)
        assert state.metrics is None  # the figures come after

    def after_evaluation(self, state: TrainState) -> None:
        self._record("after_evaluation", state)
        self.evaluations.append(dict(state.metrics or {}))


def test_hooks_see_the_run_in_the_documented_order() -> None:
    recorder, settings, data = _Recorder(), _settings(), tiny_data()
    result = fit(settings, data, log=lambda message: None, hooks=[recorder])
    steps = [event for step in (1, 2) for event in (("before_step", step), ("after_step", step))]
    evaluation = ("before_evaluation", "after_evaluation")
    expected = [("before_train", 0, 0), *[(name, 0, 0) for name in evaluation]]
    for epoch in (1, 2):
        expected.append(("before_epoch", epoch, 0))
        expected += [(name, epoch, step) for name, step in steps]
        expected += [(name, epoch, 2) for name in evaluation] if epoch == 2 else []
        expected.append(("after_epoch", epoch, 2))
    assert recorder.events == [*expected, ("after_train", 2, 2)]
    assert isinstance(result, FitResult)
    assert recorder.seen["model"] is result.model and recorder.seen["settings"] is settings
    assert recorder.seen["history"] == result.history and [e["epoch"] for e in result.history] == [0, 2]
    for entry, metrics in zip(result.history, recorder.evaluations):
        assert metrics == {k: v for k, v in entry.items() if k not in ("epoch", "loss")}
    for epoch, losses in recorder.step_losses.items():  # one process: the epoch's mean of its steps
        assert recorder.epoch_stats[epoch]["loss"] == pytest.approx(sum(losses) / len(losses))
    assert result.history[-1]["loss"] == pytest.approx(recorder.epoch_stats[2]["loss"])
    # the model returned is the one trained: evaluating it again gives the last evaluation's figures
    assert evaluate(result.model, data, settings) == recorder.evaluations[-1]


class _StopAfterEpoch(Hook):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_epoch(self, state: TrainState) -> None:
        if state.epoch == self.epoch:
            raise RuntimeError(f"stop after epoch {state.epoch}")


def test_an_error_in_after_epoch_ends_the_run_before_that_epochs_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="stop after epoch 2"):
        fit(
            _settings(eval_every=1),
            tiny_data(),
            out=tmp_path,
            log=lambda m: None,
            hooks=(_StopAfterEpoch(2),),
        )
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1 and [entry["epoch"] for entry in state["history"]] == [0, 1]


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ([_Recorder], r"hooks must hold Hook instances, got a Hook class: pass an instance, <class"),
        ([lambda state: None], r"hooks must hold Hook instances, got <function"),
        (_Recorder(), r"hooks must be a list or tuple of Hook instances, got <"),
    ],
)
def test_hooks_that_are_not_hook_instances_are_refused_before_training(hooks: Any, message: str) -> None:
    def log(line: str) -> None:
        raise AssertionError(f"the run started: {line}")

    with pytest.raises(TypeError, match=message):
        fit(_settings(), tiny_data(), log=log, hooks=hooks)


def test_fit_refuses_settings_and_data_of_other_types() -> None:
    with pytest.raises(TypeError, match=r"^settings must be a TrainSettings, got \{'lr': 0.1\} \(dict\)$"):
        fit({"lr": 0.1}, tiny_data())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^data must be a VideoReIDData, got \[\] \(list\)$"):
        fit(_settings(), [])  # type: ignore[arg-type]


@pytest.mark.slow
def test_hooks_leave_the_run_unchanged() -> None:
    """A hook sees the run; the run with one is the run without, value for value (same parameters too)."""
    plain = fit(_settings(), tiny_data(), log=lambda m: None)
    hooked = fit(_settings(), tiny_data(), log=lambda m: None, hooks=[_Recorder(), Hook()])
    assert hooked.history == plain.history
    for (name, value), other in zip(plain.model.state_dict().items(), hooked.model.state_dict().values()):
        torch.testing.assert_close(other, value, rtol=0, atol=0, msg=name)
