from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
VERSES = ROOT / "corpora" / "verses.txt"

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
