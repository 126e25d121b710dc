"""A run decides once: the request, the corpus and what the probes measure on this machine
become one frozen :class:`Plan`, which the session then applies.

    TrainRequest ──┐
    the corpus ────┼─> plan_new_run / plan_resumed_run ──> Plan (a value; nothing changed)
    probes.py ─────┘       model and training configs, CPU threads, precision, the run
                           folder's name, the notes to tell the user

Planning builds models only to time them (under a forked random generator, so the run draws
exactly as if they had never been built) and leaves the thread count as it found it: the
session sets the threads, claims the folder under ``Plan.name``, builds the model once and
trains. The plan's machine part is saved in each checkpoint's ``config.json`` under ``plan``.

The choices made here, each only where the user left it to charrnn: the CPU thread count (the
faster of one thread and all cores), the precision of a new run on a CPU with native bf16
(bf16 autocast where a training step is measured clearly faster than in fp32), and for a new run
expected to pass over its corpus many times a larger, more regularised model (when it still
makes enough steps) or else more dropout. Single-process runs only: with torchrun every rank
must choose alike, so nothing is measured there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from ..errors import CharRNNError, OptionError
from ..model.config import ModelConfig
from ..model.rnn import CharRNN
from ..training.batches import num_windows
from ..training.config import TrainConfig, precision_problem
from ..training.distributed import Dist
from . import defaults
from .corpus import Corpus
from .folder import auto_name
from .probes import PROBE_DTYPES, native_bf16, probe_steps
from .request import RESUME_OVERRIDABLE, TrainRequest


@dataclass(frozen=True)
class Plan:
    """Everything a run decided before its first step."""

    model: ModelConfig
    training: TrainConfig
    name: str | None = None  # the run folder's automatic name (None: --out, or resumed)
    threads: int | None = None  # CPU threads the probe chose (None: not probed)
    thread_candidates: tuple[int, ...] = ()  # what the probe compared
    bf16_speedup: float | None = None  # fp32 / bf16 step time, where the precision was probed
    notes: tuple[str, ...] = ()  # the choices to tell the user about
    pinned_threads: int | None = None  # the user's --threads, which a resume keeps

    def machine(self) -> dict[str, Any]:
        """What ``config.json`` keeps under ``plan`` (the configs have sections of their own)."""
        d = asdict(self)
        for key in ("model", "training", "name"):
            d.pop(key)
        d["thread_candidates"] = list(self.thread_candidates)
        d["notes"] = list(self.notes)
        return d

    def to_dict(self) -> dict[str, Any]:
        return {**self.machine(), "model": self.model.to_dict(), "training": asdict(self.training)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(
            model=ModelConfig.from_dict(d["model"]),
            training=TrainConfig(**d["training"]),
            threads=d.get("threads"),
            thread_candidates=tuple(d.get("thread_candidates") or ()),
            bf16_speedup=d.get("bf16_speedup"),
            notes=tuple(d.get("notes") or ()),
            pinned_threads=d.get("pinned_threads"),
        )


# ----------------------------------------------------------------------------- configs


def model_config(req: TrainRequest, n_train: int, vocab_size: int) -> ModelConfig:
    """The model of a new run: the request, its gaps filled by the rules (``n_train``:
    training characters). Raises OptionError for --tie-weights with another --embed-dim."""
    hidden = req.hidden or defaults.hidden_size(n_train)
    embed = req.embed_dim or defaults.embed_dim(vocab_size, hidden)
    if req.tie_weights:
        if req.embed_dim is not None and req.embed_dim != hidden:
            raise OptionError("--tie-weights needs --embed-dim equal to --hidden")
        embed = hidden
    return ModelConfig(
        vocab_size=vocab_size,
        cell=req.cell or defaults.DEFAULT_CELL,
        layers=req.layers or defaults.DEFAULT_LAYERS,
        hidden=hidden,
        embed_dim=embed,
        dropout=defaults.dropout(n_train) if req.dropout is None else req.dropout,
        tie_weights=bool(req.tie_weights),
    )


def train_config(
    req: TrainRequest, cell: str, n_train: int, auto_precision: str = "fp32"
) -> tuple[TrainConfig, str | None]:
    """Training configuration of a new run (``n_train``: training tokens; ``auto_precision``:
    :func:`defaults.precision` for its device), and a notice if the batch had to shrink."""
    d = defaults
    fit = d.fit_batch(n_train, req.batch_size or d.DEFAULT_BATCH, req.seq_len or d.DEFAULT_SEQ_LEN)
    notice = None
    if fit.shrunk:
        unit = "character" if req.corpus.kind == "char" else "token"
        notice = (
            f"corpus is small ({n_train} training {unit}s): using {fit.batch_size} "
            f"stream{'s' if fit.batch_size > 1 else ''} of {fit.seq_len}-{unit} windows"
        )
    max_time = req.max_time
    if max_time is None and req.max_steps is None and req.max_epochs is None:
        max_time = d.DEFAULT_MAX_TIME
    cfg = TrainConfig(
        batch_size=fit.batch_size,
        seq_len=fit.seq_len,
        lr=req.lr or d.learning_rate(cell),
        weight_decay=d.DEFAULT_WEIGHT_DECAY if req.weight_decay is None else req.weight_decay,
        clip=d.DEFAULT_CLIP if req.clip is None else req.clip,
        warmup_steps=d.DEFAULT_WARMUP if req.warmup is None else req.warmup,
        schedule=req.schedule or d.DEFAULT_SCHEDULE,
        max_epochs=req.max_epochs,
        max_steps=req.max_steps,
        max_time=max_time,
        eval_every=req.eval_every or d.DEFAULT_EVAL_EVERY,
        eval_share=None if req.eval_every else d.EVAL_SHARE,
        seed=d.DEFAULT_SEED if req.seed is None else req.seed,
        precision=req.precision or auto_precision,
        patience=req.patience,
        ema_decay=d.DEFAULT_EMA_DECAY if req.ema_decay is None else req.ema_decay,
    )
    return cfg, notice


def resumed_train_config(req: TrainRequest, saved: dict[str, Any]) -> TrainConfig:
    """The saved training configuration with what the resume request changes: new limits
    replace the old ones rather than adding to them, and an explicit --eval-every is followed.
    Raises TypeError or ValueError for a saved section that is not a TrainConfig."""
    tc = TrainConfig(**saved)
    limits = [k for k in RESUME_OVERRIDABLE if k != "epochs_unlimited"]
    changes = {k: getattr(req, k) for k in limits if getattr(req, k) is not None}
    if {"max_time", "max_steps", "max_epochs"} & changes.keys():
        changes = {"max_time": None, "max_steps": None, "max_epochs": None, **changes}
    if req.epochs_unlimited:  # --max-epochs inf: no epoch limit (e.g. past the useful passes)
        changes["max_epochs"] = None
    if "eval_every" in changes:
        changes["eval_share"] = None  # evaluate as asked
    return replace(tc, **changes)


def check_device(req: TrainRequest, device: torch.device) -> None:
    """Refuse what the device cannot do (CharRNNError: the option is valid, the machine lacks
    what it needs)."""
    problem = precision_problem(req.precision, device.type)
    if problem:
        raise CharRNNError(problem)


# ----------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class _Measured:
    """What the machine probe chose (threads None: not probed)."""

    precision: str
    threads: int | None
    candidates: tuple[int, ...]
    step_seconds: float
    bf16_speedup: float | None


def _measure(
    mc: ModelConfig,
    tc: TrainConfig,
    device: torch.device,
    dist: Dist,
    choose_precision: bool,
    threads: int | None,
) -> _Measured:
    """Time training steps of a model like ``mc`` for the thread counts (when ``threads`` is
    None on a CPU with several cores) and the precisions (fp32 and bf16 when
    ``choose_precision`` on a CPU with native bf16) to choose from."""
    cores = torch.get_num_threads()
    candidates = tuple(defaults.thread_candidates(cores))
    counts = list(candidates) if threads is None and cores > 1 else [cores]
    precisions = [tc.precision if tc.precision in PROBE_DTYPES else "fp32"]
    if choose_precision and native_bf16():
        precisions = ["fp32", "bf16"]
    solo = device.type == "cpu" and not dist.enabled
    if not solo or len(counts) * len(precisions) == 1:
        return _Measured(tc.precision, None, candidates, float("inf"), None)
    times = probe_steps(_timing_model(mc, tc.seed), tc.batch_size, tc.seq_len, counts, precisions)
    speedup = times.bf16_speedup()
    precision = defaults.cpu_precision(speedup) if speedup is not None else tc.precision
    n, seconds = times.fastest(precision if precision in PROBE_DTYPES else precisions[0])
    return _Measured(precision, n if len(counts) > 1 else None, candidates, seconds, speedup)


def _widened(
    req: TrainRequest,
    mc: ModelConfig,
    tc: TrainConfig,
    n_train: int,
    epochs: float | None,
    m: _Measured,
    device: torch.device,
) -> tuple[ModelConfig, float | None, list[str]]:
    """The wider model of :func:`defaults.wide_model` when the model is left to the defaults
    and the wider one, timed here, still makes enough steps: (model, the passes it makes, the
    note); else ``mc``, ``epochs`` and no note."""
    wide = defaults.wide_model(mc, n_train, epochs) if req.model_left_to_defaults else None
    if wide is None:
        return mc, epochs, []
    # timed with the embedding of the many-passes setting: not faster than it will train
    seconds = _step_seconds(replace(wide, embed_dim=wide.hidden), tc, m, device)
    steps = defaults.expected_steps(tc, n_train, seconds)
    passes = defaults.expected_epochs(tc, n_train, seconds)
    if passes is None or not defaults.wide_model_fits(steps, passes, n_train):
        return mc, epochs, []
    plural = "" if round(passes) == 1 else "es"
    note = (
        f"training a wider {wide.cell.upper()} {wide.layers}x{wide.hidden} instead (about "
        f"{steps:,.0f} steps, {passes:.0f} pass{plural})"
    )
    return wide, passes, [note]


def _step_seconds(mc: ModelConfig, tc: TrainConfig, m: _Measured, device: torch.device) -> float:
    """Seconds a training step of a model like ``mc`` takes here, at the threads and precision
    the probe chose (inf: not measured, off the CPU or at a precision the probe cannot time)."""
    if device.type != "cpu" or tc.precision not in PROBE_DTYPES:
        return float("inf")
    n = m.threads or torch.get_num_threads()
    timed = probe_steps(_timing_model(mc, tc.seed), tc.batch_size, tc.seq_len, [n], [tc.precision])
    return timed.fastest(tc.precision)[1]


def _timing_model(mc: ModelConfig, seed: int) -> CharRNN:
    """A model of ``mc`` on the CPU to time; the random generator is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CharRNN(mc)


