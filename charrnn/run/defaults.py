"""Every default of ``charrnn train``: what a run uses for each option the user left out.

Each rule is a small pure function of measured inputs (corpus size, vocabulary size, cell, step
time, time budget), and its docstring names the measurement behind it (docs/defaults.md gives
the figures). The constants are the one source that ``--help``, the library and the docs read.
:mod:`charrnn.run.plan` applies the rules to a :class:`~charrnn.run.request.TrainRequest`.
Nothing here touches files, prints, or measures (measurements come from
:mod:`charrnn.run.probes` and the corpus); standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..model.config import ModelConfig
from ..training.config import TrainConfig

CHECKPOINTS_ROOT = "checkpoints"  # where run folders go (``$CHARRNN_CHECKPOINTS`` overrides)
DEFAULT_TOKENIZER, DEFAULT_VOCAB_SIZE = "char", 1024  # subword pieces, for bpe and unigram
SUBWORD_MERGED_PIECES = 512  # the least room a default subword vocabulary leaves beyond characters
DEFAULT_CELL = "gru"  # the measured choice (docs/defaults.md)
DEFAULT_MAX_TIME = 120.0  # seconds, when no limit is given
DEFAULT_LAYERS = 2
DEFAULT_BATCH, DEFAULT_SEQ_LEN = 128, 32  # streams x window: 4,096 characters a step
DEFAULT_WEIGHT_DECAY, DEFAULT_CLIP, DEFAULT_WARMUP = 0.01, 1.0, 50
DEFAULT_SCHEDULE, DEFAULT_SEED = "cosine", 1337
DEFAULT_EVAL_EVERY = 200
EVAL_SHARE = 0.05  # periodic evaluations take at most this share of a session (training/loop.py)
# The moving average of the weights tried at the end of a run (training/average.py): kept where
# it scores lower on the validation text. Single runs on a 2-core AMD EPYC, 60 s, val nats/char,
# the weights as trained -> their average at 0.99: ru-fortunes 1.2890 -> 1.2840 and 1.2871 ->
# 1.2839, pl-fortunes 1.9059 -> 1.9012, es-fortunes 1.6432 -> 1.6290; at 0.995 ru-fortunes
# 1.2958 (too long a memory for 528 steps); with --precision fp32 (391 steps, still learning at
# the end) 1.3051 -> 1.3173: the weights as trained are kept there.
DEFAULT_EMA_DECAY = 0.99
# A new run expected to pass over its corpus MANY_PASSES_EPOCHS times or more is regularised
# (many_passes): this AdamW weight decay and peak learning rate, the embedding at the hidden
# size, from LONG_RUN_EPOCHS passes on at least LONG_RUN_DROPOUT dropout, and from
# VERY_LONG_RUN_EPOCHS on at least VERY_LONG_RUN_DROPOUT.
MANY_PASSES_EPOCHS, LONG_RUN_EPOCHS, LONG_RUN_DROPOUT = 4.0, 6.0, 0.1
VERY_LONG_RUN_EPOCHS, VERY_LONG_RUN_DROPOUT = 12.0, 0.2
# A new run limited by time alone, expected to make more passes than this, stops after this
# many (useful_passes): more passes overfit; but never before MIN_USEFUL_STEPS steps (a tiny
# corpus passes in a few steps, and a model needs steps to learn at all).
MAX_USEFUL_PASSES, MIN_USEFUL_STEPS = 16.0, 400.0
LONG_RUN_WEIGHT_DECAY, LONG_RUN_LR = 0.3, 6e-3
# The larger model of a long run (long_run_model): an LSTM of this size, dropout and AdamW weight
# decay, chosen when the default model would make LONG_MODEL_EPOCHS or more passes and this one
# still makes LONG_MODEL_STEPS steps, on a corpus of LONG_MODEL_MIN_TOKENS tokens or more.
LONG_MODEL_CELL, LONG_MODEL_HIDDEN, LONG_MODEL_DROPOUT = "lstm", 512, 0.25
LONG_MODEL_WEIGHT_DECAY = LONG_RUN_WEIGHT_DECAY  # measured for it on its own (long_run_model)
LONG_MODEL_EPOCHS, LONG_MODEL_STEPS, LONG_MODEL_MIN_TOKENS = 9.0, 1200.0, 500_000
# The wider GRU (wide_model): the default GRU at WIDE_MODEL_HIDDEN, chosen when the default model
# would make WIDE_MODEL_EPOCHS passes or more over a corpus of LONG_MODEL_MIN_TOKENS tokens or
# more and this one still makes WIDE_MODEL_STEPS steps (after the long run's larger model); on a
# smaller corpus of SMALL_WIDE_MIN_TOKENS tokens or more, where this one still makes
# SMALL_WIDE_EPOCHS passes (and MIN_USEFUL_STEPS steps).
WIDE_MODEL_HIDDEN, WIDE_MODEL_EPOCHS, WIDE_MODEL_STEPS = 384, 4.0, 1000.0
SMALL_WIDE_MIN_TOKENS, SMALL_WIDE_EPOCHS = 100_000, 12.0
BF16_MIN_SPEEDUP = 1.1  # bf16 must beat fp32 by this factor; ties and noise keep fp32


# ----------------------------------------------------------------------------- the rules


def hidden_size(n_train: int) -> int:
    """128 under 100k training characters, 256 under 5M, else 512: the largest size whose
    steps still let a 2-minute run see its corpus a few times on 2 CPU cores."""
    return 128 if n_train < 100_000 else 256 if n_train < 5_000_000 else 512


def embed_dim(vocab_size: int, hidden: int) -> int:
    """64, or the hidden size for vocabularies over 256 entries (e.g. Chinese text, subword
    pieces), whose rarer entries each need a richer input. Measured on zh-prose (~6,000
    characters, 2x256 GRU, 60 s, one run each, val nats/char): embedding 128 5.415, 256 5.218,
    against 5.287 for the plain PyTorch loop (which embeds at the hidden size)."""
    return 64 if vocab_size <= 256 else hidden


def subword_vocab_size(char_pieces: int) -> int:
    """Pieces of a bpe or unigram vocabulary left to the default, for a training text whose
    characters need ``char_pieces`` (one each, with ``<UNK>`` and the newline: every character
    is covered, see :mod:`charrnn.text.tokenizers`): DEFAULT_VOCAB_SIZE, or the characters'
    pieces and SUBWORD_MERGED_PIECES more when the default would leave fewer (Chinese prose
    has 3,000 to 6,000 distinct characters; the 1024 default cannot even hold them). Not
    measured: it keeps the default working on any text and leaves room for longer pieces, as
    the 1024 default does for an alphabet of ~100 characters. ``subword_vocab_size(0)`` is the
    plain default."""
    return max(DEFAULT_VOCAB_SIZE, char_pieces + SUBWORD_MERGED_PIECES)


def dropout(n_train: int) -> float:
    """0.2 under 100k training characters, 0.1 under 1M, else 0: small corpora overfit."""
    return 0.2 if n_train < 100_000 else 0.1 if n_train < 1_000_000 else 0.0


@dataclass(frozen=True)
class ManyPasses:
    """What a new run expected to pass over its corpus MANY_PASSES_EPOCHS times or more trains
    with instead of the default (None: no change): :func:`many_passes`."""

    dropout: float | None
    embed_dim: int | None
    lr: float | None
    weight_decay: float | None

    def changes(self) -> dict[str, float | int]:
        """The fields that change, by name."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


