"""A training run on disk: start or resume a run folder, train, save as training goes.

This wires the corpus (:mod:`charrnn.run.corpus`), the defaults (:mod:`charrnn.run.defaults`), the
model,
the trainer (:mod:`charrnn.training.loop`) and the checkpoint files
(:mod:`charrnn.store.checkpoint`,
:mod:`charrnn.store.metrics`) together for ``charrnn train``; it knows nothing of the command line
and
prints nothing. The path of ``charrnn train FILE``::

    start_run(request)                 resume_run(request)
      check_sources, make the folder     lock the folder (folder.lock_on_main: one writer)
      and lock it (folder.claim)      newest complete checkpoint -> model, vocabulary, config
      corpus.read_sources  (3 passes)    corpus.reopen_corpus  (token cache, or encode again)
      defaults -> ModelConfig, TrainConfig     the saved TrainConfig, new limits applied
      CharRNN or --init-from's, AdamW    optimizer + trainer state restored (state.py)
                 \\                      /
                  Run.fit_to_machine()   fitting.py: threads, precision, long-run model
                  Run.train()            Trainer.run(); on each Evaluated event and at the end
                                         Run.save() -> checkpoint.write_checkpoint + pointers;
                                         every event -> metrics.jsonl; at its end, unlock
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..errors import CharRNNError, CheckpointError, TrainingError
from ..evaluation import token_lengths
from ..model.rnn import CharRNN
from ..store import checkpoint as ck
from ..store.metrics import MetricsLog, MetricsRecorder, metrics_every
from ..store.resume_state import restore_training, training_files
from ..text.tokenizers import MODEL_FILE, SubwordTokenizer, Tokenizer, tokenizer_info
from ..text.vocab import Vocab
from ..training.distributed import SINGLE, Dist, barrier, broadcast_text
from ..training.events import Callback, Evaluated, Event, Finished, Stepped
from ..training.loop import TrainConfig, Trainer, TrainerState, make_optimizer
from ..units import nats_per_char
from . import defaults, finetune, fitting, folder
from .corpus import Corpus, check_sources, open_corpus, read_sources, reopen_corpus
from .defaults import TrainRequest
from .probes import MachineFit

__all__ = ["MachineFit", "Run", "TrainRequest", "resume_run", "start_run"]


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
        request: TrainRequest | None = None,
        metrics: dict[str, Any] | None = None,
        lock: folder.RunLock | None = None,
    ) -> None:
        self.dist = dist
        self.lock = lock or folder.RunLock()  # the writer lock of run_dir (rank 0 holds it)
        self.run_dir = run_dir
        self.model = model
        self.corpus = corpus
        self.vocab = corpus.vocab
        self.train_config = train_config
        self.optimizer = optimizer
        self.state = state
        self.created = created
        self.notices = notices
        self.request = request or TrainRequest()
        # What the newest checkpoint on disk holds: its step, and whether it was saved finished.
        self.saved: tuple[int, bool] | None = (state.step, state.finished) if state else None
        self.last_saved: Path | None = None
        self.best_path: Path | None = None
        self.trainer: Trainer | None = None
        self.stop_reason: str | None = None  # Finished.reason of the last session
        # Figures of the last evaluation and the best so far, carried into config.json.
        keep = ("val_", "best_val_")
        self.last_metrics = {k: v for k, v in (metrics or {}).items() if k.startswith(keep)}
        self.metrics_log = MetricsLog(run_dir)
        self._last_step: Stepped | None = None
        self.init_from: dict[str, Any] | None = None  # where a fine-tuned run started
        self.load_watch: fitting.LoadWatch | None = None  # set by fit_to_machine

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
            "init_from": self.init_from,
            "metrics": metrics,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def fit_to_machine(self, threads: int | None = None) -> MachineFit:
        """Apply the machine-dependent defaults (threads, precision, dropout) before the
        first step: :func:`charrnn.run.fitting.fit_to_machine`."""
        return fitting.fit_to_machine(self, threads)

    def replace_model(self, model: CharRNN) -> None:
        """Train ``model`` instead (a new single-process run, before its first step), with a
        fresh optimizer; a folder named after the old cell is renamed after the new one."""
        assert not self.resumed and not self.dist.enabled
        cell = model.config.cell
        if self.request.out is None and cell != self.model.config.cell:
            self.run_dir, self.lock = folder.rename_new(
                self.run_dir, self.lock, self.request.corpus[0], cell
            )
            self.metrics_log = MetricsLog(self.run_dir)
        self.model = model
        self.optimizer = make_optimizer(model, self.train_config)

    def save(self, state: TrainerState, best: bool) -> Path | None:
        """Write a complete checkpoint for ``state`` and move the pointers (rank 0 only; with
        several processes every rank must call this, for the carried state is gathered)."""
        if self.trainer is not None:
            state = self.trainer.global_state()
        if not self.dist.is_main:
            self.saved = (state.step, state.finished)
            return None
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise TrainingError(
                f"step {state.step}: the weights hold NaN or Inf; not saving them "
                f"(the last good checkpoint in {self.run_dir} is kept)"
            )
        st_json, st_tensors = training_files(self.optimizer, state)
        name = ck.checkpoint_name(state.step)
        path = ck.write_checkpoint(
            self.run_dir,
            name,
            {
                ck.CONFIG: self.config_json(self.metrics(state)),
                ck.VOCAB: self.vocab.to_dict(),
                ck.TRAINER_STATE: st_json,
            },
            {
                ck.MODEL: ck.model_tensors(self.model),
                **st_tensors,
            },
            {MODEL_FILE: self.vocab.proto} if isinstance(self.vocab, SubwordTokenizer) else None,
        )
        ck.set_pointer(self.run_dir, ck.LATEST, name)
        if best or ck.read_pointer(self.run_dir, ck.BEST) is None:
            ck.set_pointer(self.run_dir, ck.BEST, name)
            self.best_path = path
        ck.prune(self.run_dir)
        self.saved = (state.step, state.finished)
        self.last_saved = path
        return path

    def metrics(self, state: TrainerState) -> dict[str, Any]:
        """The ``metrics`` section of config.json: losses per token (``*_loss``) and the
        per-character figures of the last and the best validation (see units.py)."""
        m, cpt = dict(self.last_metrics), self.corpus.train_chars_per_token
        train_per_char = None
        if state.train_loss is not None:
            train_per_char = nats_per_char(state.train_loss, cpt)
        m.update(
            step=state.step,
            tokens=state.tokens,
            characters_seen=round(state.tokens * cpt),
            elapsed=round(state.elapsed, 3),
            train_loss=state.train_loss,
            train_nats_per_char=train_per_char,
            best_val_loss=state.best_val,
            best_step=state.best_step,
        )
        return m

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Stepped):
            self._last_step = event
        elif isinstance(event, Finished):
            self.stop_reason = event.reason
        elif isinstance(event, Evaluated):
            self.last_metrics = {"val_loss": event.val.nats_per_token, **event.val.to_dict("val_")}
            if event.best is not None:
                self.last_metrics.update(event.best.to_dict("best_val_"))
            assert self.trainer is not None
            self.save(self.trainer.state, best=event.is_best)

    def _clock(self) -> tuple[float, int]:
        """(seconds of training, characters seen): tokens times the corpus's characters per
        token for subword runs, exact for characters."""
        assert self.trainer is not None
        s = self.trainer.state
        return s.elapsed, round(s.tokens * self.corpus.train_chars_per_token)

    def train(
        self, callbacks: Sequence[Callback] = (), should_stop: Callable[[], bool] | None = None
    ) -> TrainerState:
        """Train until a limit or ``should_stop()``; the last state is always saved. The run
        ends here: its folder's lock is released when this returns or raises."""
        every = metrics_every(self.train_config.eval_every)
        cpt = self.corpus.train_chars_per_token
        recorder = MetricsRecorder(self.metrics_log, every, self._clock, cpt)
        mine: list[Callback] = [recorder] if self.dist.is_main else []
        self.trainer = Trainer(
            self.model,
            self.corpus.train_ids,
            self.corpus.val_ids,
            self.train_config,
            callbacks=[*mine, self._on_event, *callbacks, *filter(None, [self.load_watch])],
            state=self.state,
            optimizer=self.optimizer,
            should_stop=should_stop,
            dist=self.dist,
            chars_per_token=self.corpus.train_chars_per_token,
            val_lengths=token_lengths(self.vocab.itos),
            val_chars=self.corpus.val_text_chars,
        )
        try:
            try:
                state = self.trainer.run()
            except (RuntimeError, MemoryError) as e:  # torch's own errors (memory, overflow)
                self._discard_if_empty()
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise TrainingError(
                    f"training stopped at step {self.trainer.state.step}: {first} "
                    f"(checkpoints already in {self.run_dir} are kept)"
                ) from e
            except BaseException:
                self._discard_if_empty()
                raise
            finally:
                self.metrics_log.close()
            if self.saved != (state.step, state.finished):  # e.g. "finished" not on disk yet
                self.save(state, best=False)
        finally:
            self.close()
        return state

    def close(self) -> None:
        """End the run without training (or again): let the next writer into its folder. A run
        never closed keeps its lock until the process ends, when the OS drops it."""
        self.lock.release()

    def _discard_if_empty(self) -> None:
        """Remove the run folder this run created if no checkpoint made it to disk."""
        if self.created and self.dist.is_main:
            folder.discard_if_empty(self.run_dir)


