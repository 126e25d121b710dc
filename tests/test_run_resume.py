"""Training state as plain data and back (charrnn/run/resume.py): the optimizer's, the trainer's
and the random generators' state go to tensors + JSON (no pickle) and come back exactly, so that
a resumed run takes the very steps the uninterrupted one would have."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from charrnn.errors import CheckpointError
from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.run.request import TrainRequest
from charrnn.run.resume import (
    optimizer_from_plain,
    optimizer_to_plain,
    restore_training,
    trainer_state_from_plain,
    trainer_state_to_plain,
    training_files,
)
from charrnn.run.session import Run
from charrnn.run.start import open_run
from charrnn.store import checkpoint as ck
from charrnn.training.config import TrainConfig, TrainerState
from charrnn.training.loop import make_optimizer

CPU = torch.device("cpu")
V = 12
MC = ModelConfig(vocab_size=V, cell="gru", layers=2, hidden=8, embed_dim=4)
TC = TrainConfig(lr=1e-2, weight_decay=0.1)


def _steps(model: CharRNN, opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    """``n`` real optimizer steps on random windows drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randint(0, V, (4, 9), generator=g)
        logits, _ = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()


def _through_files(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], tmp: Path
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """What a checkpoint does with them: tensors to safetensors, the rest to strict JSON."""
    save_file(tensors, str(tmp / "t.safetensors"))
    return load_file(str(tmp / "t.safetensors")), json.loads(json.dumps(meta, allow_nan=False))


def _copy(model: CharRNN) -> CharRNN:
    twin = CharRNN(model.config)
    twin.load_state_dict(model.state_dict())
    return twin


def _same_weights(a: CharRNN, b: CharRNN) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


# ----------------------------------------------------------------------------- the optimizer


