"""The one way into training (charrnn/run/start.py, ``open_run``): a new run with --out or named
automatically under its root, a resumed run that continues from its saved step, and requests
refused without leaving a folder behind."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from charrnn.errors import CharRNNError, CheckpointError, CorpusError
from charrnn.run.folder import STAGING_PREFIX
from charrnn.run.request import TrainRequest
from charrnn.run.session import Run
from charrnn.run.start import open_run
from charrnn.store import checkpoint as ck
from charrnn.store.metrics import read_metrics

CPU = torch.device("cpu")
SMALL: dict[str, Any] = dict(
    hidden=16, layers=1, embed_dim=8, batch_size=8, seq_len=16, max_steps=4, eval_every=2,
    precision="fp32",
)  # fmt: skip


@pytest.fixture
def corpus(tmp_path: Path, small_text: str) -> Path:
    path = tmp_path / "poems.txt"
    path.write_text(small_text[:6000], encoding="utf-8")
    return path


def _open(sources: tuple[str, ...] = (), **kw: Any) -> Run:
    options = {**SMALL, **kw} if sources else kw
    return open_run(TrainRequest.from_options(sources=sources, **options), CPU, threads=1)


def _staging_left(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_a_new_run_goes_into_its_out_folder_as_asked(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "mine"
    run = _open((str(corpus),), out=str(out), cell="lstm")
    try:
        assert run.run_dir == out and run.created and not run.resumed
        assert run.plan.name is None  # --out: no automatic name
        mc = run.model.config
        assert (mc.cell, mc.layers, mc.hidden, mc.embed_dim) == ("lstm", 1, 16, 8)
        assert mc.vocab_size == len(run.vocab)
        assert run.train_config.max_steps == 4 and run.train_config.batch_size == 8
        assert torch.get_num_threads() == 1  # the user's --threads, applied
        assert run.lock.held
        assert ck.checkpoint_folders(out) == []  # nothing trained yet
    finally:
        run.close()


def test_the_same_request_builds_the_same_model(corpus: Path, tmp_path: Path) -> None:
    """The seed is set before the model is built: a run is reproducible."""
    a = _open((str(corpus),), out=str(tmp_path / "a"))
    b = _open((str(corpus),), out=str(tmp_path / "b"))
    c = _open((str(corpus),), out=str(tmp_path / "c"), seed=7)
    for run in (a, b, c):
        run.close()
    pa, pb, pc = (torch.cat([p.flatten() for p in r.model.parameters()]) for r in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_without_out_a_run_is_named_after_its_corpus_and_cell(corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    first = _open((str(corpus),), root=str(root))
    first.train()
    assert first.run_dir == root / "poems-gru" and first.plan.name == "poems-gru"
    assert ck.read_pointer(first.run_dir, ck.LATEST) == ck.checkpoint_name(4)
    second = _open((str(corpus),), root=str(root))
    third = _open((str(corpus),), root=str(root), cell="rnn")
    for run in (second, third):
        run.close()
    assert second.run_dir == root / "poems-gru-2"  # the name was taken
    assert third.run_dir == root / "poems-rnn"
    assert _staging_left(root) == []  # the corpus was read in a staging folder, moved in
    assert sorted(os.listdir(root)) == ["poems-gru", "poems-gru-2", "poems-rnn"]


def test_a_refused_request_leaves_no_folder(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(CharRNNError, match="--precision fp16 needs a CUDA device"):
        _open((str(corpus),), out=str(out), precision="fp16")
    with pytest.raises(CorpusError, match=r"missing\.txt"):
        _open((str(tmp_path / "missing.txt"),), out=str(out))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(CorpusError, match="empty"):  # found only once the folder is made
        _open((str(empty),), out=str(out))
    assert not out.exists()


def test_a_refused_request_without_out_leaves_no_staging_folder(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(CorpusError, match="empty"):
        _open((str(empty),), root=str(root))
    assert not root.exists() or os.listdir(root) == []


def test_a_used_out_folder_is_refused_and_left_as_it_was(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CharRNNError, match="already exists and is not empty; use --resume"):
        _open((str(corpus),), out=str(out))
    assert os.listdir(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def test_a_resumed_run_continues_from_the_saved_step(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    _open((str(corpus),), out=str(out)).train()
    run = _open(resume=str(out), max_steps=8)
    assert run.resumed and run.run_dir == out and not run.created
    assert run.state is not None and run.state.step == 4
    assert run.train_config.max_steps == 8
    assert run.plan.name is None
    state = run.train()
    assert state.step == 8
    assert ck.read_pointer(out, ck.LATEST) == ck.checkpoint_name(8)
    starts = [r for r in read_metrics(out) if r["event"] == "start"]
    assert [(r["step"], r["resumed"]) for r in starts] == [(0, False), (4, True)]


def test_resuming_keeps_the_saved_settings(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    first = _open((str(corpus),), out=str(out), lr=5e-3, seed=3)
    first.train()
    run = _open(resume=str(out), max_steps=6, eval_every=3)
    run.close()
    tc = run.train_config
    assert (tc.lr, tc.seed, tc.batch_size) == (5e-3, 3, 8)
    assert (tc.max_steps, tc.eval_every) == (6, 3)
    assert run.model.config == first.model.config


def test_resume_refusals_name_the_folder(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such run folder to resume"):
        _open(resume=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a run folder \\(no complete checkpoint"):
        _open(resume=str(tmp_path / "empty"))
    out = tmp_path / "r"
    _open((str(corpus),), out=str(out)).train()
    ckpt = out / ck.checkpoint_name(4)
    with pytest.raises(
        CheckpointError, match=f"a checkpoint, not a run folder; .*--resume {re.escape(str(out))}"
    ):
        _open(resume=str(ckpt))
    assert os.listdir(tmp_path / "empty") == []  # a refusal writes nothing