def plan_new_run(
    req: TrainRequest,
    corpus: Corpus,
    device: torch.device,
    dist: Dist,
    threads: int | None = None,
) -> Plan:
    """The plan of a new run on ``corpus`` (a fine-tuned one after
    :func:`charrnn.run.finetune.prepare` filled the request in): configs from the request and
    the rules, then, in a single CPU process, the machine fit. ``threads``: the user's
    --threads (None: measured)."""
    mc = model_config(req, corpus.train_text_chars, len(corpus.vocab))
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    auto = defaults.precision(device.type, bf16)
    tc, notice = train_config(req, mc.cell, corpus.train_ids.numel(), auto)
    # --threads pins the run: nothing is measured that could choose differently next time
    # (the precision stays the device's default unless --precision says otherwise).
    m = _measure(mc, tc, device, dist, req.precision is None and threads is None, threads)
    tc = replace(tc, precision=m.precision)
    notes = [notice] if notice else []
    if not dist.enabled:
        mc, tc, note = _fit_to_length(req, mc, tc, int(corpus.train_ids.numel()), m, device)
        notes += [note] if note else []
    name = None if req.out else auto_name(req.corpus.sources[0], mc.cell)
    return Plan(mc, tc, name, m.threads, m.candidates, m.bf16_speedup, tuple(notes), threads)