def many_passes(mc: ModelConfig, epochs: float | None) -> ManyPasses | None:
    """The regularised setting of a run whose default model ``mc`` is expected to pass
    ``epochs`` times (None: unknown) over its corpus, from MANY_PASSES_EPOCHS passes on (None
    below): AdamW weight decay LONG_RUN_WEIGHT_DECAY, the embedding at the hidden size, peak
    learning rate LONG_RUN_LR (GRU and LSTM; the tanh RNN keeps its own), from
    LONG_RUN_EPOCHS passes on dropout at least LONG_RUN_DROPOUT, and from VERY_LONG_RUN_EPOCHS
    on at least VERY_LONG_RUN_DROPOUT. Fewer passes keep the defaults: regularisation costs a
    run that sees its text only a few times.

    Measured with ``python bench/tune.py`` (an Optuna study of 23 trials, 60 s each, one run
    per trial; val nats/char; Intel Xeon, 2 cores, AMX, bf16 chosen by the probe; bench/STUDIES.md):
    pl-fortunes (225k characters, ~9 passes at 60 s): the defaults 1.9685; weight decay 0.3
    alone 1.9378; the embedding at 256 alone 1.9627; both 1.9346; both with lr 6e-3 1.9232 (the
    study's best; its best trials all had embedding 256, weight decay 0.3, lr 6e-3 and dropout
    0.1: 1.9232-1.9527); dropout 0.15 1.9300, 0 1.9452 (window 64). tinyshakespeare (1.0M):
    at 60 s (~2.5 passes) the defaults 1.5063 against 1.5190 for weight decay 0.3, embedding
    256 and lr 6e-3 (1.5199 for the embedding at 256 alone); at 137 s (~5 passes) that setting,
    one run, 1.4495 against 1.4731 for the defaults (median of 3): hence 4 passes. Dropout's
    thresholds are their own (docs/defaults.md#dropout). ru-fortunes (121k characters, ~16
    passes at 60 s, the setting above with dropout 0.1 as the defaults, one run each): dropout
    0.1 1.3056, 0.2 1.2854, 0.25 1.2875, 0.3 1.2905; 2x384 with dropout 0.2 1.2849, 0.3 1.2842
    (~11 passes), 0.4 1.2966: hence 0.2 from 12 passes (pl-fortunes at ~9 passes: 0.1 and 0.15
    alike, above)."""
    if epochs is None or epochs < MANY_PASSES_EPOCHS:
        return None
    least = (
        VERY_LONG_RUN_DROPOUT
        if epochs >= VERY_LONG_RUN_EPOCHS
        else LONG_RUN_DROPOUT
        if epochs >= LONG_RUN_EPOCHS
        else 0.0
    )
    return ManyPasses(
        dropout=least if mc.dropout < least else None,
        embed_dim=mc.hidden if mc.embed_dim < mc.hidden else None,
        lr=LONG_RUN_LR if mc.cell in ("gru", "lstm") else None,
        weight_decay=LONG_RUN_WEIGHT_DECAY,
    )