def start_run(req: TrainRequest, device: torch.device, dist: Dist = SINGLE) -> Run:
    """Prepare a new run: create its folder, read and encode the corpus, build the model.

    With several processes, rank 0 prepares the folder and the token cache; the others wait
    and then open the same cache. Raises CharRNNError (CorpusError, ...) for what the user can
    fix; a folder this call created is removed again on any error."""
    if dist.enabled:
        return _start_run_distributed(req, device, dist)
    spec = req.corpus_spec()
    check_sources(spec)
    defaults.check_choices(req)
    req, parent = finetune.prepare(req)  # --init-from: the parent's model and vocabulary
    cell = req.cell or defaults.DEFAULT_CELL
    run_dir, created, lock = folder.claim(req.out, req.corpus[0], cell, req.root)
    try:
        corpus = read_sources(spec, run_dir, parent.vocab if parent else None)
        mc, tc, notice = finetune.configs(req, corpus, device)
        torch.manual_seed(tc.seed)
        model = finetune.initial_model(mc, parent, corpus.vocab).to(device)
        opt = make_optimizer(model, tc)
    except BaseException:
        if created:
            folder.discard(run_dir)
        lock.release()
        raise
    notices = [*corpus.notices, *([notice] if notice else [])]
    run = Run(run_dir, model, corpus, tc, opt, None, created, notices, request=req, lock=lock)
    run.init_from = parent.origin if parent else None
    return run


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
    tok: Tokenizer
    if msg.get("proto"):
        tok = SubwordTokenizer(base64.b64decode(msg["proto"]), msg["vocab"]["type"])
    else:
        tok = Vocab.from_dict(msg["vocab"])
    run_dir = Path(msg["run_dir"])
    corpus = open_corpus(run_dir, tok, msg["info"])
    mc, tc, _ = finetune.configs(finetune.prepare(req)[0], corpus, device)
    torch.manual_seed(tc.seed)  # same initial weights as rank 0 (DDP also broadcasts them)
    model = CharRNN(mc).to(device)
    opt = make_optimizer(model, tc)
    return Run(run_dir, model, corpus, tc, opt, None, False, [], dist, request=req)


