"""The sampling rules, in one place, for both engines: what a :class:`SampleConfig` may hold,
which engine honours which of its knobs, how logits become the next token, where a stop string
ends a sample. NumPy and the standard library only (no torch): the NumPy engine imports it.
NumPy itself is imported by the functions that compute (an import of a loaded module costs some
60 ns): the command line reads :data:`DEFAULT_LENGTH` and :data:`DEFAULT_TEMPERATURE` for its
help at start-up, which stays free of NumPy.

Temperature, two thresholds with two meanings, the same for both engines (both draw through
:class:`Picker`):

* ``T < GREEDY_BELOW`` (1e-30) is greedy decoding, exactly: :class:`SampleConfig` stores 0,
  and the picker takes the argmax and draws no random number.
* ``T >= FOLD_MIN_TEMPERATURE`` (1e-4) is served by the short path: ``1 / T`` is folded into the
  output layer (:attr:`Picker.head_scale`), the stepper returns ``logits / T`` with ``<UNK>`` at
  -inf, and the picker exponentiates them. Between the two, ``1 / T`` could overflow float32
  folded weights, so the logits come raw and :func:`token_probs` computes the max-subtracted
  distribution (all but greedy, yet a draw: ties and near-ties are still drawn among).

Every field of :class:`SampleConfig` is declared in :data:`KNOBS`: the engines that honour it,
whether the short path serves it, and the value that means "off". :func:`check_engine` is the
one check (``tests/test_sample_policy.py`` fails for a field without a declaration).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from ..protocols import DEFAULT_LENGTH, DEFAULT_TEMPERATURE
from ..text.vocab import UNK_ID

if TYPE_CHECKING:
    import numpy as np

Engine = Literal["numpy", "torch"]
ENGINES: tuple[Engine, ...] = ("numpy", "torch")

# DEFAULT_LENGTH (steps: characters, or subword pieces) and DEFAULT_TEMPERATURE live in the
# leaf charrnn.protocols, so that ``import charrnn`` (the Python API's signatures) reads them
# without loading this package.
GREEDY_BELOW = 1e-30  # temperatures below this are greedy decoding (module docstring)
FOLD_MIN_TEMPERATURE = 1e-4  # the smallest temperature folded into the output layer


@dataclass(frozen=True, kw_only=True)
class SampleConfig:
    """What to sample: ``length`` steps (>= 0) at ``temperature`` (finite, >= 0; below
    :data:`GREEDY_BELOW` stored as 0, greedy), from the ``top_k`` (>= 1) likeliest tokens and/or
    the smallest set whose probability reaches ``top_p`` (in (0, 1]), drawn with a NumPy
    generator seeded from ``seed`` (None: fresh entropy). Raises ValueError for a value out of
    range."""

    length: int = DEFAULT_LENGTH
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.length < 0:
            raise ValueError("length must be >= 0")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError("temperature must be a finite number >= 0")
        if self.temperature < GREEDY_BELOW:
            # logits / T would overflow float32 (or T underflow to 0): as T -> 0 sampling
            # becomes greedy, so it is greedy, exactly, for every engine and stream count.
            object.__setattr__(self, "temperature", 0.0)
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:  # also refuses NaN
            raise ValueError("top_p must be in (0, 1]")


@dataclass(frozen=True)
class Knob:
    """How one :class:`SampleConfig` field is honoured: by which ``engines``, whether the
    picker's short path serves it (``short_path``; if not, a value that is not ``off`` sends the
    picker to :func:`token_probs`), and ``off``, true for the values that change nothing (None:
    every value counts)."""

    engines: frozenset[Engine]
    short_path: bool
    off: Callable[[Any], bool] | None = None

    def is_set(self, value: Any) -> bool:
        """Whether ``value`` asks something of the engine (is not off)."""
        return self.off is None or not self.off(value)


_BOTH = frozenset(ENGINES)
KNOBS: Mapping[str, Knob] = {
    "length": Knob(_BOTH, short_path=True),  # the engines' loops
    "temperature": Knob(_BOTH, short_path=True),  # folded, from FOLD_MIN_TEMPERATURE up
    "top_k": Knob(_BOTH, short_path=False, off=lambda k: k is None),
    "top_p": Knob(_BOTH, short_path=False, off=lambda p: p is None or p >= 1.0),
    "seed": Knob(_BOTH, short_path=True),  # the generator of both engines
}


def knobs(cfg: SampleConfig) -> dict[str, tuple[Knob, Any]]:
    """Every field of ``cfg`` with its declaration and value. Raises LookupError for a field
    that :data:`KNOBS` does not declare (a new field must say which engines honour it)."""
    out = {}
    for f in fields(cfg):
        if f.name not in KNOBS:
            raise LookupError(
                f"SampleConfig.{f.name} is not declared in charrnn.sample.policy.KNOBS"
            )
        out[f.name] = (KNOBS[f.name], getattr(cfg, f.name))
    return out


def check_engine(cfg: SampleConfig, engine: str) -> SampleConfig:
    """``cfg``, once it is known that ``engine`` ("numpy" or "torch") honours every knob it sets.
    Raises ValueError for an unknown engine or a knob set for an engine that does not honour it,
    LookupError for a field without a declaration (:func:`knobs`)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
    for name, (knob, value) in knobs(cfg).items():
        if engine not in knob.engines and knob.is_set(value):
            raise ValueError(f"the {engine} engine does not support {name}")
    return cfg