def useful_passes(epochs: float | None, steps_per_pass: float) -> float | None:
    """The passes at which a new run limited by time alone, and expected to pass ``epochs``
    times over its corpus (None: unknown) in steps of which ``steps_per_pass`` make one pass,
    should end instead: MAX_USEFUL_PASSES, or as many as MIN_USEFUL_STEPS steps make when that
    is more, if more passes than that are expected (None: let the time limit end it). The
    schedule is planned for those passes, so the learning rate decays where validation is best,
    and the user gets the model sooner.

    Measured (bench/suite.py, 3 pairs, median, bf16, 2-core Intel Xeon): ru-fortunes (121k
    training characters) with the many-passes rule reached 1.2817 nats/char in 60 s (~16
    passes) and 1.3245-1.3293 in 10 minutes (~160 passes; its best checkpoint, the schedule's
    learning rate still high where validation was best); pl-fortunes 1.927 at ~9 passes (60 s)
    against 1.949 at ~28 (137 s). 16: the most passes measured at the best figure. The least
    steps, measured on es-fortunes (32k training characters, 8 steps a pass, 2x128 GRU, bf16,
    2-core AMD EPYC; one run each, ``--max-steps N``, val nats/char): 144 steps (16 passes)
    1.897, 200 1.750, 300 1.663, 400 1.667, 600 1.676, 1000 1.678, 1500 1.679; ru-fortunes
    (30 steps a pass) 528 steps 1.285-1.289 (16 passes, 3 runs), 750 1.305, 1000 1.312. 400:
    steep below, nearly flat above."""
    if epochs is None:
        return None
    useful = max(MAX_USEFUL_PASSES, MIN_USEFUL_STEPS / steps_per_pass)  # a pass: 1 step or more
    return None if epochs <= useful else useful


def long_run_model(mc: ModelConfig, n_train: int, epochs: float | None) -> ModelConfig | None:
    """The larger, more regularised model worth measuring for a new run whose default model
    ``mc`` is expected to pass ``epochs`` times over ``n_train`` training tokens (None: keep
    ``mc``): a 2-layer LSTM of LONG_MODEL_HIDDEN with dropout LONG_MODEL_DROPOUT (and AdamW
    weight decay LONG_MODEL_WEIGHT_DECAY: see :mod:`charrnn.run.plan`), for a
    run of LONG_MODEL_EPOCHS passes or more on LONG_MODEL_MIN_TOKENS tokens or more whose
    default model is narrower. It replaces the default only if it still makes LONG_MODEL_STEPS
    steps (:func:`long_run_model_fits`). Measured on tinyshakespeare (bf16, one run each, val
    nats/char), this LSTM (weight decay 0.01) against the default 2x256 GRU: 137 s 1.6723
    against 1.4760 (490 steps: too few), 5 min 1.4684 against 1.4739 (977 steps; the GRU made
    ~9 passes), 10 min 1.4413 against 1.4623 (1,842 steps; the GRU made 19 passes and
    overfit). At 10 min, weight decay 0.1 gave 1.4309, 0.3 1.4156 and 0.6 1.4243; weight decay
    0.3 with dropout 0.25 1.3973 (2,039 steps); dropout on the recurrent weights (0.2, with
    weight decay 0.1) 1.4401, 64 x 64 batches 1.4405."""
    if epochs is None or epochs < LONG_MODEL_EPOCHS or n_train < LONG_MODEL_MIN_TOKENS:
        return None
    if mc.hidden >= LONG_MODEL_HIDDEN:
        return None
    return replace(
        mc,
        cell=LONG_MODEL_CELL,
        hidden=LONG_MODEL_HIDDEN,
        embed_dim=embed_dim(mc.vocab_size, LONG_MODEL_HIDDEN),
        dropout=max(mc.dropout, LONG_MODEL_DROPOUT),
    )


