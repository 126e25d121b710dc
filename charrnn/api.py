"""The public Python API, defined here and exported as ``charrnn.*`` (see the package
docstring and docs/python-api.md). Every function imports what it needs when called, so that
``import charrnn`` stays cheap.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CharRNNError, terminal_text
from .protocols import DEFAULT_LENGTH, DEFAULT_TEMPERATURE

if TYPE_CHECKING:
    from typing import TypeAlias

    import torch

    from .store.checkpoint import LoadedModel
    from .training.events import Event
    from .units import Score

    PathLike: TypeAlias = str | os.PathLike[str]
    Device: TypeAlias = str | torch.device


def _device(device: Device) -> torch.device:
    from .device import resolve_device

    return resolve_device(device) if isinstance(device, str) else device


def load_model(path: PathLike, device: Device = "auto") -> LoadedModel:
    """Load a trained model for sampling or scoring.

    Args:
        path: a run folder (what :func:`train` returns, e.g. ``checkpoints/verses-gru``: its
            best checkpoint, the one with the lowest validation loss, is loaded) or one
            checkpoint folder in it (``checkpoints/verses-gru/step-00000400``).
        device: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``, or a ``torch.device``. Checkpoints load on any device.

    Returns:
        A :class:`charrnn.store.checkpoint.LoadedModel`: ``.model`` (the ``CharRNN`` module, in eval
        mode), ``.vocab`` (its tokenizer), ``.config`` (the checkpoint's ``config.json`` as a
        dict) and ``.path`` (the checkpoint folder actually loaded).

    Raises:
        CheckpointError: ``path`` is missing, is not a run or checkpoint folder, or holds a
            damaged or incompatible checkpoint (no pickle is ever read).
        CharRNNError: ``device`` names a device this machine does not have.
    """
    from .store.checkpoint import load_model as _load

    return _load(Path(path), _device(device))


def _as_loaded(model: LoadedModel | PathLike) -> LoadedModel:
    from .store.checkpoint import LoadedModel

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, str | os.PathLike):
        return load_model(model)
    raise TypeError(
        f"expected a LoadedModel (from charrnn.load_model) or a run/checkpoint folder, "
        f"not {type(model).__name__}"
    )


def generate_stream(
    model: LoadedModel | PathLike,
    prime: str = "",
    *,
    length: int = DEFAULT_LENGTH,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: str | None = None,
) -> Iterator[str]:
    """Generate text piece by piece, as :func:`generate` does, for printing as it comes.

    Takes the same arguments as :func:`generate`. The arguments are checked at the call; the
    text is computed as the returned iterator is consumed: first the prime (when not empty),
    then one piece per step (a character, or a subword piece for models trained with
    ``tokenizer="bpe"`` or ``"unigram"``). ``"".join(generate_stream(...))`` is
    ``generate(...)``.
    """
    from .sample.generate import generate as _generate
    from .sample.policy import SampleConfig

    loaded = _as_loaded(model)
    cfg = SampleConfig(length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    return _generate(loaded.model, loaded.vocab, prime, cfg, stop=stop)


def generate(
    model: LoadedModel | PathLike,
    prime: str = "",
    *,
    length: int = DEFAULT_LENGTH,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: str | None = None,
) -> str:
    """Generate text from a trained model and return it whole.

    Args:
        model: a model from :func:`load_model`, or a run or checkpoint folder to load one from
            (with ``device="auto"``; load once with :func:`load_model` to sample repeatedly).
        prime: text the model reads first; the returned text starts with it. Characters the
            model never saw are read as ``<UNK>``. With no prime the model starts as if at the
            beginning of a line.
        length: steps to generate (>= 0): characters for a character model, subword pieces
            for a subword model. ``<UNK>`` is never generated.
        temperature: >= 0; lower is more conservative, 1 samples the model's own distribution,
            0 is greedy decoding (always the likeliest character; ``seed`` is then irrelevant).
        top_k: sample only among the k likeliest characters (k >= 1); None: all.
        top_p: nucleus sampling, in (0, 1]: sample among the smallest set of likeliest
            characters whose probability reaches p; None: all.
        seed: makes the output reproducible (same model, arguments, device and charrnn
            version give the same text); None: a different text each call.
        stop: end the text where the generated part (not the prime) first contains this
            string, which is left out; the text may then be shorter than ``length``.

    Returns:
        ``prime`` followed by up to ``length`` generated characters (pieces), as one string.
        With an empty prime and a model whose vocabulary has no newline, the first character
        is drawn from the training text's character frequencies and comes in addition.

    Raises:
        ValueError: an argument is out of range (negative length or temperature, top_k < 1,
            top_p outside (0, 1]).
        TypeError: ``model`` is neither a loaded model nor a path.
        CheckpointError: ``model`` is a path that does not hold a usable checkpoint.
    """
    return "".join(
        generate_stream(
            model,
            prime,
            length=length,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stop=stop,
        )
    )


def score(model: LoadedModel | PathLike, text: str, *, exact: bool = False) -> Score:
    """How well a model predicts a text: loss, bits and perplexity per character.

    Every character is predicted from all the text before it, except the first (the first
    token's characters for a subword model), which nothing predicts.

    Args:
        model: a model from :func:`load_model`, or a run or checkpoint folder to load one from.
        text: the text itself (a ``str``; for a file use :func:`score_file`). At least two
            characters (two tokens). Characters the model never saw are scored as ``<UNK>``
            (``model.vocab.count_unknown(text)`` tells how many there are).
        exact: True scores the text as one stream with the state carried through it (slow on
            a CPU for long texts). False (the default) cuts a text of more than about 500
            characters into up to 64 pieces scored side by side, each read after 256
            characters of context: within a tiny tolerance of the exact figure, and much
            faster. Shorter texts are scored exactly either way.

    Returns:
        A :class:`charrnn.units.Score`. Per character, the figures to compare models by:
        ``nats_per_char``, ``bits_per_char`` (= nats_per_char / ln 2) and ``perplexity``
        (= e^nats_per_char = 2^bits_per_char). Per token, the same total loss over the model's
        predictions: ``nats_per_token``, ``bits_per_token``, ``perplexity_per_token`` (equal to
        the per-character figures for a character model). Counts: ``tokens`` (predictions
        scored), ``chars`` (characters they cover), ``nats`` (their summed loss, natural log).
        ``to_dict()`` gives them all for JSON.

    Raises:
        CharRNNError: the text is too short to predict anything.
        TypeError: ``text`` is not a ``str``.
        CheckpointError: ``model`` is a path that does not hold a usable checkpoint.
    """
    if not isinstance(text, str):
        raise TypeError(
            f"score() takes the text itself (a str), not {type(text).__name__}; "
            "use charrnn.score_file(model, path) for a file"
        )
    return _score_chunks(model, [text], exact, "the text")


def score_file(
    model: LoadedModel | PathLike,
    path: PathLike,
    *,
    encoding: str = "utf-8",
    errors: str = "strict",
    exact: bool = False,
) -> Score:
    """:func:`score` for a text file, read in chunks (memory stays bounded however long it is).

    Args:
        model: a model from :func:`load_model`, or a run or checkpoint folder.
        path: the text file; ``"-"`` reads standard input. It is read as ``charrnn train``
            reads a corpus: a leading byte-order mark is dropped and CR LF becomes LF.
        encoding: the file's text encoding.
        errors: what to do with undecodable bytes: ``"strict"`` (raise), ``"replace"`` (with
            U+FFFD, scored as ``<UNK>``) or ``"ignore"``.
        exact: as for :func:`score`.

    Returns:
        The :class:`charrnn.units.Score` of the file, as for :func:`score`.

    Raises:
        ValueError: ``errors`` is not one of the three above.
        CorpusError: the file is missing, unreadable, not valid text in ``encoding``, or
            ``encoding`` is unknown.
        CharRNNError: the file is too short to predict anything.
        CheckpointError: ``model`` is a path that does not hold a usable checkpoint.
    """
    from .text.reading import DECODE_ERRORS, iter_text

    if errors not in DECODE_ERRORS:
        raise ValueError(f"errors={errors!r}: expected one of {', '.join(DECODE_ERRORS)}")
    return _score_chunks(model, iter_text(os.fspath(path), encoding, errors), exact, str(path))


def _score_chunks(
    model: LoadedModel | PathLike, chunks: Iterable[str], exact: bool, name: str
) -> Score:
    from .evaluation import DEFAULT_BURN_IN, DEFAULT_STREAMS, score_text

    loaded = _as_loaded(model)
    streams = 1 if exact else DEFAULT_STREAMS
    scored = score_text(loaded.model, loaded.vocab, chunks, streams, DEFAULT_BURN_IN)
    if scored.score.tokens < 1:
        raise CharRNNError(
            f"{name}: too short to score ({scored.chars} character(s)); "
            "at least 2 characters (2 tokens) are needed"
        )
    return scored.score


def train(
    corpus: PathLike | Sequence[PathLike] | None = None,
    *,
    out: PathLike | None = None,
    max_time: float | None = None,
    max_steps: int | None = None,
    cell: str | None = None,
    hidden: int | None = None,
    layers: int | None = None,
    device: Device = "auto",
    threads: int | None = None,
    resume: PathLike | None = None,
    quiet: bool = True,
    **options: Any,
) -> Path:
    """Train a model, as ``charrnn train`` does, and return its run folder.

    Checkpoints are saved in the run folder at each evaluation and at the end; the returned
    folder can go straight to :func:`load_model` (its best checkpoint) or to
    ``train(resume=...)``. An option left at None is chosen by the measured defaults of
    :mod:`charrnn.run.defaults` (docs/defaults.md).

    Args:
        corpus: the text file to train on, or a sequence of files read one after the other;
            ``"-"`` reads standard input. Not with ``resume``.
        out: the run folder to create (it must be missing or empty). None: a new folder
            ``<root>/<corpus name>-<cell>`` (``-2``, ``-3``, ... when taken), where ``root``
            is ``$CHARRNN_CHECKPOINTS`` or ``checkpoints`` relative to the working directory.
        max_time: seconds of training for this call. When no limit at all is given
            (``max_time``, ``max_steps``, ``max_epochs``), training stops after 120 s.
        max_steps: total optimizer steps of the run (counted across resumes).
        cell: ``"gru"`` (default), ``"lstm"`` or ``"rnn"``.
        hidden: units per recurrent layer; default from the corpus size (128 to 512).
        layers: recurrent layers (default 2).
        device: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or a ``torch.device``.
        threads: CPU threads for torch. None: the faster of one and all cores, measured on
            the run's own model. Either way the choice stays set for this process
            (``torch.set_num_threads``).
        resume: continue the run in this folder from its newest checkpoint instead of
            starting one; only the limits (``max_time``, ``max_steps``, ``max_epochs``,
            ``eval_every``, ``precision``, ``patience``), ``device`` and ``threads`` may be
            given.
        quiet: False prints the setup notices and one line per evaluation (validation
            bits per character) to standard error.
        **options: any other ``charrnn train`` option, under its
            :class:`charrnn.run.request.TrainRequest` name: ``val``, ``val_fraction``,
            ``encoding``, ``errors``, ``min_char_count``, ``tokenizer`` (``"char"``, ``"bpe"``,
            ``"unigram"``), ``vocab_size``, ``embed_dim``, ``dropout``, ``tie_weights``,
            ``batch_size``, ``seq_len``, ``lr``, ``weight_decay``, ``clip``, ``warmup``,
            ``schedule``, ``max_epochs``, ``eval_every``, ``seed``, ``precision``, ``root``,
            ``init_from`` (a run or checkpoint folder to fine-tune), ``patience`` (stop after
            that many validations in a row without a new best), ``ema_decay`` (of the
            weights' moving average tried at the end; 0: none).

    Returns:
        The run folder (a ``Path``).

    Raises:
        TypeError: an unknown option name, neither or both of ``corpus`` and ``resume``, or
            ``max_time`` given as a string (it is seconds, a number).
        CorpusError: the corpus cannot be read or is unusable.
        CheckpointError: ``resume`` names no run, or a damaged one.
        TrainingError: training cannot go on (the loss diverged, ...); the checkpoints saved
            before are kept.
        CharRNNError: any other option the run cannot take (an unknown cell, a used ``out``
            folder, fp16 without CUDA, an option a resumed run cannot change, ...).
        ValueError: a value out of range (e.g. an unknown ``schedule``).
    """
    if (corpus is None) == (resume is None):
        raise TypeError("train() needs either a corpus (a text file, or several) or resume=RUN")
    if isinstance(max_time, str):
        raise TypeError(f"max_time={max_time!r}: give seconds as a number, e.g. 600 for 10m")
    from .run.request import TrainRequest
    from .run.start import open_run

    if corpus is None:
        sources: tuple[str, ...] = ()
    elif isinstance(corpus, str | os.PathLike):
        sources = (os.fspath(corpus),)
    else:
        sources = tuple(os.fspath(p) for p in corpus)
    options.setdefault("root", os.environ.get("CHARRNN_CHECKPOINTS") or None)
    try:
        req = TrainRequest.from_options(
            sources,
            out=None if out is None else os.fspath(out),
            resume=None if resume is None else os.fspath(resume),
            max_time=max_time,
            max_steps=max_steps,
            cell=cell,
            hidden=hidden,
            layers=layers,
            **options,
        )
    except TypeError as e:
        raise TypeError(f"train() got an {e}") from None
    run = open_run(req, _device(device), threads=threads)
    if not quiet:
        for notice in run.notices:
            print(terminal_text(f"charrnn: {notice}"), file=sys.stderr)
    run.train(callbacks=() if quiet else (_report,))
    if not quiet:
        print(terminal_text(f"charrnn: saved {run.run_dir}"), file=sys.stderr)
    return Path(run.run_dir)


def _report(event: Event) -> None:
    """``train(quiet=False)``: one line per evaluation on standard error."""
    from .training.events import Evaluated

    if isinstance(event, Evaluated):
        best = " (best)" if event.is_best else ""
        bpc = event.val.bits_per_char
        print(f"charrnn: step {event.step}: validation {bpc:.4f} bits/char{best}", file=sys.stderr)
