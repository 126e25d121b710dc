"""Nothing lost, nothing run, nothing confusing: signals, kills, full disks, hostile input."""

from __future__ import annotations

import errno
import json
import os
import pickle
import pty
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.errors import TrainingError
from charrnn.run.request import TrainRequest
from charrnn.run.start import open_run
from charrnn.store import checkpoint as ck
from charrnn.store import saving
from charrnn.text.vocab import Vocab

from .conftest import CHARRNN, run_cli

runner = CliRunner()
TINY = ["--hidden", "32", "--layers", "1", "--embed-dim", "8", "--batch-size", "8"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _wait_for(pred, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _wait_line(p: subprocess.Popen[str], text: str) -> str:
    """Read the process's stderr until a line containing ``text``; return what was read."""
    assert p.stderr is not None
    seen = []
    while True:
        line = p.stderr.readline()
        if not line:
            raise AssertionError("process ended before printing " + text + ": " + "".join(seen))
        seen.append(line)
        if text in line:
            return "".join(seen)


def _start(args: list[str], cwd: Path, **kw) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ}
    env.pop("CHARRNN_CHECKPOINTS", None)
    return subprocess.Popen(
        CHARRNN + args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


# ------------------------------------------------------------------------- signals


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_signal_saves_checkpoint_then_resume_continues(
    tmp_path: Path, small_text: str, sig: signal.Signals, code: int
) -> None:
    _write(tmp_path / "c.txt", small_text[:20000])
    run = tmp_path / "run"
    p = _start(
        ["train", "c.txt", *TINY, "--max-time", "5m", "--eval-every", "100000", "--out", "run"],
        tmp_path,
    )
    head = _wait_line(p, "run folder:")
    time.sleep(1.0)
    p.send_signal(sig)
    _, rest = p.communicate(timeout=60)
    errtext = head + rest
    assert p.returncode == code, errtext
    assert "Traceback" not in errtext
    assert f"resume with: charrnn train --resume {Path('run')}" in errtext
    latest = ck.read_pointer(run, ck.LATEST)
    assert latest is not None
    step = int(latest.split("-")[1])
    assert step > 0
    ck.load_model(run)
    r = run_cli(["train", "--resume", "run", "--max-steps", str(step + 3)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert ck.read_pointer(run, ck.LATEST) == ck.checkpoint_name(step + 3)


def test_an_unvalidated_checkpoint_never_stays_best_over_a_later_one(
    tmp_path: Path, small_text: str
) -> None:
    """Sessions stopped before any validation (Ctrl-C): "best" follows "latest" until the
    run's first validation, then names the best validated checkpoint."""
    _write(tmp_path / "c.txt", small_text[:20000])
    run_dir = tmp_path / "run"

    def stop_after(n: int):  # type: ignore[no-untyped-def]
        calls = iter(range(10**6))
        return lambda: next(calls) >= n

    tiny = dict(hidden=16, layers=1, embed_dim=8, batch_size=8, seq_len=16, precision="fp32")
    req = TrainRequest.from_options(
        sources=(str(tmp_path / "c.txt"),), out=str(run_dir), eval_every=10**6, **tiny
    )
    steps = []
    for session in range(2):
        if session:
            req = TrainRequest.from_options(resume=str(run_dir), max_time=600.0)
        state = open_run(req, torch.device("cpu")).train(should_stop=stop_after(3))
        steps.append(state.step)
        assert state.best_step is None  # never validated
        latest = ck.read_pointer(run_dir, ck.LATEST)
        assert latest == ck.checkpoint_name(state.step)
        assert ck.read_pointer(run_dir, ck.BEST) == latest  # not the first session's
    assert steps[1] > steps[0] > 0
    # A session that ends normally validates; best is then the validated checkpoint.
    done = open_run(
        TrainRequest.from_options(resume=str(run_dir), max_steps=steps[1] + 2), torch.device("cpu")
    ).train()
    assert done.best_step == steps[1] + 2
    assert ck.read_pointer(run_dir, ck.BEST) == ck.checkpoint_name(steps[1] + 2)


@pytest.mark.slow
def test_second_ctrl_c_aborts_at_once(tmp_path: Path, small_text: str) -> None:
    _write(tmp_path / "c.txt", small_text[:20000])
    p = _start(["train", "c.txt", *TINY, "--max-time", "5m", "--out", "run"], tmp_path)
    _wait_line(p, "run folder:")
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGINT)
    _, errtext = p.communicate(timeout=60)
    assert p.returncode == 130
    assert "Traceback" not in errtext


@pytest.mark.slow
def test_sigkill_at_any_moment_leaves_a_loadable_checkpoint(
    tmp_path: Path, small_text: str
) -> None:
    _write(tmp_path / "c.txt", small_text[:20000])
    run = tmp_path / "run"
    rng = random.Random(0)
    for i in range(4):
        args = ["train", "--max-time", "5m", "--eval-every", "1"]
        args += ["--resume", "run"] if i else ["c.txt", *TINY, "--out", "run"]
        p = _start(args, tmp_path)
        before = ck.read_pointer(run, ck.LATEST)
        _wait_for(lambda b=before: ck.read_pointer(run, ck.LATEST) not in (None, b))
        time.sleep(rng.uniform(0.0, 0.6))  # a save happens every step: likely mid-save
        p.kill()
        p.communicate(timeout=30)
        loaded = ck.load_model(run)  # best checkpoint: complete and valid
        newest = ck.newest_checkpoint(run)
        assert newest is not None and ck.load_model(newest).vocab.itos == loaded.vocab.itos
    r = run_cli(
        ["train", "--resume", "run", "--max-steps", "1000000", "--max-time", "1s"], tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert not [p for p in run.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.slow
def test_a_closed_terminal_saves_the_run_and_exits_129(tmp_path: Path, small_text: str) -> None:
    """The terminal (or SSH session) goes away: SIGHUP, and from then on every write to it
    fails (EIO), the live view's included. The run still stops after its step, saves, exits 129,
    and resumes."""
    _write(tmp_path / "c.txt", small_text[:20000])
    run = tmp_path / "run"
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    for name in ("CHARRNN_CHECKPOINTS", "NO_COLOR"):
        env.pop(name, None)
    args = ["train", "c.txt", *TINY, "--max-time", "5m", "--eval-every", "100000", "--out", "run"]
    p = subprocess.Popen(
        CHARRNN + args,
        cwd=tmp_path,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        start_new_session=True,
    )
    os.close(follower)
    seen = b""
    while b"run folder:" not in seen:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            p.kill()
            raise AssertionError(f"ended before training: {seen!r}")
        seen += chunk
    time.sleep(1.0)  # training, its live view redrawn on the terminal
    os.close(leader)  # the terminal is gone
    p.send_signal(signal.SIGHUP)
    assert p.wait(timeout=60) == 129
    latest = ck.read_pointer(run, ck.LATEST)
    assert latest is not None and int(latest.split("-")[1]) > 0
    ck.load_model(run)
    step = int(latest.split("-")[1])
    r = run_cli(["train", "--resume", "run", "--max-steps", str(step + 3)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert ck.read_pointer(run, ck.LATEST) == ck.checkpoint_name(step + 3)


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory, verses_text: str) -> Path:
    """About 30 MB of text: reading it takes a few seconds, time to send a signal."""
    path = tmp_path_factory.mktemp("big") / "big.txt"
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(30_000_000 // len(verses_text) + 1):
            f.write(verses_text)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "line"),
    [
        (signal.SIGINT, "charrnn: interrupted"),
        (signal.SIGTERM, "charrnn: interrupted (SIGTERM)"),
        (signal.SIGHUP, "charrnn: interrupted (SIGHUP)"),
    ],
)
@pytest.mark.parametrize("out", [None, "mine"])
def test_a_signal_while_the_corpus_is_read_removes_the_new_run_folder(
    tmp_path: Path, big_corpus: Path, sig: int, line: str, out: str | None
) -> None:
    root = tmp_path / "checkpoints"
    root.mkdir()
    args = ["train", str(big_corpus), "--threads", "1", "--max-steps", "1"]
    p = _start([*args, "--out", f"checkpoints/{out}"] if out else args, tmp_path)
    _wait_for(lambda: any(root.iterdir()))  # the new run folder (a hidden staging one or --out)
    time.sleep(0.3)  # reading the corpus into it
    p.send_signal(sig)
    _, errtext = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, errtext
    assert errtext == line + "\n"
    assert list(root.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_at_any_moment_leaves_a_saved_run_or_none(
    tmp_path: Path, small_text: str, sig: int
) -> None:
    """From right after start (loading, the probes of the machine) into training: one line, exit
    128 + the signal, and never a run folder without a checkpoint."""
    _write(tmp_path / "c.txt", small_text[:20000])
    root = tmp_path / "checkpoints"
    for delay in (0.5, 0.9, 1.3, 1.7, 2.1, 2.5, 3.0, 4.0):
        # --max-epochs inf: the run must still be training when the last signal comes
        args = ["train", "c.txt", "--hidden", "32", "--max-time", "1m", "--max-epochs", "inf"]
        p = _start(args, tmp_path)
        time.sleep(delay)
        p.send_signal(sig)
        _, errtext = p.communicate(timeout=60)
        assert p.returncode == 128 + sig, (delay, errtext)
        assert "Traceback" not in errtext, (delay, errtext)
        for run in root.iterdir() if root.exists() else ():
            assert ck.checkpoint_folders(run), (delay, sorted(x.name for x in run.iterdir()))
            shutil.rmtree(run)


# ------------------------------------------------------------------------- disk and NaN


def test_disk_full_keeps_the_previous_checkpoint(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _write(tmp_path / "c.txt", small_text[:20000])
    real_save = saving.save_file
    calls = {"n": 0}

    def flaky_save(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 3:  # the first checkpoint (three tensor files) fits, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(saving, "save_file", flaky_save)
    out = tmp_path / "run"
    r = runner.invoke(
        app,
        ["train", str(corpus), *TINY, "--max-steps", "20", "--eval-every", "5", "--out", str(out)],
    )
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) >= 1 and lines[-1].startswith("charrnn: error: ")
    assert "cannot save checkpoint (No space left on device)" in lines[-1]
    assert ck.read_pointer(out, ck.LATEST) == "step-00000005"
    ck.load_model(out)
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


_FILL_THE_DISK = """
import json, os, shutil, subprocess, sys, time
disk, corpus, copy, command = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", disk], check=True)
shutil.copy(corpus, os.path.join(disk, "c.txt"))
run = os.path.join(disk, "run")
p = subprocess.Popen(command, cwd=disk, stderr=subprocess.PIPE, text=True)
t0 = time.time()
while not os.path.exists(os.path.join(run, "latest")) and time.time() - t0 < 120:
    time.sleep(0.02)
st = os.statvfs(disk)  # fill the disk, leaving 64 KB: room for JSON, not for the weights
with open(os.path.join(disk, "filler"), "wb") as f:
    f.write(bytes(st.f_bavail * st.f_frsize - 65536))
_, err = p.communicate(timeout=300)
shutil.copytree(run, copy)
print(json.dumps({"code": p.returncode, "stderr": err}))
"""


def _private_mounts() -> list[str] | None:
    """A command prefix that runs in a mount namespace of its own (where a tmpfs can be
    mounted), or None where this machine allows none."""
    for prefix in (["unshare", "--user", "--map-root-user", "--mount"], ["unshare", "--mount"]):
        try:
            ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if ok.returncode == 0:
            return prefix
    return None


@pytest.mark.slow
def test_a_disk_that_fills_up_while_training_is_one_line_and_keeps_the_checkpoint(
    tmp_path: Path, small_text: str
) -> None:
    """A real full disk (a small tmpfs, filled once the first checkpoint is saved): the next
    save fails in safetensors' writer; one line names the checkpoint and the reason, exit 1,
    the previous checkpoint is kept whole and nothing half-written is left."""
    prefix = _private_mounts()
    if prefix is None:
        pytest.skip("no mount namespace here (unshare) to make a small disk in")
    corpus = _write(tmp_path / "c.txt", small_text[:20000])
    (tmp_path / "disk").mkdir()
    args = ["train", "c.txt", "--hidden", "128", "--layers", "1", "--batch-size", "8"]
    args += ["--threads", "1", "--max-time", "5m", "--eval-every", "30", "--out", "run"]
    r = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-c",
            _FILL_THE_DISK,
            str(tmp_path / "disk"),
            str(corpus),
            str(tmp_path / "copy"),
            json.dumps(CHARRNN + args),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["code"] == 1, result["stderr"]
    lines = result["stderr"].strip().splitlines()
    assert "Traceback" not in result["stderr"]
    failed = re.fullmatch(
        r"charrnn: error: run/step-(\d{8}): cannot save checkpoint \(No space left on device\)",
        lines[-1],
    )
    assert failed, lines[-1]
    copy = tmp_path / "copy"
    latest = ck.read_pointer(copy, ck.LATEST)
    assert latest is not None and int(latest.split("-")[1]) < int(failed.group(1))
    ck.load_model(copy / latest)
    ck.load_model(copy)
    assert not [p for p in copy.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["train", "--help"],
        ["sample", "--help"],
        ["--show-completion", "bash"],
        ["sample", "-c", "RUN", "--length", "20", "--seed", "1"],
        ["sample", "-c", "RUN", "--length", "20", "--num-samples", "2"],
        ["runs", "ROOT"],
        ["runs", "ROOT", "--json"],
        ["info", "RUN"],
        ["info", "RUN", "--json"],
        ["eval-perplexity", "-c", "RUN", "TEXT"],
        ["eval-perplexity", "-c", "RUN", "TEXT", "--json"],
    ],
    ids=" ".join,
)
def test_a_full_stdout_is_one_line_exit_1_in_every_command(
    args: list[str], trained_run: Path, tmp_path: Path, small_text: str
) -> None:
    """``charrnn ... > /dev/full``: whoever writes stdout (the command, Typer's help, the last
    flush), one line on stderr and exit 1, never a traceback."""
    text = _write(tmp_path / "t.txt", small_text[:2000])
    where = {"RUN": str(trained_run), "ROOT": str(trained_run.parent), "TEXT": str(text)}
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            CHARRNN + [where.get(a, a) for a in args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert (r.returncode, r.stderr) == (
        1,
        "charrnn: error: stdout: cannot write (No space left on device)\n",
    )


def test_weights_with_nan_are_never_saved(tmp_path: Path, small_text: str) -> None:
    corpus = _write(tmp_path / "c.txt", small_text[:5000])
    req = TrainRequest.from_options(
        sources=(str(corpus),),
        hidden=16,
        layers=1,
        max_steps=4,
        eval_every=2,
        out=str(tmp_path / "run"),
    )
    run = open_run(req, torch.device("cpu"))
    state = run.train()
    with torch.no_grad():
        run.model.head.bias[0] = float("nan")
    state.step += 1
    with pytest.raises(TrainingError, match="NaN or Inf"):
        run.save(state, best=True)
    assert ck.read_pointer(tmp_path / "run", ck.LATEST) == "step-00000004"


# ------------------------------------------------------------------------- no pickle


def test_train_sample_eval_never_unpickle(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("pickle-based loading was called")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    corpus = _write(tmp_path / "c.txt", small_text[:8000])
    out = str(tmp_path / "run")
    r = runner.invoke(
        app, ["train", str(corpus), *TINY, "--max-steps", "6", "--eval-every", "3", "--out", out]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", "--resume", out, "--max-steps", "9"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["sample", "-c", out, "--length", "20"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval-perplexity", str(corpus), "-c", out])
    assert r.exit_code == 0, r.output


# ------------------------------------------------------------------------- text input


@pytest.mark.slow
def test_non_ascii_trains_samples_and_evaluates(tmp_path: Path) -> None:
    lines = [
        "山高水长云自在\uff0c风起花落月无声\u3002",
        "小桥流水人家远\uff0c古道西风夜色深\u3002",
        "café naïve e\u0301 🙂🚀",
        "Ωμέγα λόγος",
    ]
    rng = random.Random(1)
    text = "\n".join(rng.choice(lines) for _ in range(600)) + "\n"
    _write(tmp_path / "poems.txt", text)
    r = run_cli(["train", "poems.txt", *TINY, "--max-steps", "150", "--lr", "0.01"], tmp_path)
    assert r.returncode == 0, r.stderr
    vocab = json.loads(
        (ck.resolve_checkpoint(tmp_path / "checkpoints" / "poems-gru") / "vocab.json").read_text()
    )
    assert "🙂" in vocab["chars"] and "风" in vocab["chars"] and "\u0301" in vocab["chars"]
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in vocab["chars"])
    # LC_ALL=C and an ASCII stdio encoding: the output is still UTF-8.
    r = run_cli(["sample", "--length", "300", "--seed", "2", "--prime", "山"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("山") and any(ord(c) > 0x2000 for c in r.stdout[1:])
    r = run_cli(["eval-perplexity", "poems.txt", "--json"], tmp_path)
    row = json.loads(r.stdout)["files"][0]
    unigram = Vocab.from_dict(vocab).unigram_entropy_bits()
    assert row["chars"] == len(text) and row["unknown"] == 0
    assert row["bits_per_char"] < unigram - 1.0


@pytest.mark.slow
def test_file_names_that_are_not_utf8_train_resume_sample_and_show(
    tmp_path: Path, small_text: str
) -> None:
    """Names from another locale (Latin-1 bytes; Python sees surrogate escapes) for the corpus,
    the validation file and the run folder: saved (config.json stays UTF-8), resumed from the
    token cache and from the file read again, sampled, listed and described."""
    here = os.fsencode(str(tmp_path))
    _write(Path(os.fsdecode(here + b"/caf\xe9.txt")), small_text[:8000])
    _write(Path(os.fsdecode(here + b"/v\xe9.txt")), small_text[8000:10000])
    args = [*TINY, "--max-steps", "6", "--eval-every", "3"]
    r = run_cli(["train", b"caf\xe9.txt", *args], tmp_path)  # type: ignore[list-item]
    assert r.returncode == 0, r.stderr
    run = Path(os.fsdecode(here + b"/checkpoints/caf\xe9-gru"))
    assert "sample with: charrnn sample -c $'checkpoints/caf\\xe9-gru'" in r.stderr
    config = (ck.resolve_checkpoint(run) / ck.CONFIG).read_bytes().decode("utf-8")
    assert os.fsencode(json.loads(config)["data"]["sources"][0]) == here + b"/caf\xe9.txt"
    r = run_cli(["train", "--resume", os.fsencode(run), "--max-steps", "9"], tmp_path)  # type: ignore[list-item]
    assert r.returncode == 0, r.stderr
    os.utime(here + b"/caf\xe9.txt")  # touched: read again on resume, the same text
    r = run_cli(["train", "--resume", os.fsencode(run), "--max-steps", "12"], tmp_path)  # type: ignore[list-item]
    assert r.returncode == 0, r.stderr
    assert ck.read_pointer(run, ck.LATEST) == ck.checkpoint_name(12)
    r = run_cli(["sample", "--length", "20"], tmp_path)
    assert r.returncode == 0 and len(r.stdout) > 10, r.stderr
    r = run_cli(["runs"], tmp_path)
    assert r.returncode == 0 and "caf\\xe9-gru  caf\\xe9.txt" in r.stdout, r.stderr
    r = run_cli(["runs", "--json"], tmp_path)
    assert json.loads(r.stdout)[0]["corpus"] == os.fsdecode(b"caf\xe9.txt")
    r = run_cli(["info"], tmp_path)
    assert r.returncode == 0 and "caf\\xe9.txt" in r.stdout, r.stderr
    r = run_cli(["plot", os.fsencode(run), "-o", "c.svg"], tmp_path)  # type: ignore[list-item]
    assert r.returncode == 0, r.stderr
    # A validation file and a run folder named so too (--out).
    out = here + b"/r\xe9"
    r = run_cli(["train", b"caf\xe9.txt", "--val", b"v\xe9.txt", "--out", out, *args], tmp_path)  # type: ignore[list-item]
    assert r.returncode == 0, r.stderr
    r = run_cli(["train", "--resume", out, "--max-steps", "9"], tmp_path)  # type: ignore[list-item]
    assert r.returncode == 0, r.stderr
    r = run_cli(["eval-perplexity", "-c", out, b"v\xe9.txt"], tmp_path)  # type: ignore[list-item]
    assert r.returncode == 0 and "v\\xe9.txt" in r.stdout, r.stderr


@pytest.mark.slow
def test_stdin_corpus_gives_the_same_run_as_the_file(tmp_path: Path, small_text: str) -> None:
    _write(tmp_path / "c.txt", small_text[:10000])
    args = [*TINY, "--max-steps", "8", "--eval-every", "4"]
    a = run_cli(["train", "c.txt", *args, "--out", "a"], tmp_path)
    with open(tmp_path / "c.txt", "rb") as f:
        b = subprocess.run(
            [*CHARRNN, "train", "-", *args, "--out", "b"],
            cwd=tmp_path,
            stdin=f,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert a.returncode == 0 and b.returncode == 0, b.stderr
    from safetensors.torch import load_file

    wa = load_file(str(ck.resolve_checkpoint(tmp_path / "a") / "model.safetensors"))
    wb = load_file(str(ck.resolve_checkpoint(tmp_path / "b") / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # The stdin run keeps its text, so it can be resumed with nothing else given.
    r = run_cli(["train", "--resume", "b", "--max-steps", "10"], tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_control_characters_are_reported_and_small_corpora_shrink(tmp_path: Path) -> None:
    _write(tmp_path / "c.txt", ("ab\x00cd\x07 " * 25))
    r = run_cli(["train", "c.txt", *TINY, "--max-steps", "2"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "note: corpus holds 45 NUL or other control characters" in r.stderr
    assert "note: corpus is small (157 training characters): using 4 streams of 32" in r.stderr


@pytest.mark.slow
def test_large_corpus_trains_in_bounded_memory(tmp_path: Path) -> None:
    rng = random.Random(0)
    words = ["lantern", "river", "hollow", "gleam", "north", "ember", "quiet", "stone"]
    block = "".join(
        " ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) + ".\n" for _ in range(20000)
    )
    big = tmp_path / "big.txt"
    with open(big, "w") as f:
        while f.tell() < 100_000_000:
            f.write(block)
    _write(tmp_path / "tiny.txt", block[:20000])

    def peak_rss_kb(corpus: str) -> int:
        args = [
            *CHARRNN,
            "train",
            corpus,
            *TINY,
            "--max-steps",
            "3",
            "--val-fraction",
            "0.01",
            "--out",
            f"run-{corpus}",
        ]
        code = (
            "import resource, subprocess, sys;"
            f"r = subprocess.run({args!r}, capture_output=True, text=True);"
            "assert r.returncode == 0, r.stderr;"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert out.returncode == 0, out.stderr
        return int(out.stdout.strip())

    tiny, large = peak_rss_kb("tiny.txt"), peak_rss_kb("big.txt")
    # 100 MB of text: reading it whole would cost >100 MB as a str and ~800 MB as ids.
    assert large < tiny + 80_000, (tiny, large)
    assert (tmp_path / "run-big.txt" / "tokens-train.bin").stat().st_size > 98_000_000


# ------------------------------------------------------------------------- the shell


@pytest.mark.slow
def test_sample_output_is_flushed_as_generated(trained_run: Path) -> None:
    p = subprocess.Popen(
        [*CHARRNN, "sample", "-c", str(trained_run), "--length", "1000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert p.stdout is not None
        first = p.stdout.read(5)
        assert len(first) == 5 and p.poll() is None
    finally:
        p.kill()
        p.communicate()


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = run_cli(["train", "missing.txt", "--debug"], tmp_path)
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "charrnn: error: missing.txt: no such file" in r.stderr
    r = run_cli(["train", "missing.txt"], tmp_path)
    assert r.returncode == 1 and r.stderr == "charrnn: error: missing.txt: no such file\n"


def _on_a_terminal(args: list[str], cwd: Path, env_extra: dict[str, str]) -> tuple[int, bytes]:
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", **env_extra}
    env.pop("NO_COLOR", None) if "NO_COLOR" not in env_extra else None
    p = subprocess.Popen(
        CHARRNN + args, cwd=cwd, stdin=follower, stdout=subprocess.PIPE, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    p.wait(timeout=300)
    os.close(leader)
    return p.returncode, b"".join(chunks)


@pytest.mark.slow
def test_no_color_means_no_escapes_even_on_a_terminal(tmp_path: Path, small_text: str) -> None:
    _write(tmp_path / "c.txt", small_text[:20000])
    args = ["train", "c.txt", *TINY, "--max-steps", "60", "--eval-every", "30"]
    code, live = _on_a_terminal([*args, "--out", "a"], tmp_path, {})
    assert code == 0 and b"\x1b[" in live  # a live view on a terminal...
    code, plain = _on_a_terminal([*args, "--out", "b"], tmp_path, {"NO_COLOR": "1"})
    assert code == 0 and b"\x1b[" not in plain and b"\r" not in plain.replace(b"\r\n", b"")
    assert b"best val loss" in plain


@pytest.mark.slow
def test_prime_file_in_another_encoding(trained_run: Path, tmp_path: Path) -> None:
    prime = tmp_path / "prime.txt"
    prime.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    args = ["sample", "-c", str(trained_run), "--prime-file", str(prime), "--length", "20"]
    r = run_cli([*args, "--encoding", "latin-1", "--seed", "1"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("caf\u00e9 au lait") and len(r.stdout) > len("café au lait") + 10
    r = run_cli(args, tmp_path)  # read as UTF-8: the byte 0xE9 is not valid there
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"charrnn: error: {prime}") and r.stderr.count("\n") == 1
