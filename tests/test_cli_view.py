"""The live view of ``charrnn train`` (charrnn/cli/view.py): the start line's device part
(``where``), the header, and what the Reporter makes of training events, on a tiny real run."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from charrnn.cli import view
from charrnn.cli.view import PREVIEW_LINES, PREVIEW_WIDTH, Reporter, fit, header, where
from charrnn.model.config import ModelConfig
from charrnn.run.plan import Plan
from charrnn.run.request import TrainRequest
from charrnn.run.session import Run
from charrnn.run.start import open_run
from charrnn.store import checkpoint as ck
from charrnn.training.config import TrainConfig, TrainerState
from charrnn.training.distributed import SINGLE, Dist
from charrnn.training.events import Evaluated, Finished, Skipped, Started, Stepped
from charrnn.units import Score

CPU = torch.device("cpu")
MC = ModelConfig(vocab_size=10, hidden=8, embed_dim=4, layers=1)
Capture = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small_text: str) -> tuple[Run, TrainerState]:
    d = tmp_path_factory.mktemp("view")
    corpus = d / "verse.txt"
    corpus.write_text(small_text[:5000], encoding="utf-8")
    req = TrainRequest.from_options(
        sources=(str(corpus),), hidden=16, layers=1, embed_dim=8, batch_size=8, seq_len=16,
        max_steps=6, eval_every=3, precision="fp32", out=str(d / "run"),
    )  # fmt: skip
    run = open_run(req, CPU, threads=1)
    return run, run.train()


@pytest.fixture
def run(trained: tuple[Run, TrainerState]) -> Run:
    """A copy of the trained run whose plan a test may change."""
    return copy.copy(trained[0])


def _with_limits(run: Run, **limits: Any) -> Run:
    run.plan = dataclasses.replace(
        run.plan, training=dataclasses.replace(run.plan.training, **limits)
    )
    return run


def _step(step: int, **kw: float) -> Stepped:
    base = dict(epoch=0.5, loss=1.0, lr=1e-3, tokens_per_sec=1500.0, elapsed=10.0)
    base.update(progress=0.5, loss_per_char=math.log(4.0))
    base.update(kw)
    return Stepped(step=step, **base)


def _eval(step: int, bits_per_char: float, best: bool, **kw: object) -> Evaluated:
    val = Score(tokens=100, chars=100, nats=100 * bits_per_char * math.log(2))
    return Evaluated(step, 0.5, val, 1.2, best, False, 1.2, **kw)  # type: ignore[arg-type]


def _lines(capsys: Capture) -> list[str]:
    return capsys.readouterr().err.splitlines()


# ----------------------------------------------------------------------------- the start line


@pytest.mark.parametrize(
    ("plan", "text"),
    [
        (Plan(MC, TrainConfig()), "cpu, fp32"),
        (
            Plan(MC, TrainConfig(precision="bf16"), threads=2, thread_candidates=(1, 2),
                 bf16_speedup=1.5),
            "cpu, 2 threads (the faster of 1 and 2 here), bf16 autocast "
            "(bf16 at 1.50x the speed of fp32 here)",
        ),
        (Plan(MC, TrainConfig(), threads=1, thread_candidates=(1, 4)),
         "cpu, 1 thread (the faster of 1 and 4 here), fp32"),
        (Plan(MC, TrainConfig(), bf16_speedup=0.8),
         "cpu, fp32 (bf16 at 0.80x the speed of fp32 here)"),
    ],
)  # fmt: skip
def test_where_names_the_device_threads_and_precision_the_plan_chose(plan: Plan, text: str) -> None:
    assert where(CPU, SINGLE, plan) == text


def test_where_with_several_processes() -> None:
    plan = Plan(MC, TrainConfig(precision="fp16"))
    assert where(torch.device("cuda", 1), Dist(0, 4, 1), plan) == "4 processes, cuda, fp16 autocast"


def test_header_says_what_trains_on_what_until_when_and_where(run: Run, capsys: Capture) -> None:
    header(run, where(CPU, SINGLE, run.plan))
    first, folder = _lines(capsys)
    assert first.startswith(
        f"training GRU 1x16 ({run.model.num_parameters():,} parameters) on "
        f"{run.corpus.train_text_chars:,} characters, vocabulary {len(run.vocab)}; "
    )
    assert first.endswith("; batch 8x16, lr 0.008, device cpu, fp32; stops at 6 steps")
    assert folder == f"run folder: {run.run_dir}"


def test_header_lists_every_limit_and_each_notice(run: Run, capsys: Capture) -> None:
    _with_limits(run, max_time=90.0, max_steps=1, max_epochs=2.5)
    run.notices = ["corpus is small", "about 9 passes over the corpus expected: dropout 0.1"]
    header(run, "cpu, fp32")
    lines = _lines(capsys)
    assert lines[0].endswith("stops at time 1m30s or 1 step or 2.5 epochs")
    assert lines[2:] == [f"note: {n}" for n in run.notices]


def test_fit_drops_the_least_important_fields_whole() -> None:
    fields = [("a", 0), ("bbbb", 1), ("", 0), ("cc", 1)]
    assert fit(fields, 11) == "a  bbbb  cc"
    assert fit(fields, 10) == "a  bbbb"  # a tie: the later one goes first
    assert fit(fields, 6) == "a"
    assert fit(fields, 0) == ""
    assert fit([("x", 5), ("yy", 0)], 2) == "yy"  # by priority, not position


# ----------------------------------------------------------------------------- the reporter


def test_the_limit_shown_is_the_one_reached_first(run: Run) -> None:
    r = Reporter(_with_limits(run, max_steps=6, max_time=None, max_epochs=None), live=False)
    assert r.limit(_step(3)) == (0.5, "step 3/6")
    _with_limits(run, max_steps=6, max_time=60.0, max_epochs=2.0)
    assert r.limit(_step(3, elapsed=45.0)) == (0.75, "45.0s/1m00s")
    assert r.limit(_step(3, elapsed=1.0, epoch=1.8)) == (pytest.approx(0.9), "epoch 1.80/2")
    assert r.limit(_step(12, elapsed=1.0)) == (1.0, "step 12/6")  # never past the end
    _with_limits(run, max_steps=None, max_time=None, max_epochs=None)
    fraction, text = r.limit(_step(3, progress=float("nan")))
    assert math.isnan(fraction) and text == "step 3"


def test_eta_from_the_sessions_pace(run: Run) -> None:
    r = Reporter(run, live=False)
    assert r.eta(_step(1, elapsed=1.0, progress=0.1)) is None  # nothing to go by yet
    assert r.eta(_step(2, elapsed=3.0, progress=0.3)) == pytest.approx(7.0)  # 0.1 per second
    assert r.eta(_step(3, elapsed=0.5, progress=0.4)) is None  # a clock before the first
    assert r.eta(_step(3, elapsed=5.0, progress=0.05)) is None  # no progress since
    assert r.eta(_step(4, progress=float("nan"))) is None


def test_fields_in_order_with_their_priorities(run: Run) -> None:
    r = Reporter(_with_limits(run, max_steps=6, max_time=None, max_epochs=None), live=False)
    fields = r.fields(_step(3))
    assert fields == [
        ("50%", 0), ("eta -", 1), ("loss 1.386 = 2.000 bpc", 2), ("val -", 3),
        ("lr 1.00e-03", 5), ("1.5k chars/s", 4),
    ]  # fmt: skip


def test_validations_update_the_val_field_and_are_logged(run: Run, capsys: Capture) -> None:
    r = Reporter(run, live=False)
    r(_step(3, lr=2.5e-4))
    r(_eval(3, 2.0, best=True))
    assert r.val_text() == "val 2.000 bpc (best)"
    r(_eval(6, 2.25, best=False))
    assert r.val_text() == "val 2.250 bpc (best 2.000)"
    first, second = _lines(capsys)
    assert first == (
        "step      3  epoch   0.50  train 1.2000 nats  val 1.3863 nats = 2.0000 bits/char"
        "  lr 2.50e-04  (best)"
    )
    assert second.startswith("step      6") and not second.endswith("(best)")


def test_skips_and_notes_are_logged(run: Run, capsys: Capture) -> None:
    r = Reporter(run, live=False)
    r(Skipped(5, "non-finite loss or gradient (loss nan)"))
    r.note("step 40: threads measured again: 1 (was 2)")
    assert _lines(capsys) == [
        "step 5: skipped, non-finite loss or gradient (loss nan)",
        "note: step 40: threads measured again: 1 (was 2)",
    ]


def test_off_a_terminal_a_progress_line_comes_every_plain_every_seconds(
    run: Run, capsys: Capture
) -> None:
    r = Reporter(_with_limits(run, max_steps=6, max_time=None, max_epochs=None), live=False)
    r(_step(1))
    assert _lines(capsys) == []  # too soon
    r.last_line = time.perf_counter() - view.PLAIN_EVERY - 1
    r(_step(2, progress=1 / 3))
    r(_step(3))
    (line,) = _lines(capsys)
    assert line == "step 2/6  33%  eta -  loss 1.386 = 2.000 bpc  val -  lr 1.00e-03  1.5k chars/s"


def test_a_sample_preview_does_not_touch_the_training_generator(run: Run, capsys: Capture) -> None:
    r = Reporter(run, live=False, sample_every=2)
    r(_eval(3, 2.0, best=True))
    rng = torch.get_rng_state()
    r(_eval(6, 2.0, best=False))  # the second evaluation: a sample
    assert torch.equal(torch.get_rng_state(), rng)
    lines = _lines(capsys)
    start = lines.index("sample at step 6:")
    preview = lines[start + 1 :]
    assert 1 <= len(preview) <= PREVIEW_LINES
    assert all(p.startswith("  | ") and len(p) <= 4 + PREVIEW_WIDTH for p in preview)


def test_the_summary_says_why_it_stopped_and_where_things_are(
    trained: tuple[Run, TrainerState], capsys: Capture
) -> None:
    run, state = trained
    Reporter(run, live=False).summary(state, "max_steps")
    lines = _lines(capsys)
    assert lines[0].startswith(f"done (max steps): 6 steps, {6 * 8 * 16:,} characters seen, ")
    assert lines[1].startswith("train loss ") and lines[1].endswith(" bits/char")
    assert lines[2].startswith("best val loss ") and lines[2].endswith(f"(step {state.best_step})")
    best = ck.read_pointer(run.run_dir, ck.BEST)
    assert lines[-3:] == [
        f"checkpoints: {run.run_dir} (best: {best})",
        f"metrics: {run.run_dir / 'metrics.jsonl'}",
        f"sample with: charrnn sample -c {run.run_dir}",
    ]


@pytest.mark.parametrize(
    ("reason", "said"),
    [(None, "done (stopped)"), ("interrupted", "done (interrupted)"),
     ("patience", "done (patience: no better validation in 3 evaluations)")],
)  # fmt: skip
def test_the_summary_names_other_reasons(
    run: Run, trained: tuple[Run, TrainerState], reason: str | None, said: str, capsys: Capture
) -> None:
    _with_limits(run, patience=3)
    state = dataclasses.replace(trained[1], step=1)
    Reporter(run, live=False).summary(state, reason)
    assert _lines(capsys)[0].startswith(f"{said}: 1 step, ")


def test_on_a_terminal_the_bar_lives_from_start_to_finish(run: Run, capsys: Capture) -> None:
    r = Reporter(run, live=True)
    r(Started(0, 10, 8, 16, 100, False))
    assert r.progress is not None
    r(_step(1))
    r.note("shown above the bar")
    r(Finished(1, "max_steps"))
    assert r.progress is None
    assert "note: shown above the bar" in capsys.readouterr().err


def test_a_resumed_run_starts_from_its_best_so_far(trained: tuple[Run, TrainerState]) -> None:
    run = copy.copy(trained[0])
    run.state = trained[1]  # as open_run makes a resumed run
    run.last_metrics = {"best_val_bits_per_char": 2.5}
    r = Reporter(run, live=False)
    assert r.val_text() == "val - (best 2.500)"
    r(_eval(9, 3.0, best=False))
    assert r.val_text() == "val 3.000 bpc (best 2.500)"


def test_the_run_folder_path_is_kept_as_is(run: Run, tmp_path: Path, capsys: Capture) -> None:
    run.run_dir = tmp_path / "a [b] c"  # markup-like text is printed literally
    header(run, "cpu, fp32")
    assert f"run folder: {tmp_path / 'a [b] c'}" in capsys.readouterr().err


def test_a_resumed_sessions_percentage_is_of_its_own_budget(run: Run) -> None:
    """Issue seen: ``38.8s/2m00s 49%`` (the schedule's progress) where the budget was 32% spent."""
    r = Reporter(_with_limits(run, max_steps=None, max_time=120.0, max_epochs=None), live=False)
    fields = dict(
        (text.split()[0], text) for text, _ in r.fields(_step(3, elapsed=38.8, progress=0.49))
    )
    assert fields["32%"] == "32%"
    assert r.limit(_step(3, elapsed=38.8, progress=0.49))[1] == "38.8s/2m00s"


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 50])
def test_the_live_line_fits_a_narrow_terminal(
    tmp_path: Path, small_text: str, columns: int
) -> None:
    """On a real terminal of 80 (or 50) columns, every frame of the live line fits, keeps its
    limit, percentage and eta, and no field is cut mid-word."""
    import os
    import pty
    import re
    import subprocess

    from .conftest import CHARRNN

    (tmp_path / "c.txt").write_text(small_text[:20000], encoding="utf-8")
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns)}
    env.pop("NO_COLOR", None)
    args = ["train", "c.txt", "--hidden", "32", "--layers", "1", "--max-time", "4s"]
    p = subprocess.Popen(
        [*CHARRNN, *args, "--out", "run", "--sample-every", "0", "--threads", "1"],
        cwd=tmp_path, stdin=follower, stdout=follower, stderr=follower, env=env,
    )  # fmt: skip
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert p.wait(120) == 0, out.decode(errors="replace")[-2000:]
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.decode("utf-8", "replace"))  # colours
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", text)  # cursor moves: frames apart
    frames = [f.strip() for f in re.split(r"[\r\n]", text) if re.search(r"\d+% +eta ", f)]
    assert frames, text[-2000:]
    for frame in frames:
        assert len(frame) <= columns, frame
        assert re.match(r"^\d+(\.\d)?s/4\.0s .*\b\d+%  eta \S+", frame), frame
        assert "…" not in frame