def resume_run(req: TrainRequest, device: torch.device, dist: Dist = SINGLE) -> Run:
    """Continue the run in ``req.resume`` from its newest complete checkpoint. Raises
    CheckpointError for a missing or damaged run, CharRNNError for options it cannot change."""
    assert req.resume is not None
    run_dir = Path(req.resume)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder to resume")
    defaults.check_resume_request(req, run_dir)
    lock = folder.lock_on_main(run_dir, dist, device)  # before anything is written
    try:
        if dist.is_main:
            ck.clean_temporary(run_dir)
        ckpt = ck.newest_checkpoint(run_dir)
        if ckpt is None:
            raise CheckpointError(f"{run_dir}: no complete checkpoint to resume from")
        loaded = ck.load_model(ckpt, device)
        config = loaded.config
        if not isinstance(config.get("data"), dict) or not isinstance(config.get("training"), dict):
            raise CheckpointError(f"{ckpt / ck.CONFIG}: bad training or data section")
        try:
            tc = defaults.resumed_train_config(req, config["training"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{ckpt / ck.CONFIG}: bad training section ({e})") from None
        if dist.is_main:
            corpus = reopen_corpus(run_dir, loaded.vocab, config["data"])
        barrier(dist)
        if not dist.is_main:
            corpus = open_corpus(run_dir, loaded.vocab, config["data"])
        model = loaded.model
        model.train()
        optimizer, state = restore_training(ckpt, model, tc, device)
        run = Run(
            run_dir,
            model,
            corpus,
            tc,
            optimizer,
            state,
            False,
            list(corpus.notices),
            dist,
            request=req,
            metrics=config.get("metrics") if isinstance(config.get("metrics"), dict) else None,
            lock=lock,
        )
        run.init_from = finetune.recorded_origin(config)
        return run
    except BaseException:
        lock.release()
        raise
