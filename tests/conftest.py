"""Fixtures shared by the tests, and helpers they import (``from .conftest import ...``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
VERSES = ROOT / "corpora" / "verses.txt"
BIN = Path(sys.executable).parent / "charrnn"
CHARRNN = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "charrnn"]  # the installed command

# Test models are tiny: one thread is as fast, and immune to the slowdown that spinning OpenMP
# threads suffer on a loaded machine. Subprocesses inherit the variable.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def verses_text() -> str:
    return VERSES.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def small_text(verses_text: str) -> str:
    """About 40k characters of the project's own generated verse."""
    return verses_text[:40_000]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, small_text: str) -> Path:
    """A tiny GRU trained for a few hundred steps through the library (shared by tests)."""
    from charrnn.run.request import TrainRequest
    from charrnn.run.start import open_run

    d = tmp_path_factory.mktemp("run")
    corpus = d / "small.txt"
    corpus.write_text(small_text, encoding="utf-8")
    req = TrainRequest.from_options(
        sources=(str(corpus),),
        cell="gru",
        hidden=64,
        layers=1,
        embed_dim=16,
        batch_size=16,
        seq_len=32,
        max_steps=150,
        eval_every=75,
        precision="fp32",
        out=str(d / "run"),
    )
    run = open_run(req, torch.device("cpu"))
    run.train()
    return d / "run"


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory: pytest.TempPathFactory, trained_run: Path, small_text: str) -> Path:
    """A folder with two runs, ``big`` (a copy of :func:`trained_run`) and ``small`` (a much
    smaller one, 6 steps), and a folder ``not-a-run``."""
    from charrnn.run.request import TrainRequest
    from charrnn.run.start import open_run

    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(trained_run, root / "big")
    corpus = root / "tiny.txt"
    corpus.write_text(small_text[:5000], encoding="utf-8")
    req = TrainRequest.from_options(
        sources=(str(corpus),),
        hidden=8,
        layers=1,
        embed_dim=4,
        batch_size=4,
        seq_len=8,
        max_steps=6,
        eval_every=3,
        out=str(root / "small"),
    )
    open_run(req, torch.device("cpu")).train()
    (root / "not-a-run").mkdir()
    return root


def run_cli(args: list[str], cwd: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``charrnn ARGS`` in a subprocess in ``cwd``: an ASCII locale, no $CHARRNN_CHECKPOINTS."""
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "LC_ALL": "C"}
    env.pop("CHARRNN_CHECKPOINTS", None)
    return subprocess.run(
        CHARRNN + args,
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=300,
        **kw,
    )


# Characters that drive a terminal: an escape sequence (ESC [31m: red), a C1 control (NEL,
# U+0085), shift-out (U+000E) and a right-to-left override (U+202E).
HOSTILE = "\x1b[31m\x85\x0e\u202e"


def raw_controls(text: str, allow: str = "\n") -> list[str]:
    """The control and format characters of ``text`` (Unicode Cc, Cf; line and paragraph
    separators) other than those in ``allow``: what must never reach a terminal raw."""
    import unicodedata

    bad = {"Cc", "Cf", "Zl", "Zp", "Cs"}
    return sorted({c for c in text if unicodedata.category(c) in bad and c not in allow})


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory: pytest.TempPathFactory, small_text: str) -> Path:
    """A tiny run trained on a corpus whose file name and text hold :data:`HOSTILE`, in a
    folder of runs of its own (``hostile_run.parent``)."""
    from charrnn.run.request import TrainRequest
    from charrnn.run.start import open_run

    d = tmp_path_factory.mktemp("hostile")
    corpus = d / f"evil{HOSTILE}.txt"
    lines = [line + HOSTILE for line in small_text[:6000].split("\n")]
    corpus.write_text("\n".join(lines), encoding="utf-8")
    req = TrainRequest.from_options(
        sources=(str(corpus),), hidden=16, layers=1, embed_dim=8, batch_size=8, seq_len=16,
        max_steps=6, eval_every=3, precision="fp32", out=str(d / "runs" / f"run{HOSTILE}"),
    )  # fmt: skip
    run = open_run(req, torch.device("cpu"), threads=1)
    run.train()
    return d / "runs" / f"run{HOSTILE}"


def supersede(run_dir: Path, partly: bool = False) -> Path:
    """What a training run does when it saves: a new checkpoint (a copy of the best, one step
    on), both pointers moved to it, the folders they no longer name pruned (the real
    ``saving.prune``). ``partly``: the old folder is left half removed (its weights gone), as a
    prune in progress leaves it. Returns the old checkpoint."""
    from charrnn.store import checkpoint as ck
    from charrnn.store import saving

    old = ck.resolve_checkpoint(run_dir)
    new = ck.checkpoint_name(int(old.name.split("-")[1]) + 1)
    shutil.copytree(old, run_dir / new)
    saving.set_pointer(run_dir, ck.LATEST, new)
    saving.set_pointer(run_dir, ck.BEST, new)
    if partly:
        (old / ck.MODEL).unlink()
    else:
        saving.prune(run_dir)
    return old


def prune_on_first_call(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, run_dir: Path,
                        partly: bool = False) -> list[Path]:  # fmt: skip
    """Make ``owner.name`` (a reading function) :func:`supersede` ``run_dir`` the first time it is
    called, just before it reads: the checkpoint it was asked for vanishes under it. Returns
    the paths it was called with."""
    real = getattr(owner, name)
    calls: list[Path] = []

    def reading(path: Any, *args: Any, **kw: Any) -> Any:
        calls.append(Path(path))
        if len(calls) == 1:
            supersede(run_dir, partly)
        return real(path, *args, **kw)

    monkeypatch.setattr(owner, name, reading)
    return calls
