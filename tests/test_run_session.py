"""A training run on disk (charrnn/run/session.py, ``Run``): tiny models trained for real in
tmp_path, and what the run folder holds afterwards: complete checkpoints whose config.json carries
the plan, the pointers, metrics.jsonl; and what an error or a stop leaves behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from charrnn.errors import TrainingError
from charrnn.run.request import TrainRequest
from charrnn.run.session import Run
from charrnn.run.start import open_run
from charrnn.store import checkpoint as ck
from charrnn.store.metrics import read_metrics
from charrnn.training.events import Event, Stepped

CPU = torch.device("cpu")


@pytest.fixture
def corpus(tmp_path: Path, small_text: str) -> Path:
    path = tmp_path / "poems.txt"
    path.write_text(small_text[:6000], encoding="utf-8")
    return path


def _run(corpus: Path, out: Path, **kw: Any) -> Run:
    options: dict[str, Any] = dict(
        hidden=16, layers=1, embed_dim=8, batch_size=8, seq_len=16, max_steps=6, eval_every=2,
        precision="fp32", out=str(out),
    )  # fmt: skip
    options.update(kw)
    return open_run(TrainRequest.from_options(sources=(str(corpus),), **options), CPU, threads=1)


def _config(ckpt: Path) -> dict[str, Any]:
    return json.loads((ckpt / ck.CONFIG).read_text(encoding="utf-8"))


def test_a_trained_run_saves_complete_checkpoints_with_its_plan(
    corpus: Path, tmp_path: Path
) -> None:
    run = _run(corpus, tmp_path / "r")
    state = run.train()
    assert state.step == 6 and state.finished and run.stop_reason == "max_steps"
    latest = ck.read_pointer(run.run_dir, ck.LATEST)
    assert latest == ck.checkpoint_name(6)
    config = _config(run.run_dir / latest)
    assert config["plan"] == run.plan.machine()
    assert set(config["plan"]) >= {"threads", "thread_candidates", "bf16_speedup", "notes"}
    assert config["model"] == run.model.config.to_dict()
    assert config["training"] == run.train_config.to_dict()
    assert config["data"] == run.corpus.info
    assert config["format_version"] == ck.FORMAT_VERSION
    m = config["metrics"]
    assert m["step"] == 6 and m["tokens"] == state.tokens == 6 * 8 * 16
    assert m["best_step"] == state.best_step and m["best_val_loss"] == state.best_val
    assert m["val_loss"] == state.last_val  # the last validation, at step 6
    # The saved weights are the trained ones.
    saved = ck.load_model(run.run_dir / latest, CPU).model.state_dict()
    for name, t in run.model.state_dict().items():
        assert torch.equal(saved[name], t), name


def test_best_names_the_best_validation_and_the_rest_is_pruned(
    corpus: Path, tmp_path: Path
) -> None:
    run = _run(corpus, tmp_path / "r", max_steps=8)
    state = run.train()
    assert state.best_step is not None
    best = ck.read_pointer(run.run_dir, ck.BEST)
    assert best == ck.checkpoint_name(state.best_step)
    assert _config(run.run_dir / best)["metrics"]["val_loss"] == state.best_val
    kept = {p.name for p in ck.checkpoint_folders(run.run_dir)}
    assert kept == {best, ck.checkpoint_name(8)}  # only what the pointers name
    assert not any(p.name.startswith(".tmp-") for p in run.run_dir.iterdir())


def test_every_session_is_in_metrics_jsonl(corpus: Path, tmp_path: Path) -> None:
    run = _run(corpus, tmp_path / "r", max_steps=4, eval_every=2)
    run.train()
    records = read_metrics(run.run_dir)
    assert records[0]["event"] == "start" and records[0]["resumed"] is False
    assert records[0]["parameters"] == run.model.num_parameters()
    assert [r["step"] for r in records if r["event"] == "eval"] == [2, 4]
    assert records[-1] == {**records[-1], "event": "end", "step": 4, "reason": "max_steps"}
    steps = [r["step"] for r in records if r["event"] == "step"]
    assert steps == [1, 2, 3, 4]  # eval_every 2: a step record every step (metrics_every)
    assert records[-1]["chars"] == 4 * 8 * 16  # characters: one per token


def test_the_folder_lock_goes_when_training_ends(corpus: Path, tmp_path: Path) -> None:
    run = _run(corpus, tmp_path / "r", max_steps=2)
    assert run.lock.held
    run.train()
    assert not run.lock.held


def test_a_stopped_run_saves_the_step_it_stopped_at_as_unfinished(
    corpus: Path, tmp_path: Path
) -> None:
    run = _run(corpus, tmp_path / "r", max_steps=50, eval_every=100)
    state = run.train(should_stop=lambda: run.trainer is not None and run.trainer.state.step >= 3)
    assert state.step == 3 and not state.finished and run.stop_reason == "stopped"
    name = ck.checkpoint_name(3)
    assert ck.read_pointer(run.run_dir, ck.LATEST) == name
    # Never validated: the most trained checkpoint is "best" until a validation says otherwise.
    assert ck.read_pointer(run.run_dir, ck.BEST) == name
    st = json.loads((run.run_dir / name / ck.TRAINER_STATE).read_text())
    assert st["step"] == 3 and st["finished"] is False


def _fail_at(step: int, error: BaseException) -> Any:
    def callback(event: Event) -> None:
        if isinstance(event, Stepped) and event.step == step:
            raise error

    return callback


def test_an_error_before_anything_is_saved_removes_the_new_folder(
    corpus: Path, tmp_path: Path
) -> None:
    run = _run(corpus, tmp_path / "r", eval_every=100)
    boom = RuntimeError("CUDA out of memory. Tried to allocate 2 GiB\nmore detail")
    with pytest.raises(TrainingError) as e:
        run.train(callbacks=[_fail_at(2, boom)])
    assert str(e.value) == (
        f"training stopped at step 2: CUDA out of memory. Tried to allocate 2 GiB "
        f"(checkpoints already in {tmp_path / 'r'} are kept)"
    )
    assert e.value.__cause__ is boom
    assert not (tmp_path / "r").exists()
    assert not run.lock.held


def test_an_interrupt_before_anything_is_saved_also_removes_it(
    corpus: Path, tmp_path: Path
) -> None:
    run = _run(corpus, tmp_path / "r", eval_every=100)
    with pytest.raises(KeyboardInterrupt):
        run.train(callbacks=[_fail_at(1, KeyboardInterrupt())])
    assert not (tmp_path / "r").exists()


def test_an_error_after_a_save_keeps_the_checkpoints(corpus: Path, tmp_path: Path) -> None:
    run = _run(corpus, tmp_path / "r", eval_every=2)
    with pytest.raises(TrainingError, match="training stopped at step 3"):
        run.train(callbacks=[_fail_at(3, RuntimeError("boom"))])
    assert ck.read_pointer(tmp_path / "r", ck.LATEST) == ck.checkpoint_name(2)
    assert ck.is_run_dir(tmp_path / "r")


def test_weights_that_went_non_finite_are_not_saved(corpus: Path, tmp_path: Path) -> None:
    run = _run(corpus, tmp_path / "r", max_steps=2)
    state = run.train()
    with torch.no_grad():
        run.model.head.bias[0] = float("nan")
    state.step = 3
    with pytest.raises(TrainingError, match="step 3: the weights hold NaN or Inf; not saving"):
        run.save(state, best=True)
    assert ck.read_pointer(run.run_dir, ck.LATEST) == ck.checkpoint_name(2)
    assert [p.name for p in ck.checkpoint_folders(run.run_dir)] == [ck.checkpoint_name(2)]


def test_metrics_count_characters_seen_from_tokens(corpus: Path, tmp_path: Path) -> None:
    run = _run(corpus, tmp_path / "r", max_steps=2)
    state = run.train()
    m = run.metrics(state)
    assert m["characters_seen"] == state.tokens == 2 * 8 * 16
    assert m["train_nats_per_char"] == pytest.approx(state.train_loss)  # one char per token
    assert m["elapsed"] == round(state.elapsed, 3)
