"""What a training run is set to do and where it stands (charrnn/training/config.py): the checks
of TrainConfig, the precision rule, and both records' round trip through JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
import torch

from charrnn.training.config import (
    PRECISIONS,
    SCHEDULES,
    TrainConfig,
    TrainerState,
    precision_problem,
)


@pytest.mark.parametrize(
    ("precision", "device", "problem"),
    [
        ("fp16", "cpu", "--precision fp16 needs a CUDA device; use bf16 on a CPU"),
        ("fp16", "mps", "--precision fp16 needs a CUDA device"),
        ("fp16", "cuda", None),
        ("bf16", "cpu", None),
        ("fp32", "cpu", None),
        (None, "cpu", None),  # left to the plan
    ],
)
def test_precision_problem(precision: str | None, device: str, problem: str | None) -> None:
    got = precision_problem(precision, device)
    if problem is None:
        assert got is None
    else:
        assert got is not None and got.startswith(problem)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_named_choice_is_accepted(schedule: str, precision: str) -> None:
    tc = TrainConfig(schedule=schedule, precision=precision)
    assert (tc.schedule, tc.precision) == (schedule, precision)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "linear"}, "schedule must be one of cosine, plateau, constant"),
        ({"precision": "fp8"}, "precision must be one of fp32, bf16, fp16"),
        ({"batch_size": 0}, "batch_size and seq_len must be at least 1"),
        ({"seq_len": 0}, "batch_size and seq_len must be at least 1"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": -1e-3}, "lr must be a finite number >= 0, got -0.001"),
        ({"lr": math.inf}, "lr must be a finite number >= 0, got inf"),
        ({"weight_decay": math.nan}, "weight_decay must be a finite number >= 0, got nan"),
        ({"clip": -1.0}, "clip must be a finite number >= 0"),
        ({"min_lr_ratio": math.inf}, "min_lr_ratio must be a finite number >= 0"),
        ({"max_epochs": -2.0}, "max_epochs must be a finite number >= 0"),
        ({"max_time": math.nan}, "max_time must be a finite number >= 0"),
        ({"eval_share": -0.5}, "eval_share must be a finite number >= 0"),
    ],
)
def test_bad_configs_are_refused_with_the_reason(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        TrainConfig(**kwargs)


def test_optional_limits_may_be_none_or_zero() -> None:
    tc = TrainConfig(max_epochs=None, max_time=None, eval_share=None, clip=0.0, weight_decay=0.0)
    assert tc.clip == 0.0  # 0: no clipping
    TrainConfig(max_epochs=0.5, max_time=0.0, eval_share=0.0)


def test_train_config_round_trips_through_json() -> None:
    tc = TrainConfig(
        batch_size=3, seq_len=5, lr=1e-2, schedule="plateau", max_epochs=2.5, max_steps=9,
        max_time=30.0, eval_share=0.05, precision="bf16", patience=4,
    )  # fmt: skip
    d = json.loads(json.dumps(tc.to_dict(), allow_nan=False))
    assert TrainConfig(**d) == tc
    assert set(d) == {f.name for f in dataclasses.fields(TrainConfig)}


def test_trainer_state_round_trips_through_json_without_its_hidden_state() -> None:
    s = TrainerState(
        step=12, epoch=2, window=3, tokens=4096, elapsed=7.25, progress=0.5, best_val=1.5,
        best_step=10, last_val=1.625, plateau_scale=0.25, plateau_bad=1, bad_evals=1,
        train_loss=1.75, grad_scale={"scale": 1024.0, "_growth_tracker": 3}, finished=True,
        hidden=torch.zeros(1, 2, 3),
    )  # fmt: skip
    d = s.to_dict()
    assert "hidden" not in d  # tensors go to a safetensors file (run/resume.py)
    back = TrainerState(**json.loads(json.dumps(d, allow_nan=False)))
    assert back.hidden is None
    assert back == dataclasses.replace(s, hidden=None)


def test_a_fresh_state_is_at_the_start() -> None:
    s = TrainerState()
    assert (s.step, s.epoch, s.window, s.tokens, s.progress) == (0, 0, 0, 0, 0.0)
    assert s.best_val is None and s.best_step is None and s.plateau_scale == 1.0
    assert not s.finished
    s.step += 1  # mutable: the loop updates it in place
    assert TrainerState().step == 0
