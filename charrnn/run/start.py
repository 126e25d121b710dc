"""The one way into training: :func:`open_run` turns a request into a :class:`Run` ready to
train, for ``charrnn train`` and ``charrnn.train`` alike. The path of ``charrnn train FILE``::

    new run (request.corpus)                 resumed run (request.resume)
      request checked (request.py)             request checked (request.py)
      corpus files readable (corpus.py)        lock the folder (one writer, folder.py)
      --init-from: load the parent             newest complete checkpoint -> model, vocabulary
      read + encode the corpus (3 passes)      corpus.reopen_corpus (token cache, or again)
        into a staging folder (or --out)       the saved TrainConfig, new limits applied
      plan.plan_new_run: configs + probes      plan.plan_resumed_run: threads probed
      claim the folder under Plan.name         optimizer + trainer state restored (resume.py)
      seed, build the model once, AdamW
                       \\                      /
                        apply the plan's threads -> Run (session.py) -> Run.train()

With several processes (torchrun) rank 0 prepares the folder, the token cache and the plan
and shares them; the other ranks open the same cache and build the model from the same plan.
"""

from __future__ import annotations

import base64
import json
import shlex
from pathlib import Path

import torch

from ..errors import CharRNNError, CheckpointError
from ..model.rnn import CharRNN
from ..store import checkpoint as ck
from ..store import saving
from ..text.tokenizers import SubwordTokenizer, Tokenizer
from ..text.vocab import Vocab
from ..training.distributed import SINGLE, Dist, barrier, broadcast_text
from ..training.loop import make_optimizer
from . import finetune, folder
from .corpus import check_sources, open_corpus, read_sources, reopen_corpus
from .plan import Plan, check_device, plan_new_run, plan_resumed_run, resumed_train_config
from .request import TrainRequest
from .resume import restore_training
from .session import Run

__all__ = ["open_run"]


def open_run(
    req: TrainRequest, device: torch.device, dist: Dist = SINGLE, threads: int | None = None
) -> Run:
    """A new or resumed run (as ``req`` says), planned, its folder claimed and locked, its model
    built: call :meth:`Run.train` to go. ``threads``: the user's CPU thread count (None: the
    plan measures the faster of one and all cores); the plan's choice is applied here and
    stays set for this process (``torch.set_num_threads``).

    Raises CharRNNError (CorpusError, CheckpointError, OptionError, RunBusy) for what the user
    can fix; a folder this call created is removed again on any error."""
    check_device(req, device)
    if threads:
        torch.set_num_threads(threads)
    run = _resume(req, device, dist, threads) if req.resume else _start(req, device, dist, threads)
    if run.plan.threads is not None:
        torch.set_num_threads(run.plan.threads)
    return run


def _start(req: TrainRequest, device: torch.device, dist: Dist, threads: int | None) -> Run:
    if dist.enabled:
        return _start_distributed(req, device, dist)
    return _start_here(req, device, dist, threads)


def _start_here(req: TrainRequest, device: torch.device, dist: Dist, threads: int | None) -> Run:
    """A new run prepared by this process (the only one, or rank 0 of several)."""
    check_sources(req.corpus)
    req, parent = finetune.prepare(req)  # --init-from: the parent's model and vocabulary
    if req.out:
        work, created, lock = folder.claim(req.out)
    else:
        work, created, lock = folder.stage(req.root), True, folder.RunLock()
    try:
        corpus = read_sources(req.corpus, work, parent.vocab if parent else None)
        plan = plan_new_run(req, corpus, device, dist, threads)
        run_dir = work
        if plan.name is not None:
            run_dir, lock = folder.adopt(work, plan.name)
            corpus = open_corpus(run_dir, corpus.vocab, corpus.info, corpus.notices)
        torch.manual_seed(plan.training.seed)
        model = finetune.initial_model(plan.model, parent, corpus.vocab).to(device)
        opt = make_optimizer(model, plan.training)
    except BaseException:
        lock.release()
        if created:
            folder.discard(work)
        raise
    origin = parent.origin if parent else None
    return Run(
        run_dir,
        plan,
        model,
        corpus,
        opt,
        created=created,
        notices=corpus.notices,
        dist=dist,
        lock=lock,
        init_from=origin,
    )


