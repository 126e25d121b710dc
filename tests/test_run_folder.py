"""One writer per run folder: the lock, race-free new folders, refusals, kills, and readers."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.errors import CharRNNError
from charrnn.run import folder as runfolder
from charrnn.run.folder import LOCK_FILE, RunBusy
from charrnn.run.request import TrainRequest
from charrnn.run.start import open_run
from charrnn.store import checkpoint as ck
from charrnn.store.catalog import list_runs
from charrnn.store.metrics import read_metrics
from charrnn.training.distributed import Dist

from .conftest import CHARRNN, run_cli

CPU = torch.device("cpu")
runner = CliRunner()
TINY = ["--hidden", "16", "--layers", "1", "--embed-dim", "8", "--batch-size", "8"]
TINY += ["--seq-len", "16", "--threads", "1", "--quiet"]


def _busy(run: Path, pid: int) -> str:
    return f"{run}: another charrnn train (pid {pid}) is writing this run"


def _copy_run(trained_run: Path, tmp_path: Path) -> Path:
    """A private copy of the shared trained run (without its lock file)."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns(LOCK_FILE))
    return run


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def _holder_pid(run: Path) -> int | None:
    """The pid in the lock file's note (the last process that took the lock)."""
    try:
        return int(json.loads((run / LOCK_FILE).read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


_FORK = multiprocessing.get_context("fork")  # children start at once: torch is imported


def _child_try(run: str, out: Any) -> None:
    try:
        runfolder.lock(Path(run)).release()
        out.put("free")
    except RunBusy as e:
        out.put(str(e))


def _elsewhere(run: Path) -> str:
    """What another process gets when it tries to lock ``run``: "free", or its refusal."""
    out = _FORK.Queue()
    p = _FORK.Process(target=_child_try, args=(str(run), out))
    p.start()
    try:
        return str(out.get(timeout=60))
    finally:
        p.join(60)


def _child_hold(run: str, ready: Any, done: Any) -> None:
    with runfolder.lock(Path(run)):
        ready.set()
        done.wait(120)


@contextlib.contextmanager
def _held_elsewhere(run: Path) -> Iterator[int]:
    """Hold the lock of ``run`` in another process; yields that process's pid."""
    ready, done = _FORK.Event(), _FORK.Event()
    p = _FORK.Process(target=_child_hold, args=(str(run), ready, done))
    p.start()
    try:
        assert ready.wait(60), "the other process did not get the lock"
        assert p.pid is not None
        yield p.pid
    finally:
        done.set()
        p.join(60)


def _steps_go_forward(run: Path) -> list[dict[str, Any]]:
    records = read_metrics(run)
    steps = [int(r["step"]) for r in records]
    assert steps == sorted(steps), steps
    return records


# ------------------------------------------------------------------------- the lock


def test_a_second_writer_is_refused_until_the_first_releases(tmp_path: Path) -> None:
    with _held_elsewhere(tmp_path) as pid:
        note = json.loads((tmp_path / LOCK_FILE).read_text())
        assert note["pid"] == pid and note["command"]
        with pytest.raises(RunBusy) as refused:
            runfolder.lock(tmp_path)
        assert str(refused.value) == (
            f"{_busy(tmp_path, pid)}; wait for it to end, or train into another --out"
        )
        assert isinstance(refused.value, CharRNNError)
    # The holder ended; the lock file it left behind blocks nobody.
    first = runfolder.lock(tmp_path)
    assert first.held and _holder_pid(tmp_path) == os.getpid()
    assert _elsewhere(tmp_path) == f"{_busy(tmp_path, os.getpid())}; " + (
        "wait for it to end, or train into another --out"
    )
    first.release()
    first.release()  # repeating is harmless
    assert not first.held and _elsewhere(tmp_path) == "free"


def test_the_writer_is_a_process_and_the_lock_goes_with_its_last_holder(tmp_path: Path) -> None:
    """Locks taken in one process share its OS lock (the same process is the same writer);
    a forked child is another process, which does not inherit the hold."""
    a = runfolder.lock(tmp_path)
    b = runfolder.lock(tmp_path)
    assert a.held and b.held
    a.release()
    assert _elsewhere(tmp_path).startswith(_busy(tmp_path, os.getpid()))
    b.release()
    assert _elsewhere(tmp_path) == "free"


def test_a_refusal_without_a_note_still_refuses(tmp_path: Path) -> None:
    with _held_elsewhere(tmp_path):
        (tmp_path / LOCK_FILE).write_text("")  # locked, note not yet written
        with pytest.raises(RunBusy, match=r"\(pid unknown\)"):
            runfolder.lock(tmp_path)


def test_the_lock_file_does_not_make_a_run(tmp_path: Path, trained_run: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    runfolder.lock(empty).release()
    run = _copy_run(trained_run, tmp_path)
    with runfolder.lock(run):
        assert not ck.is_run_dir(empty) and ck.is_run_dir(run)
        assert ck.run_folders(tmp_path) == [run]
        assert [Path(r.path) for r in list_runs(tmp_path)[0]] == [run]
    # A folder holding only a lock file is still a free --out ...
    folder, created, held = runfolder.claim(str(empty))
    assert (folder, created, held.held) == (empty, False, True)
    held.release()
    # ... and a run folder discarded for want of a checkpoint goes, lock file and all.
    runfolder.discard_if_empty(empty)
    assert not empty.exists()


# ------------------------------------------------------------------------- new folders


def _adopted(root: Path, name: str) -> tuple[Path, runfolder.RunLock]:
    return runfolder.adopt(runfolder.stage(str(root)), name)


def test_new_folders_take_the_next_free_name(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    a = _adopted(root, "verses-gru")
    b = _adopted(root, "verses-gru")
    (root / "verses-gru-3").write_text("a file takes a name too")
    c = _adopted(root, "verses-gru")
    assert [x[0].name for x in (a, b, c)] == ["verses-gru", "verses-gru-2", "verses-gru-4"]
    assert all(x[1].held for x in (a, b, c))
    for x in (a, b, c):
        x[1].release()
    # no staging folder is left behind
    assert sorted(p.name for p in root.iterdir()) == [
        "verses-gru",
        "verses-gru-2",
        "verses-gru-3",
        "verses-gru-4",
    ]


def test_a_staged_run_moves_to_its_name_with_its_files_and_lock(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    staged = runfolder.stage(str(root))
    assert staged.parent == root and staged.name.startswith(runfolder.STAGING_PREFIX)
    assert not ck.run_folders(root)  # a staging folder is not a run
    (staged / "tokens-train.bin").write_bytes(b"\x01\x02")
    (root / "verses-lstm").mkdir()  # taken
    new, held = runfolder.adopt(staged, "verses-lstm")
    assert new == root / "verses-lstm-2" and not staged.exists() and held.held
    assert (new / "tokens-train.bin").read_bytes() == b"\x01\x02"
    assert _busy(new, os.getpid()) in _elsewhere(new)  # the new folder is locked
    held.release()
    assert _elsewhere(new) == "free"
    assert sorted(p.name for p in root.iterdir()) == ["verses-lstm", "verses-lstm-2"]


def test_a_file_that_cannot_move_leaves_the_staging_folder_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = runfolder.stage(str(tmp_path))
    for name in ("a.bin", "b.bin"):
        (staged / name).write_bytes(name.encode())
    real_replace = os.replace
    calls: list[str] = []

    def replace(src: Any, dst: Any) -> None:
        calls.append(Path(src).name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(CharRNNError, match="cannot move the new run's files in"):
        runfolder.adopt(staged, "verses-gru")
    monkeypatch.undo()
    assert sorted(p.name for p in staged.iterdir()) == ["a.bin", "b.bin"]
    assert not (tmp_path / "verses-gru").exists()
    assert _elsewhere(staged) == "free"


def test_what_a_start_up_cut_short_made_is_removed_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """discard_unsaved removes every run folder this process made in which no checkpoint was
    saved (a staged one, an adopted one, a claimed --out), wherever a signal fell; it keeps a
    folder that holds a checkpoint and one that was there before."""
    monkeypatch.setattr(runfolder, "_MADE", set())  # not the other tests' folders
    root = tmp_path / "ck"
    staged = runfolder.stage(str(root))
    adopted, held = _adopted(root, "verses-gru")
    made, _, made_lock = runfolder.claim(str(tmp_path / "out"))
    (tmp_path / "mine").mkdir()
    theirs, _, theirs_lock = runfolder.claim(str(tmp_path / "mine"))  # empty, there before
    saved, _, saved_lock = runfolder.claim(str(tmp_path / "saved"))
    shutil.copytree(_a_checkpoint(tmp_path), saved / "step-00000001")
    for x in (held, made_lock, theirs_lock, saved_lock):
        x.release()
    runfolder.discard_unsaved()
    assert not staged.exists() and not adopted.exists() and not made.exists()
    assert theirs.is_dir() and ck.checkpoint_folders(saved)
    assert sorted(p.name for p in root.iterdir()) == []


def _a_checkpoint(tmp_path: Path) -> Path:
    """A folder that counts as a complete checkpoint (it has a config.json)."""
    step = tmp_path / "a-checkpoint"
    step.mkdir()
    (step / ck.CONFIG).write_text("{}")
    return step


def test_a_name_taken_between_looking_and_creating_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creates ``verses-gru`` just before this one does: this one must move
    on to ``-2``, not share the folder."""
    staged = runfolder.stage(str(tmp_path))
    real_mkdir = os.mkdir
    raced: list[str] = []

    def mkdir(path: str | os.PathLike[str], mode: int = 0o777) -> None:
        if Path(path).name == "verses-gru" and not raced:
            raced.append(str(path))
            real_mkdir(path, mode)  # the other process wins
        real_mkdir(path, mode)

    monkeypatch.setattr(os, "mkdir", mkdir)
    folder, held = runfolder.adopt(staged, "verses-gru")
    held.release()
    assert raced and folder.name == "verses-gru-2"


def _claim_in_child(root: str, barrier: object, out: multiprocessing.Queue[str]) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    folder, held = runfolder.adopt(runfolder.stage(root), "verses-gru")
    out.put(folder.name)
    time.sleep(0.2)
    held.release()


def test_claims_started_together_get_different_folders(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    n = 6
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(target=_claim_in_child, args=(str(tmp_path), barrier, out)) for _ in range(n)
    ]
    for p in procs:
        p.start()
    names = sorted(out.get(timeout=30) for _ in range(n))
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert names == sorted(["verses-gru", *[f"verses-gru-{i}" for i in range(2, n + 1)]])
    assert sorted(p.name for p in tmp_path.iterdir()) == names


def test_an_out_folder_is_checked_again_under_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run fills ``--out`` between the first look and the lock: refused, not shared."""
    out = tmp_path / "out"
    real_lock = runfolder.lock

    def lock_after_another_run(run_dir: Path) -> runfolder.RunLock:
        (run_dir / "metrics.jsonl").write_text("{}\n")
        return real_lock(run_dir)

    monkeypatch.setattr(runfolder, "lock", lock_after_another_run)
    with pytest.raises(CharRNNError, match="already exists and is not empty"):
        runfolder.claim(str(out))
    monkeypatch.undo()
    real_lock(out).release()  # and the refused claim let go of its lock


# ------------------------------------------------------------------------- runs and the lock


def _resume_request(run: Path, steps: int) -> TrainRequest:
    return TrainRequest.from_options(resume=str(run), max_steps=steps)


def test_a_locked_run_refuses_start_and_resume_and_is_not_touched(
    tmp_path: Path, trained_run: Path, small_text: str
) -> None:
    run = _copy_run(trained_run, tmp_path)
    leftover = run / ".tmp-step-00000999-1"  # what resume's clean-up would remove
    leftover.mkdir()
    with _held_elsewhere(run) as pid:
        before = _snapshot(run)
        with pytest.raises(RunBusy, match=re.escape(_busy(run, pid))):
            open_run(_resume_request(run, 200), CPU)
        assert _snapshot(run) == before and leftover.is_dir()
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:5000])
    out = tmp_path / "empty-out"
    out.mkdir()
    with _held_elsewhere(out):
        with pytest.raises(RunBusy):
            open_run(
                TrainRequest.from_options(sources=(str(corpus),), out=str(out), max_steps=2), CPU
            )
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing read into it


def test_the_lock_lasts_as_long_as_the_run(tmp_path: Path, trained_run: Path) -> None:
    run_dir = _copy_run(trained_run, tmp_path)
    step = int(ck.newest_checkpoint(run_dir).name.split("-")[1])  # type: ignore[union-attr]
    busy = _busy(run_dir, os.getpid())

    run = open_run(_resume_request(run_dir, step + 2), CPU)
    assert _elsewhere(run_dir).startswith(busy)
    run.train()
    assert _elsewhere(run_dir) == "free"  # released once training returned
    assert ck.read_pointer(run_dir, ck.LATEST) == ck.checkpoint_name(step + 2)

    def boom(event: object) -> None:
        raise KeyboardInterrupt

    run = open_run(_resume_request(run_dir, step + 4), CPU)
    with pytest.raises(KeyboardInterrupt):
        run.train(callbacks=[boom])
    assert _elsewhere(run_dir) == "free"  # ... or raised

    # Two Runs of one folder in one process (one writer), e.g. one abandoned before training:
    # the folder stays locked until both are done.
    kept = open_run(_resume_request(run_dir, step + 4), CPU)
    other = open_run(_resume_request(run_dir, step + 4), CPU)
    kept.close()  # ... closed without training
    assert _elsewhere(run_dir).startswith(busy)
    other.close()
    assert _elsewhere(run_dir) == "free"


def test_with_several_processes_only_rank_0_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rank 0 shares its refusal through a broadcast; the other ranks never touch the lock."""
    sent: list[str] = []

    def broadcast(d: Dist, text: str | None, device: torch.device) -> str:
        if d.is_main:
            assert text is not None
            sent.append(text)
            return text
        return sent[-1]

    monkeypatch.setattr(runfolder, "broadcast_text", broadcast)
    main, other = Dist(0, 2, 0), Dist(1, 2, 1)
    held = runfolder.lock_on_main(tmp_path, main, CPU)
    assert held.held and sent == [""]
    follower = runfolder.lock_on_main(tmp_path, other, CPU)  # not refused: it does not lock
    assert not follower.held
    held.release()
    with _held_elsewhere(tmp_path):
        with pytest.raises(RunBusy, match=r"pid \d+"):
            runfolder.lock_on_main(tmp_path, main, CPU)
        assert "is writing this run" in sent[-1]
        with pytest.raises(RunBusy, match=r"pid \d+"):  # every rank raises rank 0's refusal
            runfolder.lock_on_main(tmp_path, other, CPU)


def test_readers_work_on_a_locked_run(tmp_path: Path, trained_run: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    (run / ".tmp-step-00000999-7").mkdir()  # a save in progress: readers must not see it
    (run / ".tmp-step-00000999-7" / ck.CONFIG).write_text("{")
    with _held_elsewhere(run):
        r = runner.invoke(app, ["sample", "-c", str(run), "--length", "20", "--seed", "1"])
        assert r.exit_code == 0, r.output
        assert len(r.stdout) == 21
        r = runner.invoke(app, ["info", str(run)])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["runs", str(tmp_path)])
        assert r.exit_code == 0 and "run" in r.stdout, r.output
        r = runner.invoke(app, ["eval-perplexity", "-", "-c", str(run)], input="THE WOLF\n")
        assert r.exit_code == 0, r.output


# ------------------------------------------------------------------------- whole processes


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    if "CHARRNN_CHECKPOINTS" not in extra:
        env.pop("CHARRNN_CHECKPOINTS", None)
    return env


def _popen(args: list[str], cwd: Path, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        CHARRNN + args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**extra),
    )


def _wait_for(pred, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    t0 = time.time()
    while not pred():
        assert time.time() - t0 < timeout, "timed out waiting"
        time.sleep(0.05)


def _small_run(tmp_path: Path, text: str) -> Path:
    """A run of a few steps, made in this process (its lock file names this process)."""
    (tmp_path / "c.txt").write_text(text[:20000], encoding="utf-8")
    req = TrainRequest.from_options(
        sources=(str(tmp_path / "c.txt"),),
        cell="gru",
        hidden=16,
        layers=1,
        embed_dim=8,
        batch_size=8,
        seq_len=16,
        max_steps=5,
        out=str(tmp_path / "run"),
    )
    open_run(req, CPU).train()
    return tmp_path / "run"


def _starts(run: Path) -> int:
    return sum(r["event"] == "start" for r in read_metrics(run))


@pytest.mark.slow
def test_two_resumes_at_once_one_trains_the_other_is_refused(
    tmp_path: Path, small_text: str
) -> None:
    run = _small_run(tmp_path, small_text)
    long = ["train", "--resume", "run", "--max-time", "5m", "--eval-every", "40", *TINY[-3:]]
    both = [_popen(long, tmp_path), _popen(long, tmp_path)]
    try:
        _wait_for(lambda: _holder_pid(run) in {p.pid for p in both})
        holder = next(p for p in both if p.pid == _holder_pid(run))
        refused = next(p for p in both if p is not holder)
        _, errtext = refused.communicate(timeout=60)
        assert refused.returncode == 1, errtext
        assert errtext.strip() == (
            f"charrnn: error: {_busy(Path('run'), holder.pid)}; wait for it to end, or train "
            "into another --out"
        )
        assert holder.poll() is None  # the writer trains on
        _wait_for(lambda: _starts(run) == 2 and ck.read_pointer(run, ck.LATEST) != "step-00000005")
        # Readers need no lock and keep working while the run trains and saves.
        for _ in range(3):
            r = runner.invoke(app, ["sample", "-c", str(run), "--length", "20", "--seed", "2"])
            assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["info", str(run)])
        assert r.exit_code == 0, r.output
        holder.send_signal(signal.SIGTERM)
        _, errtext = holder.communicate(timeout=120)
        assert holder.returncode == 143, errtext
    finally:
        for p in both:
            if p.poll() is None:
                p.kill()
                p.wait()
    records = _steps_go_forward(run)
    assert _starts(run) == 2  # the first session, and the one resume that trained
    last = records[-1]
    assert last["event"] == "end" and ck.read_pointer(run, ck.LATEST) == ck.checkpoint_name(
        int(last["step"])
    )
    for folder in ck.checkpoint_folders(run):
        ck.load_model(folder)


@pytest.mark.slow
def test_two_new_runs_at_once_get_two_complete_folders(tmp_path: Path, small_text: str) -> None:
    (tmp_path / "c.txt").write_text(small_text[:20000], encoding="utf-8")
    root = tmp_path / "ck"
    args = ["train", "c.txt", *TINY, "--max-steps", "30", "--eval-every", "15"]
    procs = [_popen(args, tmp_path, CHARRNN_CHECKPOINTS=str(root)) for _ in range(2)]
    for p in procs:
        _, errtext = p.communicate(timeout=300)
        assert p.returncode == 0, errtext
    assert sorted(p.name for p in root.iterdir()) == ["c-gru", "c-gru-2"]
    for run in root.iterdir():
        records = _steps_go_forward(run)
        assert [r["event"] for r in records].count("start") == 1
        assert records[-1]["event"] == "end" and records[-1]["step"] == 30
        assert ck.read_pointer(run, ck.LATEST) == "step-00000030"
        ck.load_model(run)


@pytest.mark.slow
def test_a_writer_killed_with_sigkill_does_not_block_the_next_resume(
    tmp_path: Path, small_text: str
) -> None:
    run = _small_run(tmp_path, small_text)
    p = _popen(["train", "--resume", "run", "--max-time", "5m", *TINY[-3:]], tmp_path)
    try:
        _wait_for(lambda: _holder_pid(run) == p.pid)
        time.sleep(0.5)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(60)
    assert p.returncode == -signal.SIGKILL
    assert _holder_pid(run) == p.pid  # the note outlives the process; the lock does not
    step = int(ck.newest_checkpoint(run).name.split("-")[1])  # type: ignore[union-attr]
    r = run_cli(["train", "--resume", "run", "--max-steps", str(step + 3), "--quiet"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert ck.read_pointer(run, ck.LATEST) == ck.checkpoint_name(step + 3)
    _steps_go_forward(run)


@pytest.mark.slow
def test_under_torchrun_a_locked_run_is_refused_by_every_rank(
    tmp_path: Path, small_text: str
) -> None:
    run = _small_run(tmp_path, small_text)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    args = [*torchrun, "--nproc_per_node=2", "-m", "charrnn", "train", "--resume", "run"]
    with runfolder.lock(run):
        before = _snapshot(run)
        r = subprocess.run(
            [*args, "--max-steps", "8"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(),
        )
        assert r.returncode != 0
        # Both ranks refuse with rank 0's message; neither waits for the other.
        assert r.stderr.count(_busy(Path("run"), os.getpid())) == 2, r.stderr
        assert _snapshot(run) == before