def wide_model(mc: ModelConfig, n_train: int, epochs: float | None) -> ModelConfig | None:
    """The wider model worth measuring for a new run whose default model ``mc`` is expected to
    pass ``epochs`` times over ``n_train`` training tokens (None: keep ``mc``): the same cell at
    WIDE_MODEL_HIDDEN, for a run of WIDE_MODEL_EPOCHS passes or more on SMALL_WIDE_MIN_TOKENS
    tokens or more whose default model is narrower. It replaces the default only if it still
    makes enough steps or passes (:func:`wide_model_fits`); the many-passes rule then applies to
    the passes it makes.

    Measured on tinyshakespeare at 137 s (2-core AMD EPYC, bf16 at 2.2x fp32; val nats/char;
    bench/suite.py, 3 pairs): the default 2x256 GRU made 1,320-1,570 steps (~8 passes, the
    many-passes setting) and reached 1.4636 (1.4566-1.4662), -0.030 from the plain loop; a
    2x384 GRU 1,195 steps (~5 passes) 1.4360 (one run; a 128 x 64 batch 1.4604); with this
    rule 1.4364 (1.4340-1.4441, 1,156-1,213 steps), -0.052 from the plain loop. On the 2-core
    Intel Xeon (bf16 at 1.4x) at 137 s a 2x384 GRU with dropout 0.1 made too few steps to gain
    (1.4787 against 1.4769), and at 10 minutes (dropout 0.1) lost to the default (1.4987
    against 1.4623), where the long run's LSTM does better still (:func:`long_run_model`); on
    ru-fortunes (121k characters, 60 s) 2x384 tied 2x256 (1.2842-1.2849 against 1.2854, ~11
    passes of it). On the AMD EPYC, where 2x384 makes ~14 passes of ru-fortunes in 60 s (single
    runs, exact protocol, as trained -> the weights' average): the default 2x256 1.2890 -> 1.2840
    and 1.2871 -> 1.2839; 2x384 with the many-passes setting (dropout 0.2, embedding 384)
    1.2795 -> 1.2610; with dropout 0.3 1.2767 -> 1.2717 and 1.2737 -> 1.2724 (embedding 256:
    1.2816 -> 1.2709); 2x512 (dropout 0.4, 283 steps) 1.2951. pl-fortunes (203k, 2x384 ~9.5
    passes): 1.9069 against 1.9059, a tie; es-fortunes (32k, 2x128 by default): 2x384 2.0256
    against 1.6432. Hence 12 passes on corpora under LONG_MODEL_MIN_TOKENS, none under
    SMALL_WIDE_MIN_TOKENS; with --precision fp32 2x384 makes ~6 passes there (1.3629 against
    1.3051 for the default: too few), and the rule leaves it."""
    if epochs is None or epochs < WIDE_MODEL_EPOCHS or n_train < SMALL_WIDE_MIN_TOKENS:
        return None
    if mc.hidden >= WIDE_MODEL_HIDDEN:
        return None
    return replace(
        mc, hidden=WIDE_MODEL_HIDDEN, embed_dim=embed_dim(mc.vocab_size, WIDE_MODEL_HIDDEN)
    )


def wide_model_fits(steps: float | None, passes: float | None, n_train: int) -> bool:
    """Whether the model of :func:`wide_model` is expected to make enough ``steps`` and
    ``passes`` over ``n_train`` training tokens (None: unknown): WIDE_MODEL_STEPS steps or more
    on LONG_MODEL_MIN_TOKENS tokens or more; on a smaller corpus SMALL_WIDE_EPOCHS passes or
    more in MIN_USEFUL_STEPS steps or more."""
    if steps is None or passes is None:
        return False
    if n_train >= LONG_MODEL_MIN_TOKENS:
        return steps >= WIDE_MODEL_STEPS
    return passes >= SMALL_WIDE_EPOCHS and steps >= MIN_USEFUL_STEPS


