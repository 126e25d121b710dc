"""What the user asked of ``charrnn train`` (or ``charrnn.train``): a :class:`TrainRequest`,
which holds the corpus part as a :class:`CorpusSpec` and checks itself when it is made.

None means "choose for me" (a new run: :mod:`charrnn.run.plan` fills it in from the rules of
:mod:`charrnn.run.defaults`) or "keep" (a resumed run keeps what it was started with). Every
check that does not need the corpus, a checkpoint or the device is made here, so the command
line and the Python API refuse the same requests with the same one-line
:class:`~charrnn.errors.OptionError`. Standard library only: ``--help`` reads the choices here
without importing torch.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import CharRNNError, OptionError
from ..model.config import CELLS
from ..text.reading import DECODE_ERRORS, STDIN
from ..text.tokenizers import TOKENIZERS
from ..training.config import PRECISIONS, SCHEDULES
from . import defaults


@dataclass(frozen=True)
class CorpusSpec:
    """Which text to train on and how to read it (the corpus part of ``charrnn train``)."""

    sources: tuple[str, ...] = ()
    val: str | None = None
    val_fraction: float = 0.1
    encoding: str = "utf-8"
    errors: str = "strict"
    min_char_count: int = 1
    tokenizer: str | None = None  # None: "char"
    vocab_size: int | None = None  # subword pieces; None: defaults.subword_vocab_size

    @property
    def kind(self) -> str:
        """The tokenizer: ``char``, ``bpe`` or ``unigram``."""
        return self.tokenizer or defaults.DEFAULT_TOKENIZER

    @property
    def pieces(self) -> int | Callable[[int], int]:
        """The subword vocabulary size asked for, or (none asked) the default's rule, which
        chooses it from the pieces the training text's characters need
        (:func:`charrnn.run.defaults.subword_vocab_size`); ignored by the character tokenizer."""
        return self.vocab_size or defaults.subword_vocab_size

    @property
    def holds_out(self) -> bool:
        """Whether the run validates: a --val file, or a share of the corpus held out."""
        return self.val is not None or self.val_fraction > 0


# What --resume may change; the rest of a run is fixed when it starts.
RESUME_OVERRIDABLE = (
    *("max_epochs", "max_steps", "max_time", "eval_every", "precision", "patience"),
    "epochs_unlimited",  # --max-epochs inf: a resumed run drops its epoch limit
)
RESUME_FIXED = (
    *("cell", "layers", "hidden", "embed_dim", "dropout", "tie_weights", "batch_size"),
    *("seq_len", "lr", "weight_decay", "clip", "warmup", "schedule", "seed", "init_from"),
    "ema_decay",
)
# The options of a fine-tuned run that the model it starts from decides (run/finetune.py).
ARCHITECTURE = ("cell", "layers", "hidden", "embed_dim", "tie_weights")


@dataclass(frozen=True)
class TrainRequest:
    """What the user asked for; None means "choose for me" (or "keep" when resuming).

    Raises OptionError (a usage error: exit 2 on the command line) for a request no run can
    take: an unknown cell, tokenizer, schedule or precision, options that conflict, or one a
    resumed or fine-tuned run cannot change.
    """

    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    cell: str | None = None
    layers: int | None = None
    hidden: int | None = None
    embed_dim: int | None = None
    dropout: float | None = None
    tie_weights: bool | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    clip: float | None = None  # 0: no clipping (inf is stored as 0)
    warmup: int | None = None
    schedule: str | None = None
    max_epochs: float | None = None  # inf is stored as None: no epoch limit
    max_steps: int | None = None
    max_time: float | None = None  # seconds of this invocation
    eval_every: int | None = None
    seed: int | None = None
    precision: str | None = None
    out: str | None = None
    resume: str | None = None
    root: str = defaults.CHECKPOINTS_ROOT
    init_from: str | None = None  # a run or checkpoint folder to start from (finetune.py)
    patience: int | None = None  # stop after this many evaluations without a new best
    ema_decay: float | None = None  # of the weights' average tried at the end; 0: none
    # set from max_epochs=inf: no epoch limit at all, not even the end after the useful passes
    # (defaults.useful_passes) that a run limited by time alone gets
    epochs_unlimited: bool = False

    def __post_init__(self) -> None:
        # Infinity means something for two options, stored as strict JSON: no clipping (0) and
        # no epoch limit (None).
        if self.clip is not None and math.isinf(self.clip) and self.clip > 0:
            object.__setattr__(self, "clip", 0.0)
        if self.max_epochs is not None and math.isinf(self.max_epochs) and self.max_epochs > 0:
            object.__setattr__(self, "max_epochs", None)
            object.__setattr__(self, "epochs_unlimited", True)
        self._check_choices()
        self._check_combinations()

    def _check_choices(self) -> None:
        spec = self.corpus
        for option, value, allowed in (
            ("--cell", self.cell, CELLS),
            ("--tokenizer", spec.tokenizer, TOKENIZERS),
            ("--schedule", self.schedule, SCHEDULES),
            ("--precision", self.precision, PRECISIONS),
            ("--errors", spec.errors, DECODE_ERRORS),
        ):
            if value is not None and value not in allowed:
                raise OptionError(f"{option} {value}: expected one of {', '.join(allowed)}")
        if self.patience is not None and self.patience < 1:
            raise OptionError(f"--patience {self.patience}: expected 1 or more evaluations")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise OptionError(f"--ema-decay {self.ema_decay:g}: expected 0 (none) to below 1")
        if not 0.0 <= spec.val_fraction <= 0.5:
            raise OptionError(f"--val-fraction {spec.val_fraction:g}: expected 0 to 0.5")

    def _check_combinations(self) -> None:
        spec = self.corpus
        subword = spec.tokenizer is not None or spec.vocab_size is not None
        if self.resume is not None:
            self._check_resume(subword)
            return
        if not spec.sources:
            raise OptionError("name a text file to train on (or - for stdin), or --resume RUN")
        if spec.sources.count(STDIN) > 1:
            raise OptionError("standard input (-) can be named only once")
        if spec.val == STDIN:
            raise CharRNNError(
                "--val -: the validation text must be a file (standard input is read only once)"
            )
        if self.init_from is not None and subword:
            raise OptionError(
                "--init-from: a fine-tuned run keeps the tokenizer of the model it starts from; "
                "--tokenizer and --vocab-size cannot be given"
            )
        if spec.vocab_size is not None and spec.kind == "char":
            raise OptionError("--vocab-size: only for --tokenizer bpe or unigram")
        if self.patience is not None and not spec.holds_out:
            raise OptionError("--patience: needs validation (--val FILE or --val-fraction)")
        tied, embed, hidden = self.tie_weights, self.embed_dim, self.hidden
        if tied and embed is not None and hidden is not None and embed != hidden:
            raise OptionError("--tie-weights needs --embed-dim equal to --hidden")

    def _check_resume(self, subword: bool) -> None:
        if subword:
            raise OptionError("--tokenizer: a resumed run keeps its tokenizer")
        if self.corpus.sources:
            raise OptionError(
                f"--resume continues {self.resume} on the corpus it was started with; name no FILE"
            )
        if self.init_from is not None:
            raise OptionError("--init-from starts a new run; it cannot go with --resume")
        fixed = [name for name in RESUME_FIXED if getattr(self, name) is not None]
        if self.corpus.val is not None:
            fixed.insert(0, "val")
        if fixed:
            what = "--" + fixed[0].replace("_", "-")
            raise OptionError(
                f"--resume continues {self.resume} as it was set up; {what} cannot be changed "
                "(only --max-time, --max-steps, --max-epochs, --eval-every, --patience, "
                "--precision, --device, --threads)"
            )

    @property
    def model_left_to_defaults(self) -> bool:
        """Whether no option that shapes the model was given (the long-run model may apply)."""
        shaping = ("cell", "layers", "hidden", "embed_dim", "dropout", "tie_weights", "init_from")
        return all(getattr(self, name) is None for name in shaping)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Every option by its flat name (the corpus ones included), as ``from_options`` takes."""
        own = [f.name for f in fields(cls) if f.name != "corpus"]
        return (*(f.name for f in fields(CorpusSpec) if f.name != "sources"), *own)

    @classmethod
    def from_options(cls, sources: tuple[str, ...] = (), **options: Any) -> TrainRequest:
        """A request from flat options (``val=...``, ``cell=...``), as the command line and
        ``charrnn.train`` give them; options left at None are left to the defaults. Raises
        TypeError for an unknown name (with the closest known one), OptionError as above."""
        known = cls.option_names()
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                names = ", ".join(sorted(known))
                raise TypeError(f"unknown option {name!r}{hint}; the options are: {names}")
        corpus_names = {f.name for f in fields(CorpusSpec)}
        given = {k: v for k, v in options.items() if v is not None}
        spec = CorpusSpec(
            sources=tuple(sources), **{k: v for k, v in given.items() if k in corpus_names}
        )
        return cls(corpus=spec, **{k: v for k, v in given.items() if k not in corpus_names})
