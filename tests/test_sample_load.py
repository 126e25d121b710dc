"""charrnn.sample.load: a checkpoint loaded the way the sampling engine needs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn.model.arrays import ArrayModel
from charrnn.sample import generate as sampling
from charrnn.sample.load import load_for_sampling
from charrnn.store import checkpoint as ck

ROOT = Path(__file__).resolve().parent.parent


def test_arrays_for_the_numpy_engine_a_model_for_torch(
    trained_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHARRNN_ENGINE", raising=False)
    monkeypatch.setattr(sampling, "cuda_possible", lambda: False)
    arrays = load_for_sampling(trained_run, "auto")
    assert isinstance(arrays, ck.LoadedArrays) and isinstance(arrays.model, ArrayModel)
    assert arrays.path == ck.resolve_checkpoint(trained_run)
    plain = load_for_sampling(trained_run, "cpu", fast=False)
    assert isinstance(plain, ck.LoadedModel) and plain.path == arrays.path
    assert plain.vocab.itos == arrays.vocab.itos
    monkeypatch.setenv("CHARRNN_ENGINE", "torch")
    assert isinstance(load_for_sampling(trained_run, "cpu"), ck.LoadedModel)


def test_the_store_does_not_know_the_sampler() -> None:
    """store is below sample: loading a checkpoint imports nothing of charrnn.sample."""
    assert not hasattr(ck, "load_for_sampling")
    code = (
        "import sys, charrnn.store.checkpoint; "
        "print(sorted(m for m in sys.modules if m.startswith('charrnn.sample')))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_a_checkpoint_pruned_while_loaded_for_sampling(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    from .conftest import prune_on_first_call

    monkeypatch.setattr(sampling, "cuda_possible", lambda: False)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    first = ck.resolve_checkpoint(run)
    prune_on_first_call(monkeypatch, ck, "read_config", run)
    loaded = load_for_sampling(run, device, fast=device == "auto")
    assert loaded.path == ck.resolve_checkpoint(run) != first and not first.exists()
