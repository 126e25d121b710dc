"""The training loop: silent, reporting through callbacks. It never prints and never saves.

Callers pass callbacks that receive events (:class:`Started`, :class:`Stepped`,
:class:`Evaluated`, :class:`Skipped`, :class:`Finished`); the CLI renders them and saves
checkpoints when it sees an :class:`Evaluated` event. The loop walks the training stream as
``batch_size`` contiguous rows in ``seq_len`` windows, carrying the hidden state (see data.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from .data import batchify, num_windows, window
from .distributed import SINGLE, Dist, agree, gather_rows, mean, rows
from .errors import TrainingError
from .evaluation import EvalResult, evaluate_chunks
from .model import CharRNN, Hidden, detach_hidden, hidden_from_tensors, hidden_tensors

SCHEDULES = ("cosine", "plateau", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
MAX_NONFINITE = 5


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
    eval_streams: int = 64  # the parallel protocol of evaluation.py, with its burn-in
    eval_max_tokens: int = 250_000
    seed: int = 1337
    precision: str = "fp32"  # autocast dtype for forward passes in training

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.batch_size < 1 or self.seq_len < 1:
            raise ValueError("batch_size and seq_len must be at least 1")

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
    train_loss: float | None = None  # running mean of recent steps
    grad_scale: dict[str, Any] | None = None  # fp16 gradient scaler state
    hidden: Hidden | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("hidden")
        return d


# ---------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Started:
    step: int
    steps_per_epoch: int
    batch_size: int
    seq_len: int
    parameters: int
    resumed: bool


@dataclass(frozen=True)
class Stepped:
    step: int
    epoch: float
    loss: float  # running mean of recent training losses, nats/token
    lr: float
    tokens_per_sec: float
    elapsed: float  # seconds in this invocation
    progress: float  # 0..1 towards whichever limit comes first, or nan without limits


@dataclass(frozen=True)
class Evaluated:
    step: int
    epoch: float
    val: EvalResult
    train_loss: float | None
    is_best: bool
    final: bool


@dataclass(frozen=True)
class Skipped:
    step: int
    reason: str


@dataclass(frozen=True)
class Finished:
    step: int
    reason: str  # "max_steps" | "max_epochs" | "max_time" | "stopped"
    state: TrainerState


Event = Started | Stepped | Evaluated | Skipped | Finished
Callback = Callable[[Event], None]


# ---------------------------------------------------------------------------------- trainer


def make_optimizer(model: CharRNN, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not biases, not the embedding table)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and not name.startswith("embedding") else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99))


class Trainer:
    def __init__(
        self,
        model: CharRNN,
        train_ids: torch.Tensor,
        val_ids: torch.Tensor | None,
        config: TrainConfig,
        callbacks: Sequence[Callback] = (),
        state: TrainerState | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        should_stop: Callable[[], bool] | None = None,
        dist: Dist = SINGLE,
        chars_per_token: float = 1.0,
    ) -> None:
        self.model = model
        self.chars_per_token = chars_per_token
        self.config = config
        self.dist = dist
        self.device = next(model.parameters()).device
        # (B, L) over the whole corpus; this process trains its share of the rows (all of them
        # unless several processes share the batch). Stays on the CPU, memory-mapped.
        self.data = batchify(train_ids, config.batch_size)[rows(dist, config.batch_size)]
        self.net: torch.nn.Module = model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DDP(model, device_ids=ids)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        self.scaler: torch.amp.GradScaler | None = None
        if config.precision == "fp16":
            if self.device.type != "cuda":
                raise TrainingError("--precision fp16 needs a CUDA device; use bf16 on a CPU")
            self.scaler = torch.amp.GradScaler("cuda")
        self.steps_per_epoch = num_windows(self.data.size(1), config.seq_len)
        # Validation ids are copied into memory (capped), training ids stay memory-mapped.
        self.val_ids = None if val_ids is None else val_ids[: config.eval_max_tokens].long()
        self.callbacks = list(callbacks)
        self.resumed = state is not None
        self.state = state or TrainerState()
        if self.scaler is not None and self.state.grad_scale:
            self.scaler.load_state_dict(self.state.grad_scale)
        if dist.enabled and self.state.hidden is not None:
            self.state.hidden = _hidden_rows(self.state.hidden, rows(dist, config.batch_size))
        self.optimizer = optimizer or make_optimizer(model, config)
        self.should_stop = should_stop or (lambda: False)
        self._session_p0 = self.state.progress if self.state.progress < 0.999 else 0.0
        self._session_start = 0.0
        self._eval_seconds = 0.0  # the last evaluation
        self._eval_total = 0.0  # every evaluation of this invocation

    # -- schedule ---------------------------------------------------------------------------

    def progress(self, session_elapsed: float) -> float:
        """Fraction of the run done: the furthest of steps, epochs and time (nan: no limit)."""
        c, s = self.config, self.state
        fractions = []
        if c.max_steps:
            fractions.append(s.step / c.max_steps)
        if c.max_epochs:
            fractions.append((s.epoch + s.window / self.steps_per_epoch) / c.max_epochs)
        if c.max_time:
            p0 = self._session_p0
            fractions.append(p0 + (1.0 - p0) * session_elapsed / c.max_time)
        return min(1.0, max(fractions)) if fractions else float("nan")

    def lr_at(self, progress: float) -> float:
        c, s = self.config, self.state
        lr = c.lr
        if c.warmup_steps and s.step < c.warmup_steps:
            lr *= (s.step + 1) / c.warmup_steps
        if c.schedule == "cosine" and not math.isnan(progress):
            floor = c.min_lr_ratio
            lr *= floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        elif c.schedule == "plateau":
            lr *= s.plateau_scale
        return lr

    # -- loop -------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        for cb in self.callbacks:
            cb(event)

    def _limit_reached(self, session_elapsed: float) -> tuple[str | None, float]:
        """Why to stop now (or None), and the schedule's progress; the same on every rank."""
        c, s = self.config, self.state
        # Keep time for the final evaluation inside the budget.
        out_of_time = c.max_time is not None and session_elapsed + self._eval_seconds >= c.max_time
        flags = [float(out_of_time), float(self.should_stop()), self.progress(session_elapsed)]
        out_of_time_any, stop_any, progress = agree(self.dist, flags, self.device)
        if c.max_steps is not None and s.step >= c.max_steps:
            return "max_steps", progress
        if c.max_epochs is not None and s.epoch + s.window / self.steps_per_epoch >= c.max_epochs:
            return "max_epochs", progress
        if out_of_time_any:
            return "max_time", progress
        if stop_any:
            return "stopped", progress
        return None, progress

    def global_state(self) -> TrainerState:
        """The state with every process's share of the carried hidden state (collective)."""
        s = self.state
        if not self.dist.enabled or s.hidden is None:
            return s
        full = [gather_rows(self.dist, t, dim=1) for t in hidden_tensors(s.hidden)]
        return replace(s, hidden=hidden_from_tensors(self.model.config.cell, full))

    def validate(self, final: bool = False) -> EvalResult | None:
        """Evaluate on the validation stream, update best-so-far and emit :class:`Evaluated`."""
        if self.val_ids is None or self.val_ids.numel() < 2:
            return None
        t0 = time.perf_counter()
        res = evaluate_chunks(self.model, [self.val_ids], streams=self.config.eval_streams)
        if self.chars_per_token != 1.0:
            res = EvalResult(res.tokens, res.nats, res.tokens * self.chars_per_token)
        self._eval_seconds = time.perf_counter() - t0
        self._eval_total += self._eval_seconds
        s = self.state
        is_best = math.isfinite(res.nats) and (s.best_val is None or res.nats < s.best_val)
        if is_best:
            s.best_val, s.best_step, s.plateau_bad = res.nats, s.step, 0
        elif self.config.schedule == "plateau":
            s.plateau_bad += 1
            if s.plateau_bad >= 2:
                s.plateau_scale *= 0.5
                s.plateau_bad = 0
        s.last_val = res.nats
        epoch = s.epoch + s.window / self.steps_per_epoch
        self._emit(Evaluated(s.step, epoch, res, s.train_loss, is_best, final))
        return res

    def _eval_due(self, session_elapsed: float) -> bool:
        """Whether the step just taken ends with a periodic evaluation."""
        c = self.config
        if not c.eval_every or self.state.step % c.eval_every:
            return False
        if c.eval_share is None:
            return True
        over = self._eval_total + self._eval_seconds > c.eval_share * session_elapsed
        # The same answer on every rank: an evaluation saves, and saving is collective.
        return not agree(self.dist, [float(over)], self.device)[0]

    def run(self) -> TrainerState:
        c, s = self.config, self.state
        model, opt = self.model, self.optimizer
        params = [p for p in model.parameters() if p.requires_grad]
        self._emit(
            Started(
                s.step,
                self.steps_per_epoch,
                self.data.size(0),
                c.seq_len,
                model.num_parameters(),
                self.resumed,
            )
        )
        model.train()
        t_start = time.perf_counter()
        last_eval_step = s.step if self.resumed else -1
        nonfinite = 0
        recent: list[float] = []
        tok_t0, tok_n = time.perf_counter(), 0
        reason: str | None = None
        hidden = s.hidden
        world = self.dist.world_size
        while True:
            now = time.perf_counter()
            session = now - t_start
            reason, progress = self._limit_reached(session)
            if reason:
                break
            if s.window >= self.steps_per_epoch:
                s.epoch, s.window, hidden = s.epoch + 1, 0, None
            lr = self.lr_at(progress)
            for g in opt.param_groups:
                g["lr"] = lr

            x, y = window(self.data, s.window, c.seq_len)  # (B, T) each
            if self.device.type == "cuda":
                # Page-locked copies let the transfer to the GPU run asynchronously.
                x, y = x.contiguous().pin_memory(), y.contiguous().pin_memory()
            x = x.to(self.device, torch.long, non_blocking=True)
            y = y.to(self.device, torch.long, non_blocking=True)
            with torch.autocast(
                self.device.type,
                dtype=self.autocast_dtype or torch.float32,
                enabled=self.autocast_dtype is not None,
            ):
                logits, new_hidden = self.net(x, hidden)  # (B, T, V)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(opt)
            else:
                loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, c.clip if c.clip > 0 else float("inf"))
            loss_value = mean(self.dist, loss.item(), self.device)
            if self.scaler is not None and math.isfinite(loss_value):
                # The scaler skips steps with overflowing fp16 gradients and adapts its scale.
                self.scaler.step(opt)
                self.scaler.update()
                s.grad_scale = self.scaler.state_dict()
                gnorm = torch.zeros(())
            if not (math.isfinite(loss_value) and bool(torch.isfinite(gnorm))):
                nonfinite += 1
                self._emit(Skipped(s.step, f"non-finite loss or gradient (loss {loss_value})"))
                hidden = None
                s.window += 1
                if nonfinite >= MAX_NONFINITE:
                    s.hidden = None
                    raise TrainingError(
                        f"training diverged: {nonfinite} steps in a row had a non-finite loss or "
                        "gradient; try a lower --lr or --clip"
                    )
                continue
            nonfinite = 0
            if self.scaler is None:
                opt.step()
            hidden = detach_hidden(new_hidden)
            s.step += 1
            s.window += 1
            s.tokens += y.numel() * world
            tok_n += y.numel() * world
            s.progress = progress
            recent.append(loss_value)
            if len(recent) > 50:
                recent.pop(0)
            s.train_loss = sum(recent) / len(recent)
            now = time.perf_counter()
            s.elapsed += now - t_start - session
            if now - tok_t0 > 2.0:
                tok_t0, tok_n = now - (now - tok_t0) / 2, tok_n // 2
            rate = tok_n / max(now - tok_t0, 1e-9)
            self._emit(
                Stepped(
                    s.step,
                    s.epoch + s.window / self.steps_per_epoch,
                    s.train_loss,
                    lr,
                    rate,
                    now - t_start,
                    self.progress(now - t_start),
                )
            )
            if self._eval_due(now - t_start):
                s.hidden = hidden
                self.validate()
                last_eval_step = s.step
        s.hidden = hidden
        if reason != "stopped" and last_eval_step != s.step:
            self.validate(final=True)
        self._emit(Finished(s.step, reason, s))
        return s


