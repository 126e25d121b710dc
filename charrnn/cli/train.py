"""``charrnn train``: options -> :class:`~charrnn.run.request.TrainRequest` ->
:func:`charrnn.run.start.open_run` -> ``Run.train``, with the live view of :mod:`.view`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

# Only torch-free modules at import: every command's --help, and the other commands, must not
# pay for torch. What trains is imported when a training starts.
from ..model.config import CELLS
from ..run import defaults
from ..text.tokenizers import TOKENIZERS
from ..training.config import PRECISIONS, SCHEDULES
from .common import (
    MAX_BATCH,
    MAX_EMA_DECAY,
    MAX_LAYERS,
    MAX_RATE,
    MAX_SEED,
    MAX_SUBWORDS,
    MAX_WIDTH,
    Choice,
    Number,
    checkpoints_root,
    choices,
    device_option,
    device_param,
    encoding_option,
    err,
    errors_option,
    live_display,
    parse_duration,
    set_threads,
    threads_param,
)
from .signals import StopOnSignals
from .streams import shell_quote

if TYPE_CHECKING:
    import torch

    from ..run.request import TrainRequest
    from ..run.session import Run
    from ..training import distributed

TRAIN_EPILOG = (
    "Examples:\n\n"
    "  charrnn train corpora/verses.txt --cell gru\n\n"
    "  charrnn train novel.txt --max-time 10m --hidden 512\n\n"
    "  cat *.c | charrnn train - --out checkpoints/c-code\n\n"
    "  charrnn train --resume checkpoints/verses-gru --max-time 5m\n\n"
    "  charrnn train new.txt --init-from checkpoints/verses-gru --patience 3\n\n"
    "  charrnn train corpora/verses.txt --max-steps 2000 --sample-every 2 2> train.log"
)


def train_command(
    files: list[str] = typer.Argument(
        None, help="Text files to train on (- = stdin).", metavar="FILE..."
    ),
    val: str | None = typer.Option(
        None, "--val", help="Validation file [default: the corpus tail].", metavar="FILE"
    ),
    val_fraction: float = typer.Option(
        0.1,
        "--val-fraction",
        parser=Number(float, 0.0, 0.5),
        help="Share of the corpus held out, 0-0.5.",
        metavar="X",
    ),
    cell: str | None = typer.Option(
        None,
        "--cell",
        parser=Choice(CELLS),
        help=f"Recurrent cell [default: {defaults.DEFAULT_CELL}].",
        metavar=choices(CELLS),
    ),
    layers: int | None = typer.Option(
        None,
        "--layers",
        parser=Number(int, 1, MAX_LAYERS),
        help=f"Recurrent layers [{defaults.DEFAULT_LAYERS}].",
        metavar="N",
    ),
    hidden: int | None = typer.Option(
        None,
        "--hidden",
        parser=Number(int, 1, MAX_WIDTH),
        help="Hidden size [by corpus size: 128, 256 or 512].",
        metavar="N",
    ),
    embed_dim: int | None = typer.Option(
        None,
        "--embed-dim",
        parser=Number(int, 1, MAX_WIDTH),
        help=(
            "Embedding size [64; the hidden size for vocabularies over 256 and for "
            f"{defaults.MANY_PASSES_EPOCHS:g}+ expected passes]."
        ),
        metavar="N",
    ),
    dropout: float | None = typer.Option(
        None,
        "--dropout",
        parser=Number(float, 0.0, 0.95),
        help="Dropout between layers and before the head, 0-0.95 [by corpus size and run length].",
        metavar="P",
    ),
    tie_weights: bool | None = typer.Option(
        None, "--tie-weights/--no-tie-weights", help="Share embedding and output weights."
    ),
    min_char_count: int = typer.Option(
        1,
        "--min-char-count",
        parser=Number(int, 1),
        help="Rarer characters fold into <UNK>.",
        metavar="N",
    ),
    tokenizer: str | None = typer.Option(
        None,
        "--tokenizer",
        parser=Choice(TOKENIZERS),
        help=f"char, or bpe / unigram subwords (sentencepiece) [{defaults.DEFAULT_TOKENIZER}].",
        metavar=choices(TOKENIZERS),
    ),
    vocab_size: int | None = typer.Option(
        None,
        "--vocab-size",
        parser=Number(int, 16, MAX_SUBWORDS),
        help=f"Subword vocabulary size [{defaults.DEFAULT_VOCAB_SIZE}, more for texts of many "
        "characters].",
        metavar="N",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        "-b",
        parser=Number(int, 1, MAX_BATCH),
        help=f"Streams [{defaults.DEFAULT_BATCH}].",
        metavar="N",
    ),
    seq_len: int | None = typer.Option(
        None,
        "--seq-len",
        parser=Number(int, 1, MAX_BATCH),
        help=f"Window length [{defaults.DEFAULT_SEQ_LEN}].",
        metavar="N",
    ),
    lr: float | None = typer.Option(
        None,
        "--lr",
        parser=Number(float, 0.0, MAX_RATE, open_low=True),
        help=(
            f"Peak learning rate [{defaults.learning_rate('gru'):g}; "
            f"{defaults.LONG_RUN_LR:g} for {defaults.MANY_PASSES_EPOCHS:g}+ expected passes; "
            f"{defaults.learning_rate('rnn'):g} for rnn]."
        ),
        metavar="X",
    ),
    weight_decay: float | None = typer.Option(
        None,
        "--weight-decay",
        parser=Number(float, 0.0, MAX_RATE),
        help=(
            f"AdamW weight decay of the weight matrices [{defaults.DEFAULT_WEIGHT_DECAY:g}; "
            f"{defaults.LONG_RUN_WEIGHT_DECAY:g} for {defaults.MANY_PASSES_EPOCHS:g}+ expected "
            "passes]."
        ),
        metavar="X",
    ),
    clip: float | None = typer.Option(
        None,
        "--clip",
        parser=Number(float, 0.0, inf_means="no clipping"),
        help=f"Gradient-norm clip; 0 or inf = no clipping [{defaults.DEFAULT_CLIP:.1f}].",
        metavar="X",
    ),
    warmup: int | None = typer.Option(
        None,
        "--warmup",
        parser=Number(int, 0),
        help=f"Warm-up steps [{defaults.DEFAULT_WARMUP}].",
        metavar="N",
    ),
    schedule: str | None = typer.Option(
        None,
        "--schedule",
        parser=Choice(SCHEDULES),
        help=f"Learning-rate schedule [{defaults.DEFAULT_SCHEDULE}].",
        metavar=choices(SCHEDULES),
    ),
    max_epochs: float | None = typer.Option(
        None,
        "--max-epochs",
        parser=Number(float, 0.0, open_low=True, inf_means="no epoch limit"),
        help=(
            "Passes over the corpus; inf = no epoch limit [a run limited by time alone that "
            f"expects more stops after {defaults.MAX_USEFUL_PASSES:g} passes or "
            f"{defaults.MIN_USEFUL_STEPS:,.0f} steps, whichever is more]."
        ),
        metavar="X",
    ),
    max_steps: int | None = typer.Option(
        None,
        "--max-steps",
        parser=Number(int, 1),
        help="Total optimizer steps of the run (across resumes).",
        metavar="N",
    ),
    max_time: str | None = typer.Option(
        None,
        "--max-time",
        help=f"Time budget of this invocation: 90s, 10m, 2h [{defaults.DEFAULT_MAX_TIME / 60:g}m].",
        metavar="DURATION",
    ),
    eval_every: int | None = typer.Option(
        None,
        "--eval-every",
        parser=Number(int, 1),
        help=f"Steps [{defaults.DEFAULT_EVAL_EVERY}].",
        metavar="N",
    ),
    seed: int | None = typer.Option(
        None,
        "--seed",
        parser=Number(int, 0, MAX_SEED),
        help=f"Random seed [{defaults.DEFAULT_SEED}].",
        metavar="N",
    ),
    device: str = device_param(),
    precision: str | None = typer.Option(
        None,
        "--precision",
        parser=Choice(PRECISIONS),
        help=(
            "Autocast precision [bf16 on GPUs that have it and on CPUs with native bf16 "
            "where it measures faster; else fp32]."
        ),
        metavar=choices(PRECISIONS),
    ),
    threads: int | None = threads_param("CPU threads [the faster of 1 and all, measured]."),
    out: str | None = typer.Option(
        None,
        "--out",
        "-o",
        help=f"Run folder [{defaults.CHECKPOINTS_ROOT}/<corpus>-<cell>].",
        metavar="DIR",
    ),
    resume: str | None = typer.Option(
        None, "--resume", help="Continue the run in this folder.", metavar="RUN"
    ),
    init_from: str | None = typer.Option(
        None,
        "--init-from",
        help="Start a new run from this run's best checkpoint (or from this checkpoint): "
        "fine-tuning.",
        metavar="RUN",
    ),
    patience: int | None = typer.Option(
        None,
        "--patience",
        parser=Number(int, 1),
        help="Stop after N validations in a row without a new best [off].",
        metavar="N",
    ),
    ema_decay: float | None = typer.Option(
        None,
        "--ema-decay",
        parser=Number(float, 0.0, MAX_EMA_DECAY),
        help="Decay of the weights' moving average, kept at the end where it validates better; "
        f"0 = off [{defaults.DEFAULT_EMA_DECAY:g}].",
        metavar="X",
    ),
    encoding: str = encoding_option("Text encoding of the corpus."),
    errors: str = errors_option("On undecodable bytes: strict, replace or ignore."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and the summary."),
    sample_every: int | None = typer.Option(
        None,
        "--sample-every",
        parser=Number(int, 0),
        help="Show a short sample every N evaluations; 0 = never [1 on a terminal, else 0].",
        metavar="N",
    ),
) -> None:
    """Train a model on text files; checkpoints go to a run folder."""
    from ..run.request import TrainRequest
    from ..training import distributed

    req = TrainRequest.from_options(
        tuple(files or ()),
        val=val,
        val_fraction=val_fraction,
        encoding=encoding,
        errors=errors,
        min_char_count=min_char_count,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
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
        max_time=parse_duration(max_time),
        eval_every=eval_every,
        seed=seed,
        precision=precision,
        out=out,
        resume=resume,
        root=str(checkpoints_root()),
        init_from=init_from,
        patience=patience,
        ema_decay=ema_decay,
    )
    set_threads(threads)
    d = distributed.from_env()
    dev = distributed.setup(d, device_option(device))
    try:
        _train(req, dev, d, quiet, sample_every, threads)
    finally:
        distributed.teardown(d)


def _train(
    req: TrainRequest,
    dev: torch.device,
    d: distributed.Dist,
    quiet: bool,
    sample_every: int | None,
    threads: int | None,
) -> None:
    from ..run import folder
    from .view import Reporter, header, where

    with StopOnSignals(clean_up=folder.discard_unsaved) as stop:
        run = _open(req, dev, d, threads, stop)
        quiet = quiet or not d.is_main  # only rank 0 talks
        live = live_display()
        if sample_every is None:
            sample_every = 1 if live else 0
        reporter = Reporter(run, live=live and not quiet, sample_every=sample_every)
        if not quiet:
            header(run, where(dev, d, run.plan))
        try:
            state = run.train(
                callbacks=[] if quiet else [reporter],
                should_stop=stop.asked,
                on_note=None if quiet else reporter.note,
            )
        finally:
            if reporter.progress is not None:
                reporter.progress.stop()
    if d.is_main:
        reporter.summary(state, "interrupted" if stop.signal is not None else run.stop_reason)
    from ..training import distributed

    distributed.barrier(d)  # every rank done before the process group goes away
    if stop.signal is not None:
        if d.is_main:
            err.print(
                f"resume with: charrnn train --resume {shell_quote(str(run.run_dir))}",
                markup=False,
            )
        sys.stderr.flush()
        raise typer.Exit(128 + stop.signal)


def _open(
    req: TrainRequest,
    dev: torch.device,
    d: distributed.Dist,
    threads: int | None,
    stop: StopOnSignals,
) -> Run:
    """:func:`~charrnn.run.start.open_run`; until it returns a signal ends the process, after
    ``stop`` removed the run folders this process made (nothing is saved in them yet). Once it
    has returned a signal stops the run after a step, and it is saved."""
    from ..run import folder
    from ..run.start import open_run

    try:
        run = open_run(req, dev, d, threads)
        stop.training = True
    except BaseException:  # open_run cleans up after itself; this also catches what it left
        folder.discard_unsaved()
        raise
    return run
