"""``charrnn train``: options -> TrainRequest -> runs.start_run/resume_run, with a live view."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import torch
import typer

from .. import distributed
from ..data import DECODE_ERRORS
from ..device import resolve_device
from ..errors import CharRNNError
from ..model import CELLS
from ..runs import MachineFit, TrainRequest, resume_run, start_run
from ..tokenizers import TOKENIZERS
from ..training import PRECISIONS, SCHEDULES
from .common import (
    check_choice,
    checkpoints_root,
    err,
    live_display,
    parse_duration,
    set_threads,
)
from .view import Reporter

TRAIN_EPILOG = (
    "Examples:\n\n"
    "  charrnn train corpora/verses.txt --cell gru\n\n"
    "  charrnn train novel.txt --max-time 10m --hidden 512\n\n"
    "  cat *.c | charrnn train - --out checkpoints/c-code\n\n"
    "  charrnn train --resume checkpoints/verses-gru --max-time 5m\n\n"
    "  charrnn train corpora/verses.txt --max-steps 2000 --sample-every 2 2> train.log"
)


def train_command(
    files: list[str] = typer.Argument(None, help="Text files to train on (- = stdin)."),
    val: str | None = typer.Option(None, "--val", help="Validation file [default: corpus tail]."),
    val_fraction: float = typer.Option(
        0.1, "--val-fraction", min=0.0, max=0.5, help="Share of the corpus held out."
    ),
    cell: str | None = typer.Option(None, "--cell", help="lstm, gru or rnn [default: gru]."),
    layers: int | None = typer.Option(None, "--layers", min=1, help="Recurrent layers [2]."),
    hidden: int | None = typer.Option(None, "--hidden", min=1, help="Hidden size [auto]."),
    embed_dim: int | None = typer.Option(None, "--embed-dim", min=1, help="Embedding size."),
    dropout: float | None = typer.Option(
        None, "--dropout", min=0.0, max=0.95, help="Dropout between layers and before the head."
    ),
    tie_weights: bool | None = typer.Option(
        None, "--tie-weights/--no-tie-weights", help="Share embedding and output weights."
    ),
    min_char_count: int = typer.Option(
        1, "--min-char-count", min=1, help="Rarer characters fold into <UNK>."
    ),
    tokenizer: str | None = typer.Option(
        None, "--tokenizer", help="char, or bpe / unigram subwords (sentencepiece) [char]."
    ),
    vocab_size: int | None = typer.Option(
        None, "--vocab-size", min=16, help="Subword vocabulary size [1024]."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", min=1, help="Streams [128]."),
    seq_len: int | None = typer.Option(None, "--seq-len", min=1, help="Window length [32]."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate [8e-3; 2e-3 for rnn]."),
    weight_decay: float | None = typer.Option(None, "--weight-decay", min=0.0),
    clip: float | None = typer.Option(None, "--clip", min=0.0, help="Gradient-norm clip [1.0]."),
    warmup: int | None = typer.Option(None, "--warmup", min=0, help="Warm-up steps [50]."),
    schedule: str | None = typer.Option(
        None, "--schedule", help="cosine, plateau or constant [cosine]."
    ),
    max_epochs: float | None = typer.Option(None, "--max-epochs", help="Passes over the corpus."),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help="Total optimizer steps of the run (across resumes)."
    ),
    max_time: str | None = typer.Option(
        None, "--max-time", help="Time budget of this invocation: 90s, 10m, 2h [2m]."
    ),
    eval_every: int | None = typer.Option(None, "--eval-every", min=1, help="Steps [200]."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed [1337]."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    precision: str | None = typer.Option(
        None, "--precision", help="fp32, bf16 or fp16 autocast [bf16 on GPUs that have it]."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="CPU threads [the faster of 1 and all, measured]."
    ),
    out: str | None = typer.Option(
        None, "--out", "-o", help="Run folder [checkpoints/<corpus>-<cell>]."
    ),
    resume: str | None = typer.Option(None, "--resume", help="Continue the run in this folder."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of the corpus."),
    errors: str = typer.Option(
        "strict", "--errors", help="On undecodable bytes: strict, replace or ignore."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and the summary."),
    sample_every: int | None = typer.Option(
        None,
        "--sample-every",
        min=0,
        help="Show a short sample every N evaluations; 0 = never [1 on a terminal, else 0].",
    ),
) -> None:
    """Train a model on text files; checkpoints go to a run folder."""
    check_choice(errors, DECODE_ERRORS, "--errors")
    check_choice(cell, CELLS, "--cell")
    check_choice(schedule, SCHEDULES, "--schedule")
    check_choice(tokenizer, TOKENIZERS, "--tokenizer")
    check_choice(precision, PRECISIONS, "--precision")
    if lr is not None and lr <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--lr")
    if max_epochs is not None and max_epochs <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--max-epochs")
    if resume and (tokenizer is not None or vocab_size is not None):
        raise typer.BadParameter("a resumed run keeps its tokenizer", param_hint="--tokenizer")
    if vocab_size is not None and (tokenizer or "char") == "char":
        raise typer.BadParameter("only for --tokenizer bpe or unigram", param_hint="--vocab-size")
    budget = parse_duration(max_time)
    if not files and resume is None:
        raise typer.BadParameter("name a text file to train on (or - for stdin), or --resume RUN")
    set_threads(threads)
    d = distributed.from_env()
    dev = distributed.setup(d, resolve_device(device))
    req = TrainRequest(
        corpus=tuple(files or ()),
        val=val,
        val_fraction=val_fraction,
        encoding=encoding,
        errors=errors,
        min_char_count=min_char_count,
        tokenizer=tokenizer or "char",
        vocab_size=vocab_size or 1024,
        cell=cell,
        layers=layers,
        hidden=hidden,
        embed_dim=embed_dim,
        dropout=dropout,
        tie_weights=tie_weights,
        batch_size=batch_size,
        seq_len=seq_len,
        lr=lr,
        weight_decay=weight_decay,
        clip=clip,
        warmup=warmup,
        schedule=schedule,
        max_epochs=max_epochs,
        max_steps=max_steps,
        max_time=budget,
        eval_every=eval_every,
        seed=seed,
        precision=precision,
        out=out,
        resume=resume,
        root=str(checkpoints_root()),
    )
    try:
        _train(req, dev, d, quiet, sample_every, threads)
    finally:
        distributed.teardown(d)


def _where(dev: torch.device, d: distributed.Dist, fit: MachineFit) -> str:
    """The device part of the start line, e.g. ``cpu, 2 threads (the faster of 1 and 2 here)``."""
    where = f"{d.world_size} processes, {dev.type}" if d.enabled else str(dev)
    if fit.threads is not None:
        n, most = fit.threads, max(fit.candidates)
        where += f", {n} thread{'s' if n > 1 else ''} (the faster of 1 and {most} here)"
    return where


def _train(
    req: TrainRequest,
    dev: torch.device,
    d: distributed.Dist,
    quiet: bool,
    sample_every: int | None,
    threads: int | None,
) -> None:
    if req.precision == "fp16" and dev.type != "cuda":
        raise CharRNNError("--precision fp16 needs a CUDA device; use bf16 on a CPU")
    run = resume_run(req, dev, d) if req.resume else start_run(req, dev, d)
    quiet = quiet or not d.is_main  # only rank 0 talks
    live = live_display()
    if sample_every is None:
        sample_every = 1 if live else 0
    reporter = Reporter(run, live=live and not quiet, sample_every=sample_every)
    fit = run.fit_to_machine(threads)
    if not quiet:
        reporter.header(_where(dev, d, fit))

    stop: dict[str, int | None] = {"signal": None}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop["signal"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop["signal"] = signum
        err.print(
            "stopping after this step and saving a checkpoint (Ctrl-C again to abort)",
            markup=False,
        )

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        state = run.train(
            callbacks=[] if quiet else [reporter], should_stop=lambda: stop["signal"] is not None
        )
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        if reporter.progress is not None:
            reporter.progress.stop()
    if d.is_main:
        reporter.summary(state, "interrupted" if stop["signal"] is not None else run.stop_reason)
    if stop["signal"] is not None:
        if d.is_main:
            err.print(f"resume with: charrnn train --resume {run.run_dir}", markup=False)
        sys.stderr.flush()
        raise typer.Exit(130 if stop["signal"] == signal.SIGINT else 143)