def test_adamw_restored_into_a_fresh_optimizer_takes_identical_next_steps(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CharRNN(MC)
    opt = make_optimizer(model, TC)
    _steps(model, opt, 3, seed=1)
    for g in opt.param_groups:
        g["lr"] = 4.5e-3  # what the schedule set last
    tensors, meta = _through_files(*optimizer_to_plain(opt), tmp_path)

    twin = _copy(model)
    restored = make_optimizer(twin, TrainConfig(lr=1.0, weight_decay=0.0))  # other settings
    optimizer_from_plain(restored, tensors, meta)
    assert [g["lr"] for g in restored.param_groups] == [4.5e-3, 4.5e-3]
    assert [g["weight_decay"] for g in restored.param_groups] == [0.1, 0.0]
    assert restored.param_groups[0]["betas"] == (0.9, 0.99)

    fresh = _copy(model)  # the same weights without the moments: a different next step
    _steps(fresh, make_optimizer(fresh, TC), 2, seed=2)
    _steps(model, opt, 2, seed=2)
    _steps(twin, restored, 2, seed=2)
    assert _same_weights(model, twin)
    assert not _same_weights(model, fresh)


def test_optimizer_tensors_are_named_by_parameter_and_key() -> None:
    torch.manual_seed(0)
    model = CharRNN(MC)
    opt = make_optimizer(model, TC)
    _steps(model, opt, 1, seed=1)
    tensors, meta = optimizer_to_plain(opt)
    n = len(list(model.parameters()))
    assert set(tensors) == {
        f"state.{i}.{k}" for i in range(n) for k in opt.state_dict()["state"][i]
    }
    assert {"state.0.exp_avg", "state.0.exp_avg_sq", "state.0.step"} <= set(tensors)
    json.dumps(meta, allow_nan=False)  # the rest is plain JSON
    assert len(meta["param_groups"]) == 2


def test_plain_numbers_in_optimizer_state_round_trip_as_json(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CharRNN(MC)
    opt = make_optimizer(model, TC)
    _steps(model, opt, 1, seed=1)
    first = next(iter(opt.state))
    opt.state[first]["calls"] = 7  # a non-tensor entry, as some optimizers keep
    tensors, meta = _through_files(*optimizer_to_plain(opt), tmp_path)
    assert "state.0.calls" not in tensors
    restored = make_optimizer(_copy(model), TC)
    optimizer_from_plain(restored, tensors, meta)
    assert restored.state_dict()["state"][0]["calls"] == 7


# ----------------------------------------------------------------------------- the trainer state


def _state(cell: str) -> TrainerState:
    h = torch.randn(2, 3, 8)
    return TrainerState(
        step=7, epoch=1, window=3, tokens=900, elapsed=1.5, progress=0.3,
        best_val=1.25, best_step=5, last_val=1.5, plateau_scale=0.5, plateau_bad=1,
        bad_evals=2, train_loss=1.375, finished=True,
        hidden=(h, torch.randn(2, 3, 8)) if cell == "lstm" else h,
    )  # fmt: skip


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_trainer_state_round_trips_with_its_carried_hidden_state(cell: str, tmp_path: Path) -> None:
    state = _state(cell)
    tensors, d = _through_files(*trainer_state_to_plain(state), tmp_path)
    back = trainer_state_from_plain(cell, tensors, d, CPU)
    assert dataclasses.replace(back, hidden=None) == dataclasses.replace(state, hidden=None)
    if cell == "lstm":
        assert isinstance(back.hidden, tuple) and isinstance(state.hidden, tuple)
        assert all(torch.equal(a, b) for a, b in zip(back.hidden, state.hidden, strict=True))
    else:
        assert isinstance(back.hidden, torch.Tensor) and isinstance(state.hidden, torch.Tensor)
        assert torch.equal(back.hidden, state.hidden)


def test_no_hidden_state_comes_back_as_none(tmp_path: Path) -> None:
    tensors, d = _through_files(*trainer_state_to_plain(TrainerState(step=3)), tmp_path)
    assert not any(k.startswith("hidden.") for k in tensors)
    back = trainer_state_from_plain("gru", tensors, d, CPU)
    assert back.hidden is None and back.step == 3


def test_the_random_generator_continues_where_it_was_saved(tmp_path: Path) -> None:
    torch.manual_seed(42)
    tensors, d = _through_files(*trainer_state_to_plain(TrainerState()), tmp_path)
    expected = torch.rand(5)  # what a run would have drawn next
    torch.manual_seed(999)  # the new process draws otherwise
    trainer_state_from_plain("gru", tensors, d, CPU)
    assert torch.equal(torch.rand(5), expected)


def test_unknown_keys_of_the_json_are_ignored(tmp_path: Path) -> None:
    """trainer_state.json also holds the optimizer's part, and a later version may add keys."""
    tensors, d = _through_files(*trainer_state_to_plain(TrainerState(step=4)), tmp_path)
    back = trainer_state_from_plain("gru", tensors, {**d, "optimizer": {}, "later": 1}, CPU)
    assert back.step == 4


def test_training_files_are_what_a_checkpoint_stores() -> None:
    torch.manual_seed(0)
    model = CharRNN(MC)
    opt = make_optimizer(model, TC)
    _steps(model, opt, 1, seed=1)
    st_json, files = training_files(opt, _state("gru"))
    assert set(files) == {ck.OPTIMIZER, ck.TRAINER_TENSORS}
    assert files[ck.OPTIMIZER].keys() == optimizer_to_plain(opt)[0].keys()
    assert {"rng.cpu", "hidden.0"} <= set(files[ck.TRAINER_TENSORS])
    assert st_json["optimizer"] == optimizer_to_plain(opt)[1]
    assert st_json["step"] == 7 and "hidden" not in st_json
    json.dumps(st_json, allow_nan=False)


# ----------------------------------------------------------------------------- from a checkpoint


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, small_text: str) -> tuple[Path, Run]:
    d = tmp_path_factory.mktemp("resume")
    corpus = d / "c.txt"
    corpus.write_text(small_text[:4000], encoding="utf-8")
    req = TrainRequest.from_options(
        sources=(str(corpus),), hidden=16, layers=1, embed_dim=8, batch_size=8, seq_len=16,
        max_steps=6, eval_every=3, precision="fp32", out=str(d / "run"),
    )  # fmt: skip
    run = open_run(req, CPU, threads=1)
    run.train()
    return d / "run", run


def test_restore_training_gives_the_saved_optimizer_and_state(tiny_run: tuple[Path, Run]) -> None:
    run_dir, run = tiny_run
    ckpt = ck.newest_checkpoint(run_dir)
    assert ckpt is not None and ckpt.name == ck.checkpoint_name(6)
    loaded = ck.load_model(ckpt, CPU)
    tc = TrainConfig(**loaded.config["training"])
    opt, state = restore_training(ckpt, loaded.model, tc, CPU)
    assert state.step == 6 and state.finished
    saved = run.optimizer.state_dict()["state"]
    got = opt.state_dict()["state"]
    assert saved.keys() == got.keys()
    for i in saved:
        for k in saved[i]:
            assert torch.equal(torch.as_tensor(got[i][k]), torch.as_tensor(saved[i][k])), (i, k)


def test_a_damaged_training_state_is_a_checkpoint_error(
    tiny_run: tuple[Path, Run], tmp_path: Path
) -> None:
    ckpt = ck.newest_checkpoint(tiny_run[0])
    assert ckpt is not None
    copy = tmp_path / ckpt.name
    shutil.copytree(ckpt, copy)
    loaded = ck.load_model(copy, CPU)
    tc = TrainConfig(**loaded.config["training"])
    st = json.loads((copy / ck.TRAINER_STATE).read_text())
    del st["optimizer"]
    (copy / ck.TRAINER_STATE).write_text(json.dumps(st))
    with pytest.raises(CheckpointError, match="cannot restore the training state") as e:
        restore_training(copy, loaded.model, tc, CPU)
    assert str(e.value).startswith(str(copy))

    shutil.rmtree(copy)
    shutil.copytree(ckpt, copy)
    (copy / ck.OPTIMIZER).unlink()
    with pytest.raises(CheckpointError, match="missing from the checkpoint"):
        restore_training(copy, loaded.model, tc, CPU)
