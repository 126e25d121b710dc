"""A training run on disk: pick defaults, create or resume a run folder, save as training goes.

This glues data, model, training and checkpoint together for ``charrnn train``; it knows nothing
of the command line and prints nothing.

Defaults (each can be overridden by an option). ``n`` is the number of training characters.

* model: 2 layers of GRU; hidden 128 if n < 100k, 256 if n < 5M, else 512; embedding 64
  (128 when the vocabulary has over 256 characters); dropout 0.2 if n < 100k, 0.1 if n < 1M,
  else 0, raised to 0.1 when the run is expected to make 6 or more passes over the corpus
  (:func:`fit_dropout_to_length`, from the limits and the measured step time).
* optimisation: batch 128 streams x 32-character windows, AdamW with lr 8e-3 (GRU and LSTM)
  or 2e-3 (tanh RNN), 50 warm-up steps, cosine decay to a tenth over the run, clipping at 1.0.
* length: without --max-time/--max-steps/--max-epochs a run lasts 2 minutes.
* evaluation: every 200 steps, skipped while evaluations would take over 5% of the session
  (an explicit --eval-every is always followed).

Besides checkpoints, a run appends its measurements to ``metrics.jsonl`` in its folder (see
:meth:`Run._log_metrics`): a ``step`` record every :func:`metrics_every` steps, an ``eval``
record per validation, and ``start`` / ``end`` records around each session.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from . import checkpoint as ck
from .data import (
    STDIN,
    Encoder,
    at_line_ends,
    control_count,
    count_chars,
    encode_to_files,
    fingerprint,
    fit_batch,
    iter_corpus,
    open_tokens,
    read_text,
    split_chunks,
    text_stats,
    token_dtype,
)
from .distributed import SINGLE, Dist, barrier, broadcast_text
from .errors import CharRNNError, CheckpointError, CorpusError, TrainingError
from .evaluation import LN2
from .model import CELLS, CharRNN, ModelConfig
from .tokenizers import (
    KINDS,
    MODEL_FILE,
    SubwordTokenizer,
    Tokenizer,
    tokenizer_info,
    train_subword,
)
from .training import (
    Callback,
    Evaluated,
    Event,
    Finished,
    Started,
    Stepped,
    TrainConfig,
    Trainer,
    TrainerState,
    make_optimizer,
    optimizer_from_plain,
    optimizer_to_plain,
    trainer_state_from_plain,
    trainer_state_to_plain,
)
from .vocab import Vocab

DEFAULT_MAX_TIME = 120.0
DEFAULT_BATCH, DEFAULT_SEQ_LEN = 128, 32  # streams x window: 4,096 characters a step
EVAL_SHARE = 0.05  # periodic evaluations take at most this share of a session (see training.py)
# A new run expected to pass over its corpus at least this many times gets at least this dropout.
LONG_RUN_EPOCHS, LONG_RUN_DROPOUT = 6.0, 0.1
STDIN_COPY = "corpus-stdin.txt"
TOKENS_TRAIN = "tokens-train.bin"
TOKENS_VAL = "tokens-val.bin"


@dataclass(frozen=True)
class TrainRequest:
    """What the user asked for; None means "choose for me" (or "keep" when resuming)."""

    corpus: tuple[str, ...] = ()
    val: str | None = None
    val_fraction: float = 0.1
    encoding: str = "utf-8"
    errors: str = "strict"
    min_char_count: int = 1
    tokenizer: str = "char"
    vocab_size: int = 1024
    cell: str | None = None
    layers: int | None = None
    hidden: int | None = None
    embed_dim: int | None = None
    dropout: float | None = None
    tie_weights: bool | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    clip: float | None = None
    warmup: int | None = None
    schedule: str | None = None
    max_epochs: float | None = None
    max_steps: int | None = None
    max_time: float | None = None
    eval_every: int | None = None
    seed: int | None = None
    precision: str | None = None
    out: str | None = None
    resume: str | None = None
    root: str = "checkpoints"


@dataclass
class Corpus:
    train_text_chars: int
    vocab: Tokenizer
    train_ids: torch.Tensor  # 1-D, memory-mapped from the run's token cache
    val_ids: torch.Tensor | None
    info: dict[str, Any]  # stored in config.json under "data"
    notices: list[str] = field(default_factory=list)


def _display(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def prepare_corpus(req: TrainRequest, run_dir: Path, vocab: Tokenizer | None = None) -> Corpus:
    """Read the corpus in streaming passes, build the vocabulary (unless given) and encode it
    into the run's token cache, which training memory-maps. Memory stays bounded however
    large the corpus is."""
    if not req.corpus:
        raise CorpusError("no corpus given: charrnn train FILE [FILE...] (or - for stdin)")
    sources = list(req.corpus)

    def chunks() -> Iterator[str]:
        return iter_corpus(sources, req.encoding, req.errors)

    stats = text_stats(chunks())
    name = _display(sources[0])
    val_sha = None
    if req.val is not None:
        val_file = req.val

        def val_chunks() -> Iterator[str]:
            return iter_corpus([val_file], req.encoding, req.errors)

        val_stats = text_stats(val_chunks())
        val_sha = val_stats.sha256
        cut, val_chars = stats.chars, val_stats.chars
        val_desc = req.val

        def parts() -> Iterator[tuple[str, str]]:
            yield from ((c, "") for c in chunks())
            yield from (("", c) for c in val_chunks())

    else:
        cut = int(stats.chars * (1.0 - req.val_fraction))
        val_chars = stats.chars - cut
        val_desc = f"the last {req.val_fraction:g} of the corpus"

        def parts() -> Iterator[tuple[str, str]]:
            return split_chunks(chunks(), cut)

    if cut < 2:
        raise CorpusError(f"{name}: only {cut} training characters; at least 2 are needed")
    if (req.val is not None or req.val_fraction > 0) and val_chars < 2:
        raise CorpusError(
            f"{name}: the validation split ({val_desc}) has {val_chars} characters; "
            "give more text, --val FILE, or --val-fraction 0"
        )
    notices = []
    if vocab is None and req.tokenizer != "char":
        vocab = train_subword((a for a, _ in parts() if a), req.tokenizer, req.vocab_size)
    elif vocab is None:
        counts = count_chars(a for a, _ in parts() if a)
        vocab = Vocab.from_counts(counts, min_count=req.min_char_count)
        bad = control_count(counts)
        if bad:
            notices.append(f"corpus holds {bad} NUL or other control characters; kept as they are")
    if len(vocab) < 2:
        raise CorpusError(
            f"{name}: no character occurs --min-char-count {req.min_char_count} times"
        )
    dtype = token_dtype(len(vocab))
    if isinstance(vocab, Vocab):
        n_train, n_val, unknown = encode_to_files(
            parts(), Encoder(vocab.stoi), dtype, run_dir / TOKENS_TRAIN, run_dir / TOKENS_VAL
        )
    else:
        n_train, n_val, unknown = encode_to_files(
            at_line_ends(parts()), vocab.encode, dtype, run_dir / TOKENS_TRAIN, run_dir / TOKENS_VAL
        )
    if unknown:
        notices.append(
            f"validation text has {unknown} characters not in the training vocabulary "
            "(scored as <UNK>)"
        )
    info = {
        "sources": [STDIN if p == STDIN else str(Path(p).resolve()) for p in sources],
        "val": None if req.val is None else str(Path(req.val).resolve()),
        "val_fraction": req.val_fraction,
        "encoding": req.encoding,
        "errors": req.errors,
        "min_char_count": req.min_char_count,
        "text_sha256": stats.sha256,
        "val_sha256": val_sha,
        "tokenizer": tokenizer_info(vocab),
        "train_text_chars": cut,
        "val_text_chars": val_chars,
        "train_chars": n_train,  # tokens (characters for the character tokenizer)
        "val_chars": n_val,
        "val_unknown": unknown,
        "token_dtype": dtype.name,
        "fingerprints": [fingerprint(p) for p in sources if p != STDIN]
        + ([fingerprint(req.val)] if req.val is not None else []),
    }
    return _open_corpus(run_dir, vocab, info, notices)


def _open_corpus(
    run_dir: Path, vocab: Tokenizer, info: dict[str, Any], notices: list[str]
) -> Corpus:
    dtype = np.dtype(info["token_dtype"])
    train_ids = open_tokens(run_dir / TOKENS_TRAIN, dtype, info["train_chars"])
    val_ids = open_tokens(run_dir / TOKENS_VAL, dtype, info["val_chars"])
    return Corpus(
        info["train_chars"],
        vocab,
        train_ids,
        val_ids if val_ids.numel() >= 2 else None,
        info,
        notices,
    )


def _reopen_corpus(run_dir: Path, vocab: Tokenizer, data: dict[str, Any]) -> Corpus:
    """The corpus of a run being resumed: its token cache if the sources are unchanged,
    else the sources encoded again (and checked to hold the same text)."""
    sources = [str(run_dir / s) if s == STDIN_COPY else s for s in data.get("sources", [])]
    files = [*sources, *([data["val"]] if data.get("val") else [])]
    missing = [p for p in files if not Path(p).is_file()]
    try:
        unchanged = not missing and [fingerprint(p) for p in files] == data.get("fingerprints")
        if unchanged and "token_dtype" in data:
            return _open_corpus(run_dir, vocab, data, [])
    except (OSError, CorpusError, KeyError, TypeError, ValueError):
        pass
    if missing:
        raise CorpusError(f"{missing[0]}: the run's corpus file is gone; resuming needs it")
    req = TrainRequest(
        corpus=tuple(sources),
        val=data.get("val"),
        val_fraction=data.get("val_fraction", 0.1),
        encoding=data.get("encoding", "utf-8"),
        errors=data.get("errors", "strict"),
        min_char_count=data.get("min_char_count", 1),
    )
    corpus = prepare_corpus(req, run_dir, vocab=vocab)
    if corpus.info["text_sha256"] != data.get("text_sha256"):
        raise CorpusError(
            f"{sources[0]}: the corpus changed since this run started; resuming needs the same text"
        )
    corpus.info = {**data, "fingerprints": corpus.info["fingerprints"]}
    return corpus


def auto_model_config(req: TrainRequest, n_train: int, vocab_size: int) -> ModelConfig:
    if req.tokenizer not in ("char", *KINDS):
        raise CharRNNError(f"--tokenizer {req.tokenizer}: expected char, bpe or unigram")
    cell = req.cell or "gru"
    if cell not in CELLS:
        raise CharRNNError(f"--cell {cell}: expected one of {', '.join(CELLS)}")
    hidden = req.hidden or (128 if n_train < 100_000 else 256 if n_train < 5_000_000 else 512)
    embed = req.embed_dim or (64 if vocab_size <= 256 else 128)
    if req.tie_weights:
        if req.embed_dim is not None and req.embed_dim != hidden:
            raise CharRNNError("--tie-weights needs --embed-dim equal to --hidden")
        embed = hidden
    if req.dropout is not None:
        dropout = req.dropout
    else:
        dropout = 0.2 if n_train < 100_000 else 0.1 if n_train < 1_000_000 else 0.0
    return ModelConfig(
        vocab_size=vocab_size,
        cell=cell,
        layers=req.layers or 2,
        hidden=hidden,
        embed_dim=embed,
        dropout=dropout,
        tie_weights=bool(req.tie_weights),
    )


def auto_precision(device: torch.device) -> str:
    """bf16 on GPUs that have it, else fp32."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def auto_train_config(
    req: TrainRequest, cell: str, n_train: int, device: torch.device | None = None
) -> tuple[TrainConfig, str | None]:
    """Training configuration, and a notice if the batch had to shrink to fit the corpus."""
    fit = fit_batch(n_train, req.batch_size or DEFAULT_BATCH, req.seq_len or DEFAULT_SEQ_LEN)
    notice = None
    if fit.shrunk:
        notice = (
            f"corpus is small ({n_train} training characters): using {fit.batch_size} streams of "
            f"{fit.seq_len}-character windows"
        )
    max_time = req.max_time
    if max_time is None and req.max_steps is None and req.max_epochs is None:
        max_time = DEFAULT_MAX_TIME
    lr = req.lr or {"gru": 8e-3, "lstm": 8e-3, "rnn": 2e-3}[cell]
    cfg = TrainConfig(
        batch_size=fit.batch_size,
        seq_len=fit.seq_len,
        lr=lr,
        weight_decay=0.01 if req.weight_decay is None else req.weight_decay,
        clip=1.0 if req.clip is None else req.clip,
        warmup_steps=50 if req.warmup is None else req.warmup,
        schedule=req.schedule or "cosine",
        max_epochs=req.max_epochs,
        max_steps=req.max_steps,
        max_time=max_time,
        eval_every=req.eval_every or 200,
        eval_share=None if req.eval_every else EVAL_SHARE,
        seed=1337 if req.seed is None else req.seed,
        precision=req.precision or auto_precision(device or torch.device("cpu")),
    )
    return cfg, notice