def uses_short_path(cfg: SampleConfig) -> bool:
    """Whether the picker's short path serves ``cfg``: a temperature of 0 or of at least
    :data:`FOLD_MIN_TEMPERATURE`, and every knob that the short path does not serve off. (Greedy
    decoding takes the argmax of the logits with <UNK> masked either way.)"""
    if 0 < cfg.temperature < FOLD_MIN_TEMPERATURE:
        return False
    return all(knob.short_path or not knob.is_set(v) for knob, v in knobs(cfg).values())


def token_probs(
    logits: np.ndarray,
    temperature: float,
    top_k: int | None = None,
    top_p: float | None = None,
) -> np.ndarray:
    """Sampling distribution (B, V) float32 from logits (B, V): temperature (> 0), top-k, top-p,
    ``<UNK>`` never drawn; never NaN for any temperature > 0. The full form of the rules, which
    the picker's short path gives too (for the configurations it serves)."""
    import numpy as np

    z = np.array(logits, dtype=np.float32)  # a copy
    z[:, UNK_ID] = -np.inf
    z = (z - z.max(axis=-1, keepdims=True)) / np.float32(temperature)  # max entry is exactly 0
    V = z.shape[-1]
    if top_k is not None and top_k < V:
        kth = np.partition(z, V - top_k, axis=-1)[:, V - top_k : V - top_k + 1]  # (B, 1)
        z[z < kth] = -np.inf
    e = np.exp(z)
    probs = e / e.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p  # mass of the more likely ones
        drop = before >= np.float32(top_p)
        drop[:, 0] = False  # the likeliest always stays (a tiny p may round to 0 in float32)
        sorted_p[drop] = 0.0
        probs = np.zeros_like(probs)
        np.put_along_axis(probs, order, sorted_p, axis=-1)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


_EXP_CLIP = 80.0  # the short path exponentiates min(z, 80)
_TOTAL_MAX = math.exp(79.0)  # below float32(e^80): one clipped entry is enough to exceed it
_TOTAL_MIN = 1e-30


UNIFORM_BLOCK = 1024  # uniform numbers a picker draws at a time (one stream: ~32 KB of floats)


def _uniforms(rng: np.random.Generator, block: int = UNIFORM_BLOCK) -> Iterator[float]:
    """``rng.random()`` over and over, drawn in blocks: the same numbers (a NumPy generator's
    doubles do not depend on how many are drawn at a time), less overhead."""
    while True:
        yield from rng.random(block).tolist()