def test_the_start_line_and_previews_show_no_control_character_raw(
    tmp_path: Path, small_text: str
) -> None:
    """A corpus named and filled with ESC, U+0085, U+000E and U+202E, trained with previews:
    the run folder's name, the notes and the sample previews come out escaped."""
    from typer.testing import CliRunner

    from charrnn.cli import app
    from charrnn.sample.generate import generate
    from charrnn.sample.policy import SampleConfig

    from .conftest import HOSTILE, raw_controls

    corpus = tmp_path / f"evil{HOSTILE}.txt"
    corpus.write_text((small_text[:300] + HOSTILE * 20 + "\n") * 20, encoding="utf-8")
    out = tmp_path / f"run{HOSTILE}"
    args = ["train", str(corpus), "-o", str(out), "--max-steps", "4", "--eval-every", "2"]
    args += ["--hidden", "16", "--layers", "1", "--embed-dim", "8", "-b", "4", "--sample-every"]
    r = CliRunner().invoke(app, [*args, "1", "--val", str(corpus)])
    assert r.exit_code == 0, r.output
    assert raw_controls(r.stderr) == []
    assert "run folder: " + str(tmp_path) + "/run\\x1b[31m\\x85\\x0e\\u202e" in r.stderr
    assert "sample at step 2:" in r.stderr and "\\x1b" in r.stderr.split("sample at step 2:")[1]
    # What the previews escaped was there: the model writes these characters raw.
    loaded = ck.load_model(out)
    text = "".join(generate(loaded.model, loaded.vocab, "", SampleConfig(length=240, seed=1)))
    assert raw_controls(text) != []