def plan_resumed_run(
    req: TrainRequest,
    mc: ModelConfig,
    tc: TrainConfig,
    device: torch.device,
    dist: Dist,
    threads: int | None = None,
    pinned: int | None = None,
) -> Plan:
    """The plan of a resumed session: the run's own configs (``tc`` with the request's new
    limits already applied), and the thread count: the resume's --threads, else the one the
    run was pinned to (``pinned``: its saved plan's), else measured as for a new run.
    A pinned count is applied here (``torch.set_num_threads``)."""
    notes: tuple[str, ...] = ()
    if threads is None and pinned and device.type == "cpu":
        threads = pinned
        torch.set_num_threads(threads)
        notes = (
            f"{threads} thread{'s' if threads > 1 else ''}, as the run was started (--threads)",
        )
    m = _measure(mc, tc, device, dist, False, threads)
    return Plan(mc, tc, None, m.threads, m.candidates, None, notes, threads)


def _fit_to_length(
    req: TrainRequest,
    mc: ModelConfig,
    tc: TrainConfig,
    n_train: int,
    m: _Measured,
    device: torch.device,
) -> tuple[ModelConfig, TrainConfig, str | None]:
    """For a run expected to pass over its ``n_train`` tokens many times: the larger model of
    :func:`defaults.long_run_model` when the model is left to the defaults and the larger one,
    timed here on a CPU, still makes enough steps; else the regularised setting of
    :func:`defaults.many_passes` for the options left to the defaults, and, for a run limited
    by time alone, an end after :func:`defaults.useful_passes` passes."""
    epochs = defaults.expected_epochs(tc, n_train, m.step_seconds)
    big = defaults.long_run_model(mc, n_train, epochs) if req.model_left_to_defaults else None
    if big is not None and epochs is not None:
        steps = defaults.expected_steps(tc, n_train, _step_seconds(big, tc, m, device))
        if defaults.long_run_model_fits(steps):
            lr = req.lr or defaults.learning_rate(big.cell)
            wd = defaults.LONG_MODEL_WEIGHT_DECAY if req.weight_decay is None else req.weight_decay
            note = (
                f"about {epochs:.0f} passes over the corpus expected: training a larger "
                f"{big.cell.upper()} {big.layers}x{big.hidden} with dropout {big.dropout:g} and "
                f"weight decay {wd:g} instead (about {steps:,.0f} steps)"
            )
            return big, replace(tc, lr=lr, weight_decay=wd), note
    said_first = f"about {epochs:.0f} passes over the corpus expected: " if epochs else ""
    mc, epochs, widened = _widened(req, mc, tc, n_train, epochs, m, device)
    # a run limited by time alone ends after the useful passes (None: its time limit ends it)
    time_only = req.max_epochs is None and req.max_steps is None and not req.epochs_unlimited
    steps_per_pass = num_windows(n_train // tc.batch_size, tc.seq_len)  # the last one short
    stop = defaults.useful_passes(epochs, steps_per_pass) if time_only else None
    many = defaults.many_passes(mc, epochs if stop is None else stop)
    if many is None or epochs is None:  # (a stop implies many passes: many is not None)
        return mc, tc, (said_first + widened[0]) if widened else None
    # each part only where its option was left to charrnn
    dropout = many.dropout if req.dropout is None else None
    embed = many.embed_dim if req.embed_dim is None and not req.tie_weights else None
    rate = many.lr if req.lr is None else None
    decay = many.weight_decay if req.weight_decay is None else None
    named = (("dropout", dropout), ("embedding", embed), ("lr", rate), ("weight decay", decay))
    ending = []
    if stop:
        ending = [f"stopping after {stop:.3g} (more overfit; --max-epochs N or inf to choose)"]
    said = ", ".join(widened + ending + [f"{name} {v:g}" for name, v in named if v is not None])
    if not said:
        return mc, tc, None
    mc = replace(
        mc,
        dropout=mc.dropout if dropout is None else dropout,
        embed_dim=mc.embed_dim if embed is None else embed,
    )
    tc = replace(
        tc,
        lr=tc.lr if rate is None else rate,
        weight_decay=tc.weight_decay if decay is None else decay,
        max_epochs=tc.max_epochs if stop is None else stop,
    )
    return mc, tc, said_first + said
