"""Units of measure for language-model loss, in one place. Standard library only.

A model predicts *tokens* (characters, or subword pieces with ``--tokenizer bpe|unigram``); a user
compares models by *characters*. Every figure charrnn prints or stores is derived here from three
counts, so per-token and per-character figures can never be mixed up:

    tokens   next-token predictions scored
    chars    characters of text those predictions cover (= tokens for the character tokenizer)
    nats     their summed cross-entropy, natural log

    nats/token = nats / tokens          nats/char = nats / chars
    bits/char  = nats/char / ln 2       perplexity (per char) = exp(nats/char)

Per-character figures are what charrnn reports as "bits per character" and "perplexity"; the
per-token ones carry ``_per_token`` in their names. (Bits per character as in Graves 2013,
"Generating Sequences With Recurrent Neural Networks", section 3; perplexity = 2^bpc.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

LN2 = math.log(2.0)
_EXP_MAX = 700.0  # exp() of more overflows a float; such a perplexity is shown as e^700


def bits(nats: float) -> float:
    """Nats to bits."""
    return nats / LN2


def nats_per_char(nats_per_token: float, chars_per_token: float) -> float:
    """A loss per token as a loss per character, given the text's characters per token."""
    return nats_per_token / chars_per_token


def perplexity_of(nats: float) -> float:
    """exp(nats), capped at e^700 instead of overflowing."""
    return math.exp(min(nats, _EXP_MAX))


@dataclass(frozen=True)
class Score:
    """How well a model predicted a stretch of text (see the module docstring for the units).

    ``chars`` may be fractional when it is an estimate (a running training loss converted with
    the corpus's characters per token).
    """

    tokens: int
    chars: float
    nats: float  # summed over the ``tokens`` predictions

    @classmethod
    def from_mean(cls, nats_per_token: float, tokens: int, chars: float) -> Score:
        """A score from a mean loss per token over ``tokens`` tokens covering ``chars`` chars."""
        return cls(tokens, chars, nats_per_token * tokens)

    @property
    def nats_per_token(self) -> float:
        return self.nats / self.tokens if self.tokens else float("nan")

    @property
    def bits_per_token(self) -> float:
        return bits(self.nats_per_token)

    @property
    def perplexity_per_token(self) -> float:
        return perplexity_of(self.nats_per_token)

    @property
    def nats_per_char(self) -> float:
        return self.nats / self.chars if self.chars else float("nan")

    @property
    def bits_per_char(self) -> float:
        return bits(self.nats_per_char)

    @property
    def perplexity(self) -> float:
        """Perplexity per character."""
        return perplexity_of(self.nats_per_char)

    @property
    def chars_per_token(self) -> float:
        return self.chars / self.tokens if self.tokens else 1.0

    def per_char(self, nats_per_token: float) -> float:
        """Another loss per token over the same kind of text (e.g. the best so far), per char."""
        return nats_per_char(nats_per_token, self.chars_per_token)

    def to_dict(self, prefix: str = "") -> dict[str, Any]:
        """Every figure, for JSON: ``{prefix}nats_per_char``, ... ``{prefix}tokens``."""
        return {
            f"{prefix}nats_per_char": self.nats_per_char,
            f"{prefix}bits_per_char": self.bits_per_char,
            f"{prefix}perplexity": self.perplexity,
            f"{prefix}nats_per_token": self.nats_per_token,
            f"{prefix}bits_per_token": self.bits_per_token,
            f"{prefix}tokens": self.tokens,
            f"{prefix}chars": self.chars,
        }


def best_bits_per_char(metrics: dict[str, Any]) -> float | None:
    """Best validation bits/char from the ``metrics`` section of a checkpoint's config.json
    (``best_val_bits_per_char``; None before the run's first finite validation)."""
    stored = metrics.get("best_val_bits_per_char")
    return float(stored) if isinstance(stored, int | float) else None