def long_run_model_fits(steps: float | None) -> bool:
    """Whether the model of :func:`long_run_model` is expected to make enough steps (``steps``,
    None: unknown) to beat the default: LONG_MODEL_STEPS or more."""
    return steps is not None and steps >= LONG_MODEL_STEPS


def learning_rate(cell: str) -> float:
    """Peak learning rate: 8e-3 for GRU and LSTM (LSTM measured 1.545 against 1.693 nats/char at
    3e-3 in 137 s), 2e-3 for the tanh RNN, which diverges at higher rates."""
    return {"gru": 8e-3, "lstm": 8e-3, "rnn": 2e-3}[cell]


def finetune_learning_rate(cell: str) -> float:
    """Peak learning rate of a run that starts from a trained model (``--init-from``): a new
    run's (:func:`learning_rate`), with the same warm-up and cosine decay. Measured fine-tuning
    the 2x256 GRU trained 500 steps on tinyshakespeare onto corpora/verses.txt, validation
    nats/char after 100 steps: 1.2e-2 0.823, 8e-3 0.849, 4e-3 0.914, 2e-3 1.019, 1e-3 1.160
    (from scratch, 8e-3: 1.271); after 300 steps 8e-3 0.740, 4e-3 0.762. The lower rates
    usually advised for fine-tuning only slowed it down: the warm-up already keeps the first
    steps small, while the fresh AdamW moments settle. 1.2e-2 did a little better at 100 steps
    but worse than 8e-3 for new runs (see learning_rate), so one rate serves both."""
    return learning_rate(cell)


def precision(device_type: str, bf16_supported: bool) -> str:
    """bf16 autocast on CUDA GPUs that support it, else fp32 (on a CPU with native bf16 the
    precision probe may then choose bf16: :func:`cpu_precision`)."""
    return "bf16" if device_type == "cuda" and bf16_supported else "fp32"


def cpu_precision(speedup: float) -> str:
    """bf16 autocast when the precision probe measured a training step at least
    BF16_MIN_SPEEDUP times faster than in fp32 (``speedup``: fp32 time / bf16 time), else fp32.
    bf16 autocast costs no quality per step here: 300 steps of the 2x256 GRU on
    tinyshakespeare reached 1.6142 nats/char against 1.6172 in fp32; in 60 s it made 634 steps
    against 405 and reached 1.506 against 1.555 (Intel Xeon with AVX-512 BF16, 2 cores)."""
    return "bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32"


def thread_candidates(cores: int) -> list[int]:
    """Thread counts the thread probe compares: one, and all cores. On a busy machine threads that
    wait for a core can make an RNN step several times slower than one thread (measured: 1.598
    against 1.882 nats/char in 60 s with one of 2 cores kept busy)."""
    return sorted({1, max(1, cores)})


def expected_steps(tc: TrainConfig, n_train: int, step_seconds: float) -> float | None:
    """Steps a new run will make under the limits of ``tc`` (``n_train`` training tokens), a
    time limit being turned into steps by ``step_seconds`` (inf: unknown); None if unknown."""
    steps = [float(tc.max_steps)] if tc.max_steps else []
    if tc.max_time and 0 < step_seconds < float("inf"):
        steps.append(tc.max_time * (1.0 - EVAL_SHARE) / step_seconds)
    if tc.max_epochs:
        steps.append(tc.max_epochs * n_train / (tc.batch_size * tc.seq_len))
    return min(steps) if steps else None


def expected_epochs(tc: TrainConfig, n_train: int, step_seconds: float) -> float | None:
    """Passes over ``n_train`` training tokens a new run will make under the limits of ``tc``
    (:func:`expected_steps`); None if unknown."""
    steps = expected_steps(tc, n_train, step_seconds)
    return None if steps is None else steps * tc.batch_size * tc.seq_len / max(1, n_train)


@dataclass(frozen=True)
class Fit:
    """Batch size and window length actually used for a stream of ``n`` tokens."""

    batch_size: int
    seq_len: int
    shrunk: bool


def fit_batch(n: int, batch_size: int, seq_len: int) -> Fit:
    """Shrink batch size (then window length) so that ``n`` tokens give at least one full window.

    A corpus needs ``batch_size * (seq_len + 1)`` tokens for one full window; smaller corpora get
    fewer streams first, then shorter windows, down to one stream of 2 tokens.
    """
    if n < 2:
        raise ValueError("at least 2 tokens are needed")
    b, t = batch_size, seq_len
    if n >= b * (t + 1):
        return Fit(b, t, False)
    b = max(1, n // (t + 1))
    if n < t + 1:
        t = n - 1
    return Fit(b, t, True)