def _hidden_rows(hidden: Hidden, sl: slice) -> Hidden:
    if isinstance(hidden, tuple):
        return (hidden[0][:, sl].contiguous(), hidden[1][:, sl].contiguous())
    return hidden[:, sl].contiguous()


# ------------------------------------------------------------------------ state to plain data


def optimizer_to_plain(
    opt: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state as (tensors for safetensors, JSON-able rest). No pickle."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_plain(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta.get("scalars", {}).items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def trainer_state_to_plain(
    state: TrainerState,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Trainer state and RNG states as (tensors, JSON-able dict)."""
    tensors: dict[str, torch.Tensor] = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = st
    if state.hidden is not None:
        for i, t in enumerate(hidden_tensors(state.hidden)):
            tensors[f"hidden.{i}"] = t
    return tensors, state.to_dict()


def trainer_state_from_plain(
    cell: str, tensors: dict[str, torch.Tensor], d: dict[str, Any], device: torch.device
) -> TrainerState:
    """Inverse of :func:`trainer_state_to_plain`; also restores the RNG states."""
    fields = {k: v for k, v in d.items() if k in TrainerState.__dataclass_fields__}
    state = TrainerState(**fields)
    hid = [tensors[f"hidden.{i}"].to(device) for i in range(2) if f"hidden.{i}" in tensors]
    state.hidden = hidden_from_tensors(cell, hid) if hid else None
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return state


@dataclass(frozen=True)
class ThreadProbe:
    threads: int  # the fastest thread count, now set
    step_seconds: float  # a forward + backward pass with it (inf: not measured)


def probe_threads(
    model: CharRNN, batch: int, seq_len: int, candidates: Sequence[int]
) -> ThreadProbe:
    """The CPU thread count (among ``candidates``) that runs a training step of ``model`` fastest.

    A few forward/backward passes on random ids; nothing changes in the model (gradients are
    cleared) or in the random-number state. On a busy machine, threads that must wait for a core
    can make an RNN step several times slower than one thread does.
    """
    device = next(model.parameters()).device
    if device.type != "cpu" or len(candidates) < 2:
        return ThreadProbe(torch.get_num_threads(), float("inf"))
    rng = torch.get_rng_state()
    before = torch.get_num_threads()
    was_training = model.training
    model.train()
    x = torch.randint(0, model.config.vocab_size, (batch, seq_len + 1))
    best, best_time = before, float("inf")
    try:
        for n in candidates:
            torch.set_num_threads(n)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                logits, _ = model(x[:, :-1])  # (B, T, V)
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
                loss.backward()
                times.append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
            t = min(times[1:])  # the first pass warms caches up
            if t < best_time:
                best, best_time = n, t
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        torch.set_rng_state(rng)
    torch.set_num_threads(best)
    return ThreadProbe(best, best_time)