def metrics_every(tc: TrainConfig) -> int:
    """Steps between ``step`` records in metrics.jsonl: about ten per evaluation interval
    (every 20 steps when the run never evaluates)."""
    return max(1, tc.eval_every // 10) if tc.eval_every > 0 else 20


def _sig(x: float) -> float:
    """``x`` to 6 significant digits, to keep metrics.jsonl readable."""
    return float(f"{x:.6g}")


def _train_fields(loss: float | None, lr: float | None, rate: float | None) -> dict[str, Any]:
    return {
        "train_loss": None if loss is None else _sig(loss),
        "train_bits_per_char": None if loss is None else _sig(loss / LN2),
        "lr": None if lr is None else _sig(lr),
        "chars_per_sec": None if rate is None else round(rate),
    }


def _unique_run_dir(root: Path, stem: str) -> Path:
    cand = root / stem
    i = 2
    while cand.exists():
        cand = root / f"{stem}-{i}"
        i += 1
    return cand


class Run:
    """A prepared training run: call :meth:`train` to go."""

    def __init__(
        self,
        run_dir: Path,
        model: CharRNN,
        corpus: Corpus,
        train_config: TrainConfig,
        optimizer: torch.optim.Optimizer,
        state: TrainerState | None,
        created: bool,
        notices: list[str],
        dist: Dist = SINGLE,
    ) -> None:
        self.dist = dist
        self.run_dir = run_dir
        self.model = model
        self.corpus = corpus
        self.vocab = corpus.vocab
        self.train_config = train_config
        self.optimizer = optimizer
        self.state = state
        self.created = created
        self.notices = notices
        self.saved_step: int | None = state.step if state is not None else None
        self.last_saved: Path | None = None
        self.best_path: Path | None = None
        self.trainer: Trainer | None = None
        self._last_metrics: dict[str, Any] = {}
        self.metrics_log = ck.MetricsLog(run_dir)
        self._last_step: Stepped | None = None

    @property
    def chars_per_token(self) -> float:
        """Validation characters per token (1 for characters), for bits per character."""
        info = self.corpus.info
        tokens, chars = info.get("val_chars", 0), info.get("val_text_chars", 0)
        return chars / tokens if tokens and chars else 1.0

    @property
    def resumed(self) -> bool:
        return self.state is not None

    def config_json(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "format_version": ck.FORMAT_VERSION,
            "charrnn_version": __version__,
            "model": self.model.config.to_dict(),
            "tokenizer": tokenizer_info(self.vocab),
            "training": self.train_config.to_dict(),
            "data": self.corpus.info,
            "metrics": metrics,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def save(self, state: TrainerState, best: bool) -> Path | None:
        """Write a complete checkpoint for ``state`` and move the pointers (rank 0 only; with
        several processes every rank must call this, for the carried state is gathered)."""
        if self.trainer is not None:
            state = self.trainer.global_state()
        if not self.dist.is_main:
            self.saved_step = state.step
            return None
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise TrainingError(
                f"step {state.step}: the weights hold NaN or Inf; not saving them "
                f"(the last good checkpoint in {self.run_dir} is kept)"
            )
        opt_tensors, opt_meta = optimizer_to_plain(self.optimizer)
        st_tensors, st_json = trainer_state_to_plain(state)
        st_json["optimizer"] = opt_meta
        name = ck.checkpoint_name(state.step)
        path = ck.write_checkpoint(
            self.run_dir,
            name,
            {
                ck.CONFIG: self.config_json(self._metrics(state)),
                ck.VOCAB: self.vocab.to_dict(),
                ck.TRAINER_STATE: st_json,
            },
            {
                ck.MODEL: ck.model_tensors(self.model),
                ck.OPTIMIZER: opt_tensors,
                ck.TRAINER_TENSORS: st_tensors,
            },
            {MODEL_FILE: self.vocab.proto} if isinstance(self.vocab, SubwordTokenizer) else None,
        )
        ck.set_pointer(self.run_dir, ck.LATEST, name)
        if best or ck.read_pointer(self.run_dir, ck.BEST) is None:
            ck.set_pointer(self.run_dir, ck.BEST, name)
            self.best_path = path
        ck.prune(self.run_dir)
        self.saved_step = state.step
        self.last_saved = path
        return path

    def _metrics(self, state: TrainerState) -> dict[str, Any]:
        m = dict(self._last_metrics)
        m.update(
            step=state.step,
            tokens=state.tokens,
            elapsed=round(state.elapsed, 3),
            train_loss=state.train_loss,
            best_val_loss=state.best_val,
            best_step=state.best_step,
        )
        return m

    def _on_event(self, event: Event) -> None:
        self._log_metrics(event)
        if isinstance(event, Evaluated):
            self._last_metrics = {
                "val_loss": event.val.nats,
                "val_nats_per_char": event.val.nats_per_char,
                "val_bits_per_char": event.val.bits,
                "val_perplexity": event.val.perplexity,
                "val_tokens": event.val.tokens,
            }
            assert self.trainer is not None
            self.save(self.trainer.state, best=event.is_best)

    def train(
        self, callbacks: Sequence[Callback] = (), should_stop: Callable[[], bool] | None = None
    ) -> TrainerState:
        """Train until a limit or ``should_stop()``; the last state is always saved."""
        self.trainer = Trainer(
            self.model,
            self.corpus.train_ids,
            self.corpus.val_ids,
            self.train_config,
            callbacks=[self._on_event, *callbacks],
            state=self.state,
            optimizer=self.optimizer,
            should_stop=should_stop,
            dist=self.dist,
            chars_per_token=self.chars_per_token,
        )
        try:
            state = self.trainer.run()
        except BaseException:
            self._discard_if_empty()
            raise
        finally:
            self.metrics_log.close()
        if self.saved_step != state.step:
            self.save(state, best=False)
        return state

    def _log_metrics(self, event: Event) -> None:
        """Append what ``event`` measured to metrics.jsonl (step records only now and then)."""
        assert self.trainer is not None
        if not self.dist.is_main:
            return
        s = self.trainer.state
        common = {"step": event.step, "time": _sig(s.elapsed), "chars": s.tokens}
        record: dict[str, Any]
        if isinstance(event, Started):
            record = {"event": "start", **common, "resumed": event.resumed}
            record["parameters"] = event.parameters
        elif isinstance(event, Stepped):
            self._last_step = event
            if event.step % metrics_every(self.train_config) != 0:
                return
            record = {"event": "step", **common, "epoch": _sig(event.epoch)}
            record.update(_train_fields(event.loss, event.lr, event.tokens_per_sec))
        elif isinstance(event, Evaluated):
            last = self._last_step
            record = {"event": "eval", **common, "epoch": _sig(event.epoch)}
            record.update(
                _train_fields(
                    event.train_loss,
                    last.lr if last else None,
                    last.tokens_per_sec if last else None,
                )
            )
            record.update(
                val_loss=_sig(event.val.nats),
                val_bits_per_char=_sig(event.val.bits),
                best=event.is_best,
            )
        elif isinstance(event, Finished):
            record = {"event": "end", **common, "reason": event.reason}
        else:
            return
        record["wall"] = round(time.time(), 3)
        self.metrics_log.write(record)

    def _discard_if_empty(self) -> None:
        """Remove the run folder this run created if no checkpoint made it to disk."""
        if self.created and self.dist.is_main and not ck.checkpoint_folders(self.run_dir):
            shutil.rmtree(self.run_dir, ignore_errors=True)


def expected_epochs(tc: TrainConfig, n_train: int, step_seconds: float) -> float | None:
    """Passes over ``n_train`` training tokens a new run will make under the limits of ``tc``,
    a time limit being turned into steps by ``step_seconds`` (inf: unknown); None if unknown."""
    per_step = tc.batch_size * tc.seq_len
    steps = [float(tc.max_steps)] if tc.max_steps else []
    if tc.max_time and 0 < step_seconds < float("inf"):
        steps.append(tc.max_time * (1.0 - EVAL_SHARE) / step_seconds)
    epochs = [s * per_step / max(1, n_train) for s in steps]
    if tc.max_epochs:
        epochs.append(tc.max_epochs)
    return min(epochs) if epochs else None


def fit_dropout_to_length(run: Run, step_seconds: float) -> str | None:
    """Give a new run that will pass over its corpus many times at least LONG_RUN_DROPOUT (for a
    run whose dropout the user left to the defaults); returns a notice when it does."""
    if run.resumed or run.model.config.dropout >= LONG_RUN_DROPOUT:
        return None
    epochs = expected_epochs(run.train_config, int(run.corpus.train_ids.numel()), step_seconds)
    if epochs is None or epochs < LONG_RUN_EPOCHS:
        return None
    run.model.set_dropout(LONG_RUN_DROPOUT)
    return f"about {epochs:.0f} passes over the corpus expected: dropout {LONG_RUN_DROPOUT:g}"


def start_run(req: TrainRequest, device: torch.device, dist: Dist = SINGLE) -> Run:
    """Prepare a new run: create its folder, read and encode the corpus, build the model.

    With several processes, rank 0 prepares the folder and the token cache; the others wait
    and then open the same cache."""
    if dist.enabled:
        return _start_run_distributed(req, device, dist)
    if not req.corpus:
        raise CorpusError("no corpus given: charrnn train FILE [FILE...] (or - for stdin)")
    if req.corpus.count(STDIN) > 1:
        raise CorpusError("standard input (-) can be named only once")
    if req.tokenizer not in ("char", *KINDS):
        raise CharRNNError(f"--tokenizer {req.tokenizer}: expected char, bpe or unigram")
    cell = req.cell or "gru"
    if cell not in CELLS:
        raise CharRNNError(f"--cell {cell}: expected one of {', '.join(CELLS)}")
    for p in req.corpus:
        if p != STDIN and not Path(p).is_file():
            read_text(p)  # raises the precise error (missing, a directory, unreadable)
    if req.out:
        run_dir = Path(req.out)
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise CharRNNError(
                f"{run_dir}: already exists and is not empty; use --resume {run_dir} to continue "
                "it, or choose another --out"
            )
    else:
        first = req.corpus[0]
        stem = "stdin" if first == STDIN else Path(first).stem or "corpus"
        run_dir = _unique_run_dir(Path(req.root), f"{stem}-{cell}")
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CharRNNError(f"{run_dir}: cannot create the run folder ({e.strerror})") from None
    try:
        if STDIN in req.corpus:
            # Keep standard input in the run so that --resume can read the same text again.
            ck.copy_stream_atomic(sys.stdin.buffer, run_dir / STDIN_COPY)
            paths = tuple(str(run_dir / STDIN_COPY) if p == STDIN else p for p in req.corpus)
            corpus = prepare_corpus(replace(req, corpus=paths), run_dir)
            corpus.info["sources"] = [
                STDIN_COPY if p == STDIN else s
                for p, s in zip(req.corpus, corpus.info["sources"], strict=True)
            ]
        else:
            corpus = prepare_corpus(req, run_dir)
        notices = list(corpus.notices)
        mc = auto_model_config(req, corpus.train_text_chars, len(corpus.vocab))
        tc, notice = auto_train_config(req, mc.cell, corpus.train_ids.numel(), device)
        if notice:
            notices.append(notice)
        torch.manual_seed(tc.seed)
        model = CharRNN(mc).to(device)
        optimizer = make_optimizer(model, tc)
    except BaseException:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return Run(run_dir, model, corpus, tc, optimizer, None, created, notices)


def _start_run_distributed(req: TrainRequest, device: torch.device, dist: Dist) -> Run:
    run: Run | None = None
    error = ""
    if dist.is_main:
        try:
            run = start_run(req, device)
        except CharRNNError as e:
            error = str(e) or "error"
    # Rank 0 shares where the run is (or its error); the others open the same token cache.
    shared = json.dumps(
        {"error": error}
        if run is None
        else {
            "run_dir": str(run.run_dir),
            "info": run.corpus.info,
            "vocab": run.vocab.to_dict(),
            "proto": base64.b64encode(run.vocab.proto).decode("ascii")
            if isinstance(run.vocab, SubwordTokenizer)
            else None,
        }
    )
    msg = json.loads(broadcast_text(dist, shared if dist.is_main else None, device))
    if msg.get("error"):
        raise CharRNNError(msg["error"])
    if run is not None:
        run.dist = dist
        return run
    run_dir = Path(msg["run_dir"])
    tok: Tokenizer
    if msg.get("proto"):
        tok = SubwordTokenizer(base64.b64decode(msg["proto"]), msg["vocab"]["type"])
    else:
        tok = Vocab.from_dict(msg["vocab"])
    corpus = _open_corpus(run_dir, tok, msg["info"], [])
    mc = auto_model_config(req, corpus.train_text_chars, len(corpus.vocab))
    tc, _ = auto_train_config(req, mc.cell, corpus.train_ids.numel(), device)
    torch.manual_seed(tc.seed)  # same initial weights as rank 0 (DDP also broadcasts them)
    model = CharRNN(mc).to(device)
    return Run(run_dir, model, corpus, tc, make_optimizer(model, tc), None, False, [], dist)


_RESUME_OVERRIDABLE = ("max_epochs", "max_steps", "max_time", "eval_every", "precision")
_RESUME_FIXED = (
    "val",
    "cell",
    "layers",
    "hidden",
    "embed_dim",
    "dropout",
    "tie_weights",
    "batch_size",
    "seq_len",
    "lr",
    "weight_decay",
    "clip",
    "warmup",
    "schedule",
    "seed",
)


def resume_run(req: TrainRequest, device: torch.device, dist: Dist = SINGLE) -> Run:
    """Continue the run in ``req.resume`` from its newest complete checkpoint."""
    assert req.resume is not None
    run_dir = Path(req.resume)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder to resume")
    fixed = [name for name in _RESUME_FIXED if getattr(req, name) is not None]
    if fixed or req.corpus:
        what = "the corpus" if req.corpus else "--" + fixed[0].replace("_", "-")
        raise CharRNNError(
            f"--resume continues {run_dir} as it was set up; {what} cannot be changed "
            "(only --max-time, --max-steps, --max-epochs, --eval-every, --device, --threads)"
        )
    if dist.is_main:
        ck.clean_temporary(run_dir)
    ckpt = ck.newest_checkpoint(run_dir)
    if ckpt is None:
        raise CheckpointError(f"{run_dir}: no complete checkpoint to resume from")
    loaded = ck.load_model(ckpt, device)
    config = loaded.config
    try:
        data = config["data"]
        tc = TrainConfig(**config["training"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt / ck.CONFIG}: bad training or data section ({e})") from None
    changes = {k: getattr(req, k) for k in _RESUME_OVERRIDABLE if getattr(req, k) is not None}
    if {"max_time", "max_steps", "max_epochs"} & changes.keys():
        # New limits replace the old ones rather than adding to them.
        changes = {"max_time": None, "max_steps": None, "max_epochs": None, **changes}
    if "eval_every" in changes:
        changes["eval_share"] = None  # evaluate as asked
    tc = replace(tc, **changes)
    if dist.is_main:
        corpus = _reopen_corpus(run_dir, loaded.vocab, data)
    barrier(dist)
    if not dist.is_main:
        corpus = _open_corpus(run_dir, loaded.vocab, data, [])
    model = loaded.model
    model.train()
    optimizer = make_optimizer(model, tc)
    st_json = ck.read_json(ckpt / ck.TRAINER_STATE)
    try:
        opt_tensors = ck.read_tensors(ckpt / ck.OPTIMIZER)
        optimizer_from_plain(optimizer, opt_tensors, st_json["optimizer"])
        st_tensors = ck.read_tensors(ckpt / ck.TRAINER_TENSORS)
        state = trainer_state_from_plain(model.config.cell, st_tensors, st_json, device)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt}: cannot restore the training state ({e})") from None
    return Run(run_dir, model, corpus, tc, optimizer, state, False, list(corpus.notices), dist)
