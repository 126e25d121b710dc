"""Beyond one CPU, tested on one: DDP over gloo with 2 processes, autocast precision, devices."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.run.request import TrainRequest
from charrnn.run.start import open_run
from charrnn.store import checkpoint as ck

from .conftest import run_cli

ARGS = [
    "--hidden",
    "32",
    "--layers",
    "2",
    "--embed-dim",
    "8",
    "--batch-size",
    "8",
    "--dropout",
    "0",
    "--max-steps",
    "12",
    "--eval-every",
    "6",
]


@pytest.mark.slow
def test_two_gloo_processes_follow_the_single_process_run(tmp_path: Path, small_text: str) -> None:
    (tmp_path / "c.txt").write_text(small_text[:30000])
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "charrnn",
    ]
    r = subprocess.run(
        [*torchrun, "train", "c.txt", *ARGS, "--out", "ddp"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("best val loss") == 1  # rank 0 alone reports
    single = run_cli(["train", "c.txt", *ARGS, "--out", "single"], tmp_path)
    assert single.returncode == 0, single.stderr

    a = ck.resolve_checkpoint(tmp_path / "ddp")
    b = ck.resolve_checkpoint(tmp_path / "single")
    wa, wb = load_file(str(a / ck.MODEL)), load_file(str(b / ck.MODEL))
    assert wa.keys() == wb.keys()  # the ordinary format: no DDP "module." prefixes
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4)
    # The same data was seen: same step count, characters and (nearly) the same losses.
    import json

    ma = json.loads((a / ck.CONFIG).read_text())["metrics"]
    mb = json.loads((b / ck.CONFIG).read_text())["metrics"]
    assert ma["step"] == mb["step"] == 12 and ma["tokens"] == mb["tokens"]
    assert abs(ma["val_loss"] - mb["val_loss"]) < 1e-4
    # A distributed checkpoint loads, samples and resumes in a single process.
    ck.load_model(tmp_path / "ddp")
    r = run_cli(["train", "--resume", "ddp", "--max-steps", "15"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert ck.read_pointer(tmp_path / "ddp", ck.LATEST) == "step-00000015"
    # ... and resumes under torchrun again, as the single-process run resumes in one process.
    r = subprocess.run(
        [*torchrun, "train", "--resume", "ddp", "--max-steps", "18"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli(["train", "--resume", "single", "--max-steps", "15"], tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli(["train", "--resume", "single", "--max-steps", "18"], tmp_path)
    assert r.returncode == 0, r.stderr
    a = ck.resolve_checkpoint(tmp_path / "ddp")
    b = ck.resolve_checkpoint(tmp_path / "single")
    assert a.name == b.name == "step-00000018"
    wa, wb = load_file(str(a / ck.MODEL)), load_file(str(b / ck.MODEL))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-4, rtol=1e-3)


@pytest.mark.slow
def test_two_gloo_processes_fine_tune_as_one_does(tmp_path: Path, small_text: str) -> None:
    """--init-from under torchrun: every rank builds the parent's architecture and the grown
    vocabulary, and the result is the single-process fine-tune."""
    (tmp_path / "a.txt").write_text(small_text[:20000])
    (tmp_path / "b.txt").write_text(small_text[20000:30000].upper() + "0123456789 {}[]\n")
    assert run_cli(["train", "a.txt", *ARGS, "--out", "parent"], tmp_path).returncode == 0
    tune = ["train", "b.txt", "--init-from", "parent", "--max-steps", "6", "-b", "8"]
    tune += ["--dropout", "0"]  # dropout draws differ between 2 processes and one
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    r = subprocess.run(
        [*torchrun, "--nproc_per_node=2", "-m", "charrnn", *tune, "--out", "ddp"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert run_cli([*tune, "--out", "single"], tmp_path).returncode == 0
    a, b = ck.load_model(tmp_path / "ddp"), ck.load_model(tmp_path / "single")
    assert a.config["init_from"] == b.config["init_from"] and a.vocab.itos == b.vocab.itos
    wa, wb = a.model.state_dict(), b.model.state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4)


def test_bf16_autocast_trains_on_cpu_and_saves_fp32(tmp_path: Path, small_text: str) -> None:
    (tmp_path / "c.txt").write_text(small_text[:20000])
    req = TrainRequest.from_options(
        sources=(str(tmp_path / "c.txt"),),
        hidden=48,
        layers=1,
        embed_dim=16,
        batch_size=8,
        lr=1e-2,
        precision="bf16",
        max_steps=60,
        eval_every=30,
        out=str(tmp_path / "run"),
    )
    run = open_run(req, torch.device("cpu"))
    assert run.train_config.precision == "bf16"
    events: list[object] = []
    run.train(callbacks=[events.append])
    from charrnn.training.events import Evaluated

    vals = [e.val.nats_per_token for e in events if isinstance(e, Evaluated)]
    assert len(vals) == 2 and vals[1] < vals[0]
    loaded = ck.load_model(tmp_path / "run", device=torch.device("cpu"))
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())


def test_precision_and_device_errors(tmp_path: Path, small_text: str) -> None:
    (tmp_path / "c.txt").write_text(small_text[:5000])
    runner = CliRunner()
    r = runner.invoke(app, ["train", str(tmp_path / "c.txt"), "--precision", "fp8"])
    assert r.exit_code == 2
    if not torch.cuda.is_available():
        r = runner.invoke(
            app,
            ["train", str(tmp_path / "c.txt"), "--precision", "fp16", "--out", str(tmp_path / "r")],
        )
        assert r.exit_code == 1 and "needs a CUDA device" in r.output
        assert not (tmp_path / "r").exists()
        r = runner.invoke(app, ["train", str(tmp_path / "c.txt"), "--device", "cuda"])
        assert r.exit_code == 1 and "CUDA is not available" in r.output
        r = runner.invoke(app, ["sample", "--device", "cuda:1", "-c", str(tmp_path)])
        assert r.exit_code == 1 and r.output.count("\n") == 1
