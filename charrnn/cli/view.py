"""The live view of ``charrnn train`` on stderr.

On a terminal: a rich progress bar towards whichever limit comes first (steps, epochs or time)
with its ETA, the running train loss, the last validation bits/char and whether it is the best so
far, the learning rate and chars/s; each evaluation is logged above the bar, with a short sample
every ``sample_every`` evaluations. When stderr is not a terminal the same facts come as plain
lines: one per evaluation and a progress line every :data:`PLAIN_EVERY` seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.progress import BarColumn, Progress, TextColumn

from ..errors import terminal_text
from ..run.session import Run
from ..store import checkpoint as ck
from ..store.catalog import origin_path
from ..training.config import TrainerState
from ..training.events import Evaluated, Event, Finished, Skipped, Started, Stepped
from ..units import best_bits_per_char, bits
from .common import err, format_duration, say
from .streams import shell_quote

if TYPE_CHECKING:
    import torch

    from ..run.plan import Plan
    from ..training.distributed import Dist

BAR_WIDTH = 16  # columns of the live progress bar
BAR_MIN_WIDTH = 60  # narrower terminals get no bar: the facts matter more
PLAIN_EVERY = 30.0  # seconds between progress lines when stderr is not a terminal
PREVIEW_CHARS = 240  # characters per sample preview
PREVIEW_LINES = 6  # at most this many lines of it are shown
PREVIEW_WIDTH = 100  # and each is cut to this many characters


def _k(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def where(dev: torch.device, d: Dist, plan: Plan) -> str:
    """The device part of the start line, e.g. ``cpu, 2 threads (the faster of 1 and 2 here),
    bf16 autocast (1.5x the speed of fp32 here)``."""
    where = f"{d.world_size} processes, {dev.type}" if d.enabled else str(dev)
    if plan.threads is not None:
        n, most = plan.threads, max(plan.thread_candidates)
        where += f", {n} thread{'s' if n > 1 else ''} (the faster of 1 and {most} here)"
    precision = plan.training.precision
    where += ", fp32" if precision == "fp32" else f", {precision} autocast"
    if plan.bf16_speedup is not None:
        where += f" (bf16 at {plan.bf16_speedup:.2f}x the speed of fp32 here)"
    return where


def fit(fields: Sequence[tuple[str, int]], width: int, sep: str = "  ") -> str:
    """The non-empty texts of ``fields`` (text, priority) joined in their order, dropping the
    least important (highest priority number; the later one on a tie) until the line fits in
    ``width`` terminal cells. A field is dropped whole, never cut."""
    keep = [i for i, (text, _) in enumerate(fields) if text]

    def line() -> str:
        return sep.join(fields[i][0] for i in keep)

    while keep and cell_len(line()) > width:
        keep.remove(max(keep, key=lambda i: (fields[i][1], i)))
    return line()


def header(r: Run, device: str) -> None:
    """The lines before training: what trains on what, until when, and where it is saved."""
    mc = r.model.config
    tc = r.train_config
    limits = []
    if tc.max_time:
        limits.append(f"time {format_duration(tc.max_time)}")
    if tc.max_steps:
        limits.append(f"{tc.max_steps} step{'s' if tc.max_steps != 1 else ''}")
    if tc.max_epochs:
        limits.append(f"{tc.max_epochs:g} epochs")
    verb = "resuming" if r.resumed else "training"
    err.print(
        f"{verb} {mc.cell.upper()} {mc.layers}x{mc.hidden} ({r.model.num_parameters():,} "
        f"parameters) on {r.corpus.train_text_chars:,} characters, vocabulary "
        f"{len(r.vocab)}; batch {tc.batch_size}x{tc.seq_len}, lr {tc.lr:g}, "
        f"device {device}; stops at {' or '.join(limits)}",
        markup=False,
    )
    # Folder names and notices come from the data (file names, characters of the corpus).
    say(f"run folder: {r.run_dir}")
    if r.init_from and not r.resumed:
        origin = origin_path(r.init_from)
        say(f"starts from: {origin} (step {r.init_from['step']})")
    for n in r.notices:
        say(f"note: {n}")


class Reporter:
    """Renders training events on stderr: a live bar on a terminal, log lines otherwise."""

    def __init__(self, run: Run, live: bool, sample_every: int = 0) -> None:
        self.run = run
        self.live = live
        self.sample_every = sample_every
        self.progress: Progress | None = None
        self.task: Any = None
        self.last_bits: float | None = None
        self.last_is_best = False
        self.best_bits = best_bits_per_char(run.last_metrics) if run.resumed else None
        self.chars_per_token = run.corpus.train_chars_per_token  # 1 for characters
        self.evaluations = 0
        self.last_line = time.perf_counter()
        self.first: tuple[float, float] | None = None  # (session seconds, progress) at step 1
        self.last_step: Stepped | None = None
        self.t0 = time.perf_counter()

    # -- what to show ----------------------------------------------------------------------

    def limit(self, event: Stepped) -> tuple[float, str]:
        """Where the run stands against the limit it will hit first: the fraction of it done
        and its text, e.g. ``(0.24, "step 120/500")``. A time budget is this session's (a
        resume gets a new one); steps and epochs count over the whole run. Without a limit:
        the schedule's progress (NaN when unknown)."""
        tc = self.run.train_config
        options: list[tuple[float, str]] = []
        if tc.max_steps:
            options.append((event.step / tc.max_steps, f"step {event.step}/{tc.max_steps}"))
        if tc.max_epochs:
            options.append(
                (event.epoch / tc.max_epochs, f"epoch {event.epoch:.2f}/{tc.max_epochs:g}")
            )
        if tc.max_time:
            text = f"{format_duration(event.elapsed)}/{format_duration(tc.max_time)}"
            options.append((event.elapsed / tc.max_time, text))
        if not options:
            return event.progress, f"step {event.step}"
        fraction, text = max(options)
        return min(fraction, 1.0), text

    def eta(self, event: Stepped) -> float | None:
        """Seconds left, from how fast progress has moved in this session (exact for time)."""
        if math.isnan(event.progress):
            return None
        if self.first is None:
            self.first = (event.elapsed, event.progress)
            return None
        t1, p1 = self.first
        if event.progress <= p1 or event.elapsed <= t1:
            return None
        rate = (event.progress - p1) / (event.elapsed - t1)
        return max(0.0, (1.0 - event.progress) / rate)

    def val_text(self) -> str:
        if self.last_bits is None:
            return "val -" if self.best_bits is None else f"val - (best {self.best_bits:.3f})"
        if self.last_is_best or self.best_bits is None:
            return f"val {self.last_bits:.3f} bpc (best)"
        return f"val {self.last_bits:.3f} bpc (best {self.best_bits:.3f})"

    def fields(
        self, event: Stepped, fraction: float | None = None, eta: float | None = None
    ) -> list[tuple[str, int]]:
        """The facts after the limit, each with its priority (0 first kept) for narrow
        terminals: percent, eta, loss, validation, learning rate, speed. ``fraction`` and
        ``eta``: this step's, when the caller has them (else computed here)."""
        if fraction is None:
            fraction, eta = self.limit(event)[0], self.eta(event)
        return [
            ("" if math.isnan(fraction) else f"{fraction * 100:.0f}%", 0),
            (f"eta {'-' if eta is None else format_duration(eta)}", 1),
            (f"loss {event.loss_per_char:.3f} = {bits(event.loss_per_char):.3f} bpc", 2),
            (self.val_text(), 3),
            (f"lr {event.lr:.2e}", 5),
            (f"{_k(event.tokens_per_sec * self.chars_per_token)} chars/s", 4),
        ]

    # -- events ----------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started) and self.live:
            bar = [BarColumn(bar_width=BAR_WIDTH)] if err.width >= BAR_MIN_WIDTH else []
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                *bar,
                TextColumn("{task.fields[line]}"),
                console=err,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=1000, line="")
        elif isinstance(event, Stepped):
            self.on_step(event)
        elif isinstance(event, Evaluated):
            self.on_eval(event)
        elif isinstance(event, Skipped):
            self._log(f"step {event.step}: skipped, {event.reason}")
        elif isinstance(event, Finished) and self.progress is not None:
            self.progress.stop()
            self.progress = None

    def on_step(self, event: Stepped) -> None:
        self.last_step = event
        fraction, limit = self.limit(event)
        eta = self.eta(event)  # every step: its pace counts from the session's first step
        if self.progress is not None:
            bar = BAR_WIDTH + 1 if err.width >= BAR_MIN_WIDTH else 0
            room = err.width - cell_len(limit) - bar - 2  # a space between columns, one spare
            self.progress.update(
                self.task,
                completed=0 if math.isnan(fraction) else fraction * 1000,
                description=limit,
                line=fit(self.fields(event, fraction, eta), room),
            )
            return
        now = time.perf_counter()
        if now - self.last_line >= PLAIN_EVERY:
            self.last_line = now
            self._log(f"{limit}  {fit(self.fields(event, fraction, eta), 10**6)}")

    def on_eval(self, event: Evaluated) -> None:
        self.evaluations += 1
        self.last_bits = event.val.bits_per_char
        self.last_is_best = event.is_best
        if event.is_best:
            self.best_bits = event.val.bits_per_char
        tl = event.train_loss_per_char
        train = f"{tl:.4f}" if tl is not None else "-"
        mark = "  (best)" if event.is_best else ""
        if event.averaged:
            mark = f"  (the weights' average{', best' if event.is_best else ''})"
        lr = f"  lr {self.last_step.lr:.2e}" if self.last_step is not None else ""
        line = (
            f"step {event.step:>6}  epoch {event.epoch:6.2f}  train {train} nats  "
            f"val {event.val.nats_per_char:.4f} nats = {event.val.bits_per_char:.4f} bits/char"
            f"{lr}{mark}"
        )
        self._log(line)
        self.last_line = time.perf_counter()
        if self.sample_every and self.evaluations % self.sample_every == 0:
            self._preview(event.step)

    def _preview(self, step: int) -> None:
        """A short sample from the model as it is now (its own seeded generator: the training
        RNG is not touched, so previews never change what is trained), with what could drive
        the terminal (an escape sequence, a carriage return, U+202E: the corpus may hold any)
        escaped (:func:`terminal_text`)."""
        from ..sample.generate import generate
        from ..sample.policy import SampleConfig

        cfg = SampleConfig(length=PREVIEW_CHARS, temperature=0.8, seed=self.run.train_config.seed)
        text = "".join(generate(self.run.model, self.run.vocab, "", cfg))
        lines = [
            "  | " + line[:PREVIEW_WIDTH] for line in text.rstrip().split("\n")[:PREVIEW_LINES]
        ]
        self._log("\n".join([f"sample at step {step}:", *lines]))

    def note(self, text: str) -> None:
        """A notice during training, e.g. from :class:`charrnn.run.loadwatch.LoadWatch`."""
        self._log(f"note: {text}")

    def _log(self, line: str) -> None:
        """A line (or lines) above the live bar, escaped as :func:`.common.say` escapes."""
        if self.progress is not None:
            self.progress.console.print(terminal_text(line, keep="\n\t"), markup=False)
        else:
            say(line, keep="\n\t")

    def summary(self, state: TrainerState, reason: str | None) -> None:
        """The lines after training: why it stopped, the losses per character, where things are."""
        r = self.run
        m = r.metrics(state)
        why = (reason or "stopped").replace("_", " ")
        if reason == "patience":
            why = f"patience: no better validation in {r.train_config.patience} evaluations"
        lines = [
            f"done ({why}): {state.step} step{'' if state.step == 1 else 's'}, "
            f"{m['characters_seen']:,} characters seen, "
            f"{format_duration(time.perf_counter() - self.t0)}",
        ]
        tl = m.get("train_nats_per_char")
        if tl is not None:
            lines.append(f"train loss {tl:.4f} nats/char = {bits(tl):.4f} bits/char")
        bv = m.get("best_val_nats_per_char")
        if bv is not None:
            lines.append(
                f"best val loss {bv:.4f} nats/char = {bits(bv):.4f} "
                f"bits/char, perplexity {m['best_val_perplexity']:.3f} (step {state.best_step})"
            )
        best = ck.read_pointer(r.run_dir, ck.BEST)  # the pointer is the one source of truth
        lines.append(f"checkpoints: {r.run_dir} (best: {best or '-'})")
        lines.append(f"metrics: {r.metrics_log.path}")
        lines.append(f"sample with: charrnn sample -c {shell_quote(str(r.run_dir))}")
        for line in lines:
            say(line)  # the run folder's name: data
