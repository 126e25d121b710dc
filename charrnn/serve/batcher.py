"""The batched generation loop: every active stream of one model advanced by one step together.

A :class:`Batcher` owns a worker thread and the model's streams. The streams sit in rows of
fixed-width blocks, each block a :class:`~charrnn.sample.numpy_engine.FastRNN` of
:data:`BLOCK` rows; one step of the loop steps every block that has a live row, then gives
each live row its logits: a row still reading its prompt takes the prompt's next token, a
generating one draws its next token with its own :class:`~charrnn.sample.policy.Picker` and
its own NumPy generator (seeded as ``charrnn sample --seed`` seeds it); the rows of a block
draw together (:func:`~charrnn.sample.policy.pick_rows`: the same tokens, in a few array
operations instead of a dozen NumPy calls per row). A new stream takes a
free row at the next step (its state set to zero, exactly as a new stepper starts); a
finished, timed-out or cancelled one leaves at once.

Why fixed-width blocks: a BLAS gives a row of a matrix product the same rounding whatever the
other rows hold, but a one-row product (a matrix-vector product, another kernel) may round
differently. Every block always has :data:`BLOCK` rows, so a stream's floating-point results
never depend on how many other streams run beside it (``tests/test_serve_batcher.py``). The
blocks share one copy of the weights (:meth:`FastRNN.sharing`): 256 streams cost the state of
256 streams, not sixteen copies of the model, and the products read one copy from cache. The
temperature is applied to the raw logits of each row (``Picker.fold``'s rule, as the torch
engine does), not folded into the weights as ``charrnn sample``'s one-stream stepper does: the
logits agree with it to float32 rounding, so the text is the same (as for the two engines).

The asyncio side never waits on arithmetic: it hands a :class:`Stream` to :meth:`submit` and
reads what the thread appended (:meth:`Stream.take`), woken at most once per read.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..model.arrays import ArrayModel
from ..sample.generate import prime_ids
from ..sample.numpy_engine import FastRNN
from ..sample.policy import Picker, SampleConfig, pick_rows
from ..text.tokenizers import Tokenizer
from .protocol import MAX_QUEUE, MAX_STREAMS, Limits
from .stops import StopCutter

BLOCK = 16  # rows of every block (see the module docstring)
SERVED_UNIFORM_BLOCK = 64  # a stream's uniform numbers drawn at a time (policy: 1024, ~32 KB)

# (piece, its log-probability, the top alternatives {piece: log-probability}) per token
TokenInfo = tuple[str, float | None, dict[str, float]]


class Busy(Exception):
    """Every row is taken and the queue behind them is full."""


class Closed(Exception):
    """The batcher no longer takes streams (the server is stopping)."""


@dataclass(frozen=True)
class StreamSpec:
    """What one stream asks for: its prompt, sampling rules, stop strings, alternatives to
    report per token (None: no log-probabilities), and a time limit in seconds."""

    prompt: str
    config: SampleConfig
    stops: tuple[str, ...] = ()
    logprobs: int | None = None
    time_limit: float = Limits.time_limit


@dataclass(eq=False)
class Stream:
    """One generation stream: appended to by the batcher's thread, read by the event loop.

    ``wake`` is set (through ``loop``) when something arrives after the last :meth:`take`;
    several streams of one request may share it."""

    spec: StreamSpec
    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event
    text: list[str] = field(default_factory=list)
    infos: list[TokenInfo] = field(default_factory=list)
    finish: str | None = None
    tokens: int = 0  # generated tokens (steps that drew one)
    prompt_tokens: int = 0
    cancelled: bool = False
    created: float = field(default_factory=time.monotonic)
    first: float | None = None  # when the first text arrived
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _signalled: bool = False

    def push(self, text: str, infos: list[TokenInfo], finish: str | None = None) -> None:
        """Append generated ``text`` (and its tokens' ``infos``); ``finish`` ends the stream."""
        with self._lock:
            if text:
                self.text.append(text)
                if self.first is None:
                    self.first = time.monotonic()
            self.infos.extend(infos)
            if finish is not None:
                self.finish = finish
            wake, self._signalled = not self._signalled, True
        if wake:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody reads
                self.loop.call_soon_threadsafe(self.wake.set)

    def take(self) -> tuple[str, list[TokenInfo], str | None]:
        """Everything appended since the last call: (text, infos, finish reason or None)."""
        with self._lock:
            text, infos = "".join(self.text), self.infos
            self.text, self.infos, self._signalled = [], [], False
            return text, infos, self.finish

    def cancel(self) -> None:
        """The client went away: the batcher frees the stream's row at its next step."""
        self.cancelled = True


class _Slot:
    """A stream in its row: the prompt still to read, the picker, the stop rule."""

    def __init__(self, stream: Stream, vocab: Tokenizer, vocab_size: int) -> None:
        spec = stream.spec
        self.stream = stream
        rng = np.random.default_rng(spec.config.seed)
        self.context, self.last, head = prime_ids(vocab, spec.prompt, rng)
        stream.prompt_tokens = len(self.context) + (1 if spec.prompt else 0)
        self.pick = Picker(spec.config, 1, vocab_size, rng, SERVED_UNIFORM_BLOCK)
        self.read = 0  # prompt tokens fed so far
        self.left = spec.config.length
        self.deadline = stream.created + spec.time_limit
        self.cut: StopCutter[TokenInfo] = StopCutter(spec.stops)
        self.itos = vocab.itos
        if head and not spec.prompt:  # no prompt: a first character drawn by frequency
            self._emit(head, [(head, None, {})])
        if self.left == 0:
            self.finish("length")

    def first_input(self) -> int:
        return self.context[0] if self.context else self.last

    @property
    def reading(self) -> bool:
        """Whether the row is still reading its prompt (its next input is the prompt's)."""
        return self.read < len(self.context)

    def next_prompt_token(self) -> int:
        """The next input while reading the prompt: the prompt's next token, then its last."""
        self.read += 1
        return self.context[self.read] if self.read < len(self.context) else self.last

    def took(self, tok: int, logits: np.ndarray) -> int:
        """Token ``tok`` drawn from the row's raw ``logits`` (V,): sent on (through the stop
        rule), counted; it is the row's next input."""
        piece = self.itos[tok]
        info = _token_info(logits, tok, piece, self.stream.spec.logprobs, self.itos)
        self.stream.tokens += 1
        self.left -= 1
        text, infos, stopped = self.cut.feed(piece, info)
        if stopped:
            self._emit(text, infos)
            self.finish("stop")
        elif self.left <= 0:
            rest, more, _ = self.cut.flush()
            self._emit(text + rest, infos + more)
            self.finish("length")
        elif text:
            self._emit(text, infos)
        return tok

    def _emit(self, text: str, infos: list[TokenInfo]) -> None:
        if text or infos:
            self.stream.push(text, infos)

    def finish(self, reason: str) -> None:
        self.left = -1
        self.stream.push("", [], reason)

    @property
    def done(self) -> bool:
        return self.left < 0


def _token_info(
    logits: np.ndarray, tok: int, piece: str, top: int | None, itos: list[str]
) -> TokenInfo:
    """The drawn token's log-probability under the model (temperature 1) and the ``top``
    likeliest alternatives; (piece, None, {}) when no log-probabilities were asked for."""
    if top is None:
        return (piece, None, {})
    z = logits.astype(np.float64)
    lp = z - (z.max() + np.log(np.exp(z - z.max()).sum()))
    best: list[int] = np.argsort(-lp, kind="stable")[:top].tolist() if top else []
    return (piece, float(lp[tok]), {itos[i]: float(lp[i]) for i in best})


def reset_row(rnn: FastRNN, row: int) -> None:
    """Row ``row`` of ``rnn`` set to the zero state, with the products a new stepper computes
    for it (for a zero state they are exactly the bias rows: [0, ..., 0, 1] @ W)."""
    for h in rnn.h:
        h[row] = 0.0
    for c in rnn.c:
        c[row] = 0.0
    for prods in rnn.products:
        for w, out in prods:
            out[row] = w[-1]


Observer = Callable[[int, int, int, float], None]  # (active, queued, tokens, step seconds)


class Batcher:
    """The streams of one model and the thread that steps them (module docstring).

    At most ``max_streams`` run at once (in blocks of ``block`` rows); up to ``max_queue``
    more wait (:meth:`submit` raises :class:`Busy` beyond). ``observe`` is called after each
    step with the active and queued counts, the tokens drawn and the step's seconds. The first
    block (the weights laid out for the step) is built here, so a server's idle memory holds
    the model as it serves, and the first request does not wait for the layout."""

    def __init__(
        self,
        model: ArrayModel,
        vocab: Tokenizer,
        max_streams: int = MAX_STREAMS,
        max_queue: int = MAX_QUEUE,
        block: int = BLOCK,
        observe: Observer | None = None,
    ) -> None:
        self.model, self.vocab, self.block = model, vocab, block
        self.vocab_size = model.config.vocab_size
        self.max_streams, self.max_queue = max_streams, max_queue
        self.observe = observe
        self.blocks: list[FastRNN] = []
        self.rows: list[list[_Slot | None]] = []
        self.inputs: list[np.ndarray] = []
        self.queue: deque[Stream] = deque()
        self.active = 0
        self.closed = False
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None
        self._free_row()  # the first block now: the weights in serving form belong to "loaded"

    def submit(self, stream: Stream) -> None:
        """Queue ``stream``; it takes a row at the next step. Raises :class:`Busy` or
        :class:`Closed`."""
        with self.cond:
            if self.closed:
                raise Closed
            if self.active + len(self.queue) >= self.max_streams + self.max_queue:
                raise Busy
            self.queue.append(stream)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="charrnn-batcher")
                self.thread.daemon = True
                self.thread.start()
            self.cond.notify()

    def queued(self) -> int:
        return len(self.queue)

    def close(self, timeout: float = 2.0) -> None:
        """End every stream (finish reason "length") and stop the thread."""
        with self.cond:
            self.closed = True
            self.cond.notify()
        if self.thread is not None:
            self.thread.join(timeout)

    # -- the worker thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.closed and not self.queue and not self.active:
                    self.cond.wait()
                if self.closed:
                    break
                self._admit()
            if self.active:
                self._step()
        self._end_all()

    def _admit(self) -> None:
        """Give queued streams free rows (cancelled ones are dropped). Holds ``cond``."""
        while self.queue and self.active < self.max_streams:
            stream = self.queue.popleft()
            if stream.cancelled:
                continue
            slot = _Slot(stream, self.vocab, self.vocab_size)
            if slot.done:
                continue
            b, r = self._free_row()
            reset_row(self.blocks[b], r)
            self.rows[b][r] = slot
            self.inputs[b][r] = slot.first_input()
            self.active += 1

    def _free_row(self) -> tuple[int, int]:
        for b, rows in enumerate(self.rows):
            for r, slot in enumerate(rows):
                if slot is None:
                    return b, r
        first = self.blocks[0] if self.blocks else None
        self.blocks.append(FastRNN.sharing(first) if first else FastRNN(self.model, self.block))
        self.rows.append([None] * self.block)
        self.inputs.append(np.zeros(self.block, np.int64))
        return len(self.blocks) - 1, 0

    def _step(self) -> None:
        """One step of every block with a live row; each row's next input; leavers leave."""
        t0 = time.perf_counter()
        now = time.monotonic()
        drawn = 0
        for rnn, rows, inputs in zip(self.blocks, self.rows, self.inputs, strict=True):
            if not any(rows):
                continue
            logits = rnn.step(inputs)
            drawing: list[tuple[int, _Slot]] = []  # rows that draw from this step's logits
            for r, slot in enumerate(rows):
                if slot is None:
                    continue
                if slot.stream.cancelled:
                    slot.left = -1
                elif now > slot.deadline:
                    slot.finish("length")
                elif slot.reading:
                    inputs[r] = slot.next_prompt_token()
                else:
                    drawing.append((r, slot))
            if drawing:
                picked = pick_rows([s.pick for _, s in drawing], logits[[r for r, _ in drawing]])
                for (r, slot), tok in zip(drawing, picked, strict=True):
                    inputs[r] = slot.took(tok, logits[r])
                drawn += len(drawing)
            for r, slot in enumerate(rows):
                if slot is not None and slot.done:
                    rows[r] = None
                    inputs[r] = 0
                    self.active -= 1
        if self.observe is not None:
            self.observe(self.active, len(self.queue), drawn, time.perf_counter() - t0)

    def _end_all(self) -> None:
        """The server is stopping: every stream, running or queued, ends now."""
        for rows in self.rows:
            for r, slot in enumerate(rows):
                if slot is not None:
                    if not slot.stream.cancelled:
                        rest, infos, _ = slot.cut.flush()
                        slot.stream.push(rest, infos, "length")
                    rows[r] = None
        with self.cond:
            for stream in self.queue:
                stream.push("", [], "length")
            self.queue.clear()
            self.active = 0
        if self.observe is not None:
            self.observe(0, 0, 0, 0.0)