class Picker:
    """Draws the next tokens (B,) from logits (B, V) held in a NumPy array, for both engines:
    the distribution of :func:`token_probs`, drawn by inverse CDF with one uniform number per
    stream from ``rng`` (none when greedy).

    ``uniform_block`` is how many uniform numbers :meth:`pick1` draws from ``rng`` at a time
    (the same numbers whatever it is; a server holding hundreds of pickers keeps it small).

    The stepper folds part of the work into its output layer: build it with
    ``head_scale=picker.head_scale`` and ``mask=picker.mask`` (:meth:`fold` does the same to
    raw logits).
    """

    def __init__(
        self,
        cfg: SampleConfig,
        batch: int,
        vocab_size: int,
        rng: np.random.Generator,
        uniform_block: int = UNIFORM_BLOCK,
    ) -> None:
        import numpy as np

        self.cfg = cfg
        self.rng = rng
        self.batch = batch
        self.greedy = cfg.temperature == 0
        self.simple = uses_short_path(cfg)
        # Plain temperature sampling: logits / T with <UNK> at -inf come out of the stepper.
        folded = self.simple and not self.greedy
        self.head_scale = 1.0 / cfg.temperature if folded else 1.0
        self.mask: int | None = UNK_ID if self.simple or self.greedy else None
        self.z = np.empty((batch, vocab_size), np.float32)
        self.cdf = np.empty((batch, vocab_size), np.float32)
        self.m = np.empty((batch, 1), np.float32)
        self.clip = np.full(vocab_size, _EXP_CLIP, np.float32)  # cheaper than a scalar operand
        self.uniforms = _uniforms(rng, uniform_block)

    def fold(self, logits: np.ndarray) -> np.ndarray:
        """Raw logits (B, V) as the stepper built for this picker returns them (a new array)."""
        import numpy as np

        out = (logits * np.float32(self.head_scale)).astype(np.float32)
        if self.mask is not None:
            out[:, self.mask] = -np.inf
        return out

    def weights_cdf(self, z: np.ndarray) -> np.ndarray:
        """Cumulative (unnormalised) sampling weights (B, V) from folded logits ``z`` (B, V), in a
        buffer that the next call overwrites."""
        import numpy as np

        if not self.simple:
            cfg = self.cfg
            probs = token_probs(z, cfg.temperature, cfg.top_k, cfg.top_p)
            return np.add.accumulate(probs, axis=1, out=self.cdf)
        e, cdf = self.z, self.cdf
        # exp(min(z, 80)): no overflow; a total that reaches e^80 (or underflows) means some
        # row needs the max-subtracted form that token_probs uses.
        np.minimum(z, self.clip, out=e)
        np.exp(e, out=e)
        np.add.accumulate(e, axis=1, out=cdf)
        total = cdf[:, -1]
        if not (float(total.max()) < _TOTAL_MAX and float(total.min()) > _TOTAL_MIN):
            self._stable(z, cdf)
        return cdf

    def _stable(self, z: np.ndarray, cdf: np.ndarray) -> None:
        import numpy as np

        e = self.z
        np.max(z, axis=1, keepdims=True, out=self.m)
        np.subtract(z, self.m, out=e)  # each row's maximum is exactly 0
        np.exp(e, out=e)
        np.add.accumulate(e, axis=1, out=cdf)

    def pick1(self, z: np.ndarray) -> int:
        """The next token for one stream from its folded logits ``z`` (V,); draws as
        :meth:`__call__` does for a batch of one."""
        import numpy as np

        if self.greedy:
            return int(z.argmax())
        if not self.simple:
            return int(self(z[None, :])[0])
        e, cdf = self.z[0], self.cdf[0]
        np.minimum(z, self.clip, out=e)
        np.exp(e, out=e)
        np.add.accumulate(e, out=cdf)
        total = float(cdf[-1])
        if not _TOTAL_MIN < total < _TOTAL_MAX:
            self._stable(z[None, :], self.cdf[:1])
            total = float(cdf[-1])
        return int(cdf.searchsorted(next(self.uniforms) * total, side="right"))

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Token ids (B,) for folded logits ``z`` (B, V)."""
        import numpy as np

        if self.greedy:
            return np.argmax(z, axis=1)
        cdf = self.weights_cdf(z)
        u = self.rng.random(z.shape[0]) * cdf[:, -1]  # (B,), each below its row's total
        return np.count_nonzero(cdf <= u[:, None], axis=1)


def pick_rows(pickers: Sequence[Picker], logits: np.ndarray) -> list[int]:
    """The next token of each of B streams that each draw with their own picker: row i of the
    raw logits ``logits`` (B, V) (a stepper built with ``head_scale`` 1 and no mask) with
    ``pickers[i]``. Token i is exactly ``pickers[i].pick1(pickers[i].fold(logits[i:i+1])[0])``,
    and each picker's generator advances as it would there; the rows of the short path's
    temperature sampling and of greedy decoding are drawn together, in a few array operations
    (the batched server's step, :mod:`charrnn.serve.batcher`); other rows one by one.

    Why the same: every operation of :meth:`Picker.pick1` is elementwise (the scale, the clip,
    exp) or runs along one row (the running sum, the argmax), and ``searchsorted`` over a
    non-decreasing row counts the entries at or below the value, compared in float64 both ways
    (``tests/test_sample_policy.py`` draws both ways and compares)."""
    import numpy as np

    out = [0] * len(pickers)
    fast, greedy = [], []
    for i, p in enumerate(pickers):
        if p.greedy:
            greedy.append(i)
        elif p.simple:
            fast.append(i)
        else:
            out[i] = p.pick1(p.fold(logits[i : i + 1])[0])
    if greedy:
        z = logits[greedy]  # a copy; the head scale of a greedy picker is 1
        z[:, UNK_ID] = -np.inf
        for i, tok in zip(greedy, np.argmax(z, axis=1).tolist(), strict=True):
            out[i] = tok
    if fast:
        scale = np.array([pickers[i].head_scale for i in fast], np.float32)[:, None]
        z = logits[fast] * scale  # (F, V) float32: each row as pick1 gets it from the stepper
        z[:, UNK_ID] = -np.inf
        e = np.minimum(z, np.float32(_EXP_CLIP))
        np.exp(e, out=e)
        cdf = np.add.accumulate(e, axis=1)
        total = cdf[:, -1].astype(np.float64)
        bad = ~((total > _TOTAL_MIN) & (total < _TOTAL_MAX))
        if bad.any():  # the max-subtracted form, as Picker._stable computes it
            zb = z[bad]
            eb = np.subtract(zb, zb.max(axis=1, keepdims=True))
            np.exp(eb, out=eb)
            cdf[bad] = np.add.accumulate(eb, axis=1)
            total = cdf[:, -1].astype(np.float64)
        u = np.array([next(pickers[i].uniforms) for i in fast]) * total  # float64, as pick1's
        toks = np.count_nonzero(cdf <= u[:, None], axis=1)
        for i, tok in zip(fast, toks.tolist(), strict=True):
            out[i] = tok
    return out


def cut_at_stop(text: str, stop: str | None) -> str:
    """Generated ``text`` up to where ``stop`` first appears (the stop string not included).
    Stop strings at the very start are dropped, not matched: a sample never comes out empty (or
    starting with its separator) because the model began with the stop string."""
    if not stop:
        return text
    while text.startswith(stop):
        text = text[len(stop) :]
    cut = text.find(stop)
    return text if cut < 0 else text[:cut]


def stop_at(pieces: Iterator[str], stop: str) -> Iterator[str]:
    """Stream ``pieces`` with the rule of :func:`cut_at_stop`: the joined output is
    ``cut_at_stop("".join(pieces), stop)``, yielded as soon as it can no longer be a stop."""
    if not stop:
        yield from pieces
        return
    pending, started = "", False
    for piece in pieces:
        pending += piece
        if not started:
            while pending.startswith(stop):
                pending = pending[len(stop) :]
            if stop.startswith(pending):  # empty, or maybe the start of a leading stop
                continue
            started = True
        cut = pending.find(stop)
        if cut >= 0:
            if cut:
                yield pending[:cut]
            return
        keep = len(stop) - 1
        if len(pending) > keep:
            yield pending[: len(pending) - keep]
            pending = pending[len(pending) - keep :]
    if pending:
        yield pending
