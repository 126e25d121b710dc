"""A training run on disk as it trains: the model, corpus and plan of a run folder, saved as
training goes (:mod:`charrnn.run.start` makes one; :meth:`Run.train` trains it).

It knows nothing of the command line and prints nothing. On each ``Evaluated`` event and at the
end :meth:`Run.save` writes a complete checkpoint (:mod:`charrnn.store.checkpoint`) and moves
the pointers; every event goes to ``metrics.jsonl`` (:mod:`charrnn.run.recorder`); at its end
the folder's writer lock is released.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..errors import TrainingError
from ..evaluation import token_lengths
from ..model.rnn import CharRNN
from ..store import checkpoint as ck
from ..store import saving
from ..store.metrics import MetricsLog
from ..text.tokenizers import MODEL_FILE, SubwordTokenizer, tokenizer_info
from ..training.config import TrainConfig, TrainerState
from ..training.distributed import SINGLE, Dist
from ..training.events import Callback, Evaluated, Event, Finished
from ..training.loop import Trainer
from ..units import nats_per_char
from . import folder
from .corpus import Corpus
from .loadwatch import LoadWatch
from .plan import Plan
from .recorder import MetricsRecorder, metrics_every
from .resume import training_files

__all__ = ["Run"]


class Run:
    """A prepared training run: call :meth:`train` to go."""

    def __init__(
        self,
        run_dir: Path,
        plan: Plan,
        model: CharRNN,
        corpus: Corpus,
        optimizer: torch.optim.Optimizer,
        *,
        state: TrainerState | None = None,
        created: bool = False,
        notices: Sequence[str] = (),
        dist: Dist = SINGLE,
        lock: folder.RunLock | None = None,
        metrics: dict[str, Any] | None = None,
        init_from: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.plan = plan
        self.model = model
        self.corpus = corpus
        self.vocab = corpus.vocab
        self.optimizer = optimizer
        self.state = state
        self.created = created  # this process made the folder: remove it if nothing is saved
        self.notices = [*notices, *plan.notes]
        self.dist = dist
        self.lock = lock or folder.RunLock()  # the writer lock of run_dir (rank 0 holds it)
        self.init_from = init_from  # where a fine-tuned run started (config.json's init_from)
        # What the newest checkpoint on disk holds: its step, and whether it was saved finished.
        self.saved: tuple[int, bool] | None = (state.step, state.finished) if state else None
        self.trainer: Trainer | None = None
        self.stop_reason: str | None = None  # Finished.reason of the last session
        # Figures of the last evaluation and the best so far, carried into config.json.
        keep = ("val_", "best_val_")
        self.last_metrics = {k: v for k, v in (metrics or {}).items() if k.startswith(keep)}
        self.metrics_log = MetricsLog(run_dir)

    @property
    def train_config(self) -> TrainConfig:
        return self.plan.training

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
            "plan": self.plan.machine(),
            "metrics": metrics,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

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
        path = saving.write_checkpoint(
            self.run_dir,
            name,
            {
                ck.CONFIG: self.config_json(self.metrics(state)),
                ck.VOCAB: self.vocab.to_dict(),
                ck.TRAINER_STATE: st_json,
            },
            {
                ck.MODEL: saving.model_tensors(self.model),
                **st_tensors,
            },
            {MODEL_FILE: self.vocab.proto} if isinstance(self.vocab, SubwordTokenizer) else None,
        )
        saving.set_pointer(self.run_dir, ck.LATEST, name)
        if best or state.best_step is None:
            # Until the run's first validation, "best" is the most trained checkpoint: one
            # never validated must not stay best over a later one (an interrupted session).
            saving.set_pointer(self.run_dir, ck.BEST, name)
        saving.prune(self.run_dir)
        self.saved = (state.step, state.finished)
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
        if isinstance(event, Finished):
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
        self,
        callbacks: Sequence[Callback] = (),
        should_stop: Callable[[], bool] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> TrainerState:
        """Train until a limit or ``should_stop()``; the last state is always saved. The run
        ends here: its folder's lock is released when this returns or raises. ``on_note``
        hears what changes mid-run (the load watch choosing another thread count)."""
        every = metrics_every(self.train_config.eval_every)
        cpt = self.corpus.train_chars_per_token
        recorder = MetricsRecorder(self.metrics_log, every, self._clock, cpt)
        mine: list[Callback] = [recorder] if self.dist.is_main else []
        watch = _load_watch(self.plan, self.model, on_note)
        self.trainer = Trainer(
            self.model,
            self.corpus.train_ids,
            self.corpus.val_ids,
            self.train_config,
            callbacks=[*mine, self._on_event, *callbacks, *watch],
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


def _load_watch(
    plan: Plan, model: CharRNN, on_note: Callable[[str], None] | None
) -> list[Callback]:
    """The load watch, when the plan chose the thread count (it may choose again)."""
    tc = plan.training
    if plan.threads is None:
        return []
    watch = LoadWatch(model, tc.batch_size, tc.seq_len, plan.thread_candidates, tc.precision)
    watch.report = on_note
    return [watch]