def _start_distributed(req: TrainRequest, device: torch.device, dist: Dist) -> Run:
    run: Run | None = None
    error = ""
    if dist.is_main:
        try:
            run = _start_here(req, device, dist, None)
        except CharRNNError as e:
            error = str(e) or "error"
    # Rank 0 shares where the run is and its plan (or its error); the others open the same
    # token cache and build the same model.
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
            "plan": run.plan.to_dict(),
        }
    )
    msg = json.loads(broadcast_text(dist, shared if dist.is_main else None, device))
    if msg.get("error"):
        raise CharRNNError(msg["error"])
    if run is not None:
        return run
    tok: Tokenizer
    if msg.get("proto"):
        tok = SubwordTokenizer(base64.b64decode(msg["proto"]), msg["vocab"]["type"])
    else:
        tok = Vocab.from_dict(msg["vocab"])
    run_dir = Path(msg["run_dir"])
    corpus = open_corpus(run_dir, tok, msg["info"])
    plan = Plan.from_dict(msg["plan"])
    torch.manual_seed(plan.training.seed)  # same initial weights as rank 0 (DDP also broadcasts)
    model = CharRNN(plan.model).to(device)
    return Run(run_dir, plan, model, corpus, make_optimizer(model, plan.training), dist=dist)


def _check_resumable(run_dir: Path) -> None:
    """Raise CheckpointError unless ``run_dir`` is a run folder with a checkpoint."""
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder to resume")
    if not ck.is_run_dir(run_dir):
        if (run_dir / ck.CONFIG).is_file():
            raise CheckpointError(
                f"{run_dir}: a checkpoint, not a run folder; resume its run: --resume "
                f"{shlex.quote(str(run_dir.parent))}"
            )
        raise CheckpointError(f"{run_dir}: not a run folder (no complete checkpoint in it)")


def _resume(req: TrainRequest, device: torch.device, dist: Dist, threads: int | None) -> Run:
    """Continue the run in ``req.resume`` from its newest complete checkpoint. Raises
    CheckpointError for a missing or damaged run."""
    assert req.resume is not None
    run_dir = Path(req.resume)
    _check_resumable(run_dir)  # before the lock: a refusal writes nothing
    lock = folder.lock_on_main(run_dir, dist, device)  # before anything is written
    try:
        if dist.is_main:
            saving.clean_temporary(run_dir)
        ckpt = ck.newest_checkpoint(run_dir)
        if ckpt is None:
            raise CheckpointError(f"{run_dir}: no complete checkpoint to resume from")
        loaded = ck.load_model(ckpt, device)
        config = loaded.config
        if not isinstance(config.get("data"), dict) or not isinstance(config.get("training"), dict):
            raise CheckpointError(f"{ckpt / ck.CONFIG}: bad training or data section")
        try:
            tc = resumed_train_config(req, config["training"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{ckpt / ck.CONFIG}: bad training section ({e})") from None
        if dist.is_main:
            corpus = reopen_corpus(run_dir, loaded.vocab, config["data"])
        barrier(dist)
        if not dist.is_main:
            corpus = open_corpus(run_dir, loaded.vocab, config["data"])
        model = loaded.model
        model.train()
        saved = config.get("plan")
        pinned = saved.get("pinned_threads") if isinstance(saved, dict) else None
        pinned = pinned if isinstance(pinned, int) and pinned > 0 else None
        plan = plan_resumed_run(req, model.config, tc, device, dist, threads, pinned)
        optimizer, state = restore_training(ckpt, model, tc, device)
        metrics = config.get("metrics")
        return Run(
            run_dir,
            plan,
            model,
            corpus,
            optimizer,
            state=state,
            notices=corpus.notices,
            dist=dist,
            lock=lock,
            metrics=metrics if isinstance(metrics, dict) else None,
            init_from=finetune.recorded_origin(config),
        )
    except BaseException:
        lock.release()
        raise
