"""What a training run is set to do (:class:`TrainConfig`) and where it stands
(:class:`TrainerState`): plain records, stored in a checkpoint as JSON.

A leaf module: the standard library only (torch appears only as a type), so that the command
line's ``--help`` and the default rules can name the choices without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..protocols import DEFAULT_STREAMS

if TYPE_CHECKING:
    import torch

    from ..model.rnn import Hidden

SCHEDULES = ("cosine", "plateau", "constant")  # TrainConfig.schedule
PRECISIONS = ("fp32", "bf16", "fp16")  # TrainConfig.precision: the autocast dtype


def precision_problem(precision: str | None, device_type: str) -> str | None:
    """Why ``precision`` cannot train on a device of ``device_type`` ("cpu", "cuda", ...), or
    None: fp16 needs CUDA (its gradient scaler is CUDA's). The one home of the rule, read by
    the run plan (before anything is made) and by the training step."""
    if precision == "fp16" and device_type != "cuda":
        return "--precision fp16 needs a CUDA device; use bf16 on a CPU"
    return None


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 64
    seq_len: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    clip: float = 1.0
    warmup_steps: int = 50
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    max_epochs: float | None = None
    max_steps: int | None = None
    max_time: float | None = None  # seconds for this invocation (a resume gets a new budget)
    eval_every: int = 200
    # Periodic evaluations are skipped while the time they took in this invocation would exceed
    # this share of it (None: evaluate every ``eval_every`` steps whatever it costs).
    eval_share: float | None = None
    eval_streams: int = DEFAULT_STREAMS  # the parallel protocol of evaluation.py
    eval_max_tokens: int = 250_000
    seed: int = 1337
    precision: str = "fp32"  # autocast dtype for forward passes in training
    patience: int | None = None  # stop after this many validations in a row without a new best
    # Decay of the weights' moving average tried at the end of the run (training/average.py);
    # 0: none.
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.batch_size < 1 or self.seq_len < 1:
            raise ValueError("batch_size and seq_len must be at least 1")
        floats = ("lr", "weight_decay", "clip", "min_lr_ratio", "max_epochs", "max_time")
        for name in (*floats, "eval_share"):
            x = getattr(self, name)
            if x is not None and not (math.isfinite(x) and x >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {x}")
        if not self.lr > 0:
            raise ValueError("lr must be > 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainerState:
    """Everything (besides weights and optimizer) needed to continue a run exactly."""

    step: int = 0
    epoch: int = 0
    window: int = 0  # next window of the epoch
    tokens: int = 0
    elapsed: float = 0.0  # seconds of training over all sessions
    progress: float = 0.0  # fraction of the schedule done at the last step
    best_val: float | None = None
    best_step: int | None = None
    last_val: float | None = None
    plateau_scale: float = 1.0
    plateau_bad: int = 0
    bad_evals: int = 0  # validations in a row without a new best (for TrainConfig.patience)
    train_loss: float | None = None  # running mean of recent steps
    grad_scale: dict[str, Any] | None = None  # fp16 gradient scaler state
    finished: bool = False  # the last session ended at a limit (not interrupted)
    average_steps: int = 0  # steps in the weights' moving average (training/average.py)
    hidden: Hidden | None = field(default=None, repr=False)
    # The weights' moving average, one tensor per model parameter in the model's order.
    average: list[torch.Tensor] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able fields: all but the tensors (``hidden``, ``average``)."""
        d = asdict(replace(self, hidden=None, average=None))
        d.pop("hidden")
        d.pop("average")
        return d
