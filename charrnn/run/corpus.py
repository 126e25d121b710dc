"""A run's corpus: its sources (files, standard input), the encoding passes, the token cache.

A corpus is read in three streaming passes, never held whole in memory, and ends up as two token
files in the run folder that training memory-maps::

    sources (files, stdin copy) --1--> length + sha256 --> the train/validation cut
                                --2--> character counts of the training part --> vocabulary
                                       (or a sentencepiece model, --tokenizer bpe|unigram)
                                --3--> tokens-train.bin, tokens-val.bin   (uint8/int16/int32)

Standard input is first copied into the run folder (``corpus-stdin.txt``) so that the passes,
and a later ``--resume``, can read it again. Resuming reopens the token cache when the sources'
(size, mtime) fingerprints are unchanged, else encodes them again and checks the text's sha256.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CorpusError
from ..store.atomic import atomic_file, copy_stream_atomic
from ..text.reading import STDIN, Encoder, iter_text, read_text
from ..text.streams import at_line_ends, control_count, count_chars, split_chunks, text_stats
from ..text.tokenizers import Tokenizer, tokenizer_info, train_subword
from ..text.vocab import Vocab, show_chars
from .request import CorpusSpec

STDIN_COPY = "corpus-stdin.txt"
TOKENS_TRAIN = "tokens-train.bin"
TOKENS_VAL = "tokens-val.bin"


@dataclass
class Corpus:
    train_text_chars: int
    vocab: Tokenizer
    train_ids: torch.Tensor  # 1-D, memory-mapped from the run's token cache
    val_ids: torch.Tensor | None
    info: dict[str, Any]  # stored in config.json under "data"
    notices: list[str] = field(default_factory=list)

    @property
    def train_chars_per_token(self) -> float:
        """Characters per token of the training text (1 for the character tokenizer)."""
        tokens = self.info.get("train_chars") or 0
        return self.train_text_chars / tokens if tokens else 1.0

    @property
    def val_text_chars(self) -> int | None:
        """Characters of the validation text (None: no validation)."""
        return self.info.get("val_text_chars") if self.val_ids is not None else None


def _display(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def iter_corpus(
    paths: Sequence[str],
    encoding: str = "utf-8",
    errors: str = "strict",
    notes: list[str] | None = None,
) -> Iterator[str]:
    """Chunks of several files read one after the other, each file starting on a new line
    (``notes``: see :func:`charrnn.text.reading.iter_text`)."""
    for i, p in enumerate(paths):
        last = ""
        for chunk in iter_text(p, encoding, errors, notes=notes):
            last = chunk
            yield chunk
        if not last:
            raise CorpusError(f"{'<stdin>' if p == STDIN else p}: empty file")
        if i < len(paths) - 1 and not last.endswith("\n"):
            yield "\n"


def token_dtype(vocab_size: int) -> np.dtype[Any]:
    """Smallest integer type the token file needs (torch reads uint8, int16 and int32)."""
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    if vocab_size <= 32767:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


def encode_to_files(
    parts: Iterable[tuple[str, str]],
    enc: Callable[[str], Any],
    dtype: np.dtype[Any],
    train_path: Path,
    val_path: Path,
) -> tuple[int, int, int]:
    """Encode (train part, val part) chunks with ``enc`` into two token files, each written
    atomically. Returns (train tokens, val tokens, unknown tokens in the val part); raises
    :class:`CorpusError` when the files cannot be written."""
    n_train = n_val = unknown = 0
    try:
        with atomic_file(train_path) as ft, atomic_file(val_path) as fv:
            for a, b in parts:
                if a:
                    ids = np.asarray(enc(a))
                    ft.write(ids.astype(dtype).tobytes())
                    n_train += ids.size
                if b:
                    ids = np.asarray(enc(b))
                    fv.write(ids.astype(dtype).tobytes())
                    n_val += ids.size
                    unknown += int((ids == 0).sum())
    except OSError as e:
        raise CorpusError(
            f"{train_path.parent}: cannot write the token cache ({e.strerror or e})"
        ) from None
    return n_train, n_val, unknown


def fingerprint(path: str | Path) -> list[int]:
    """(size, modification time) of a file: a cheap check that it has not changed."""
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns]


def open_tokens(path: Path, dtype: np.dtype[Any], count: int) -> torch.Tensor:
    """A token file as a 1-D tensor backed by a memory map (not read into memory)."""
    if count == 0:
        return torch.empty(0, dtype=torch.long)
    size = Path(path).stat().st_size
    if size != count * dtype.itemsize:
        raise CorpusError(
            f"{path}: token cache has {size} bytes, expected {count * dtype.itemsize}"
        )
    arr = np.memmap(path, dtype=dtype, mode="c", shape=(count,))  # copy-on-write: never written
    return torch.from_numpy(arr)


# ----------------------------------------------------------------------------- a run's corpus


def check_sources(spec: CorpusSpec) -> None:
    """Refuse a corpus file that cannot be read, before any run folder is made (CorpusError);
    the request has already refused what no corpus can be (none, stdin twice, ``--val -``)."""
    for p in spec.sources:
        if p != STDIN and not Path(p).is_file():
            read_text(p)  # raises the precise error (missing, a directory, unreadable)


@dataclass(frozen=True)
class _Split:
    """Where the training text ends and the validation text comes from (pass 1)."""

    train_chars: int
    val_chars: int
    text_sha256: str
    val_sha256: str | None
    parts: Callable[[], Iterator[tuple[str, str]]]  # (train part, val part) chunks, re-readable


def _split(spec: CorpusSpec, notes: list[str]) -> _Split:
    sources = list(spec.sources)

    def chunks() -> Iterator[str]:
        return iter_corpus(sources, spec.encoding, spec.errors, notes)

    stats = text_stats(chunks())
    name = _display(sources[0])
    if spec.val is not None:
        val_file = spec.val

        def val_chunks() -> Iterator[str]:
            return iter_corpus([val_file], spec.encoding, spec.errors, notes)

        def both() -> Iterator[tuple[str, str]]:
            yield from ((c, "") for c in chunks())
            yield from (("", c) for c in val_chunks())

        val_stats = text_stats(val_chunks())
        split = _Split(stats.chars, val_stats.chars, stats.sha256, val_stats.sha256, both)
        val_desc = spec.val
    else:
        cut = int(stats.chars * (1.0 - spec.val_fraction))
        split = _Split(
            cut, stats.chars - cut, stats.sha256, None, lambda: split_chunks(chunks(), cut)
        )
        val_desc = f"the last {spec.val_fraction:g} of the corpus"
    if split.train_chars < 2:
        raise CorpusError(
            f"{name}: only {split.train_chars} training character"
            f"{'s' if split.train_chars != 1 else ''}; at least 2 are needed"
        )
    if (spec.val is not None or spec.val_fraction > 0) and split.val_chars < 2:
        raise CorpusError(
            f"{name}: the validation split ({val_desc}) has {split.val_chars} characters; "
            "give more text, --val FILE, or --val-fraction 0"
        )
    return split


def _build_vocab(
    spec: CorpusSpec, split: _Split, base: Tokenizer | None = None
) -> tuple[Tokenizer, list[str]]:
    """The tokenizer of the training part (pass 2), and notices about the text. ``base``: the
    vocabulary of the model a fine-tuned run starts from, extended by the new characters (a
    subword tokenizer is kept as it is)."""
    if base is not None and not isinstance(base, Vocab):
        return base, ["the subword tokenizer of the model it starts from is kept"]
    train_parts = (a for a, _ in split.parts() if a)
    if spec.kind != "char" and base is None:
        sized: list[str] = []  # how the vocabulary size was chosen, when not as asked
        name = _display(spec.sources[0])
        return train_subword(train_parts, spec.kind, spec.pieces, sized, name), sized
    counts = count_chars(train_parts)
    bad = control_count(counts)
    notes = [f"corpus holds {bad} NUL or other control characters; kept as they are"] if bad else []
    if base is None:
        return Vocab.from_counts(counts, min_count=spec.min_char_count), notes
    vocab = base.extended(counts, min_count=spec.min_char_count)
    if len(vocab) > len(base):
        new = vocab.chars[len(base.chars) :]
        notes.append(f"{len(new)} characters new to the model it starts from: {show_chars(new)}")
    return vocab, notes


def prepare_corpus(
    spec: CorpusSpec, run_dir: Path, vocab: Tokenizer | None = None, base: Tokenizer | None = None
) -> Corpus:
    """Read the corpus in streaming passes, build the vocabulary (unless given; ``base``: one
    to extend, see :func:`_build_vocab`) and encode it into the run's token cache, which
    training memory-maps. Memory stays bounded however large the corpus is. Raises
    :class:`CorpusError` for unreadable or too small text."""
    if not spec.sources:
        raise CorpusError("no corpus given: charrnn train FILE [FILE...] (or - for stdin)")
    read_notes: list[str] = []  # every pass reads the files again: keep each note once
    split = _split(spec, read_notes)
    notices: list[str] = []
    if vocab is None:
        vocab, notices = _build_vocab(spec, split, base)
    if len(vocab) < 2:
        raise CorpusError(
            f"{_display(spec.sources[0])}: no character occurs --min-char-count "
            f"{spec.min_char_count} times"
        )
    dtype = token_dtype(len(vocab))
    paths = (run_dir / TOKENS_TRAIN, run_dir / TOKENS_VAL)
    if isinstance(vocab, Vocab):
        counts = encode_to_files(split.parts(), Encoder(vocab.stoi), dtype, *paths)
    else:  # subword pieces must not be cut at chunk borders
        counts = encode_to_files(at_line_ends(split.parts()), vocab.encode, dtype, *paths)
    n_train, n_val, unknown = counts
    if unknown:
        chars = vocab.unknown_chars("".join(dict.fromkeys(c for _, b in split.parts() for c in b)))
        notices.append(
            f"validation text has {unknown} characters not in the training vocabulary "
            f"({show_chars(chars)}; scored as <UNK>)"
        )
    notices = [*dict.fromkeys(read_notes), *notices]
    files = [*(p for p in spec.sources if p != STDIN), *([spec.val] if spec.val else [])]
    info = {
        "sources": [STDIN if p == STDIN else str(Path(p).resolve()) for p in spec.sources],
        "val": None if spec.val is None else str(Path(spec.val).resolve()),
        "val_fraction": spec.val_fraction,
        "encoding": spec.encoding,
        "errors": spec.errors,
        "min_char_count": spec.min_char_count,
        "text_sha256": split.text_sha256,
        "val_sha256": split.val_sha256,
        "tokenizer": tokenizer_info(vocab),
        "train_text_chars": split.train_chars,
        "val_text_chars": split.val_chars,
        "train_chars": n_train,  # tokens (characters for the character tokenizer)
        "val_chars": n_val,
        "val_unknown": unknown,
        "token_dtype": dtype.name,
        "fingerprints": [fingerprint(p) for p in files],
    }
    return open_corpus(run_dir, vocab, info, notices)


def read_sources(spec: CorpusSpec, run_dir: Path, base: Tokenizer | None = None) -> Corpus:
    """:func:`prepare_corpus` for a new run; standard input is first kept in the run folder
    (``corpus-stdin.txt``) so that the passes and a later ``--resume`` can read it again."""
    if STDIN not in spec.sources:
        return prepare_corpus(spec, run_dir, base=base)
    try:
        copy_stream_atomic(sys.stdin.buffer, run_dir / STDIN_COPY)
    except OSError as e:
        raise CorpusError(f"{run_dir / STDIN_COPY}: cannot write ({e.strerror or e})") from None
    copy = str(run_dir / STDIN_COPY)
    paths = tuple(copy if p == STDIN else p for p in spec.sources)
    try:
        corpus = prepare_corpus(replace(spec, sources=paths), run_dir, base=base)
    except CorpusError as e:  # name standard input as the user did, not its copy
        raise CorpusError(str(e).replace(copy, "<stdin>")) from None
    corpus.info["sources"] = [
        STDIN_COPY if p == STDIN else s
        for p, s in zip(spec.sources, corpus.info["sources"], strict=True)
    ]
    return corpus


def open_corpus(
    run_dir: Path, vocab: Tokenizer, info: dict[str, Any], notices: list[str] | None = None
) -> Corpus:
    """The corpus of a run whose token cache is already written (``info``: its data section)."""
    dtype = np.dtype(info["token_dtype"])
    train_ids = open_tokens(run_dir / TOKENS_TRAIN, dtype, info["train_chars"])
    val_ids = open_tokens(run_dir / TOKENS_VAL, dtype, info["val_chars"])
    return Corpus(
        info["train_text_chars"],
        vocab,
        train_ids,
        val_ids if val_ids.numel() >= 2 else None,
        info,
        list(notices or []),
    )


def reopen_corpus(run_dir: Path, vocab: Tokenizer, data: dict[str, Any]) -> Corpus:
    """The corpus of a run being resumed: its token cache if the sources are unchanged or gone
    (moved: the cache is what the run trained on), else the sources encoded again (and checked
    to hold the same text)."""
    sources = [str(run_dir / s) if s == STDIN_COPY else s for s in data.get("sources", [])]
    files = [*sources, *([data["val"]] if data.get("val") else [])]
    missing = [p for p in files if not Path(p).is_file()]
    try:
        unchanged = not missing and [fingerprint(p) for p in files] == data.get("fingerprints")
        if unchanged and "token_dtype" in data:
            return open_corpus(run_dir, vocab, data)
    except (OSError, CorpusError, KeyError, TypeError, ValueError):
        pass
    if missing:  # moved or removed: the token cache holds what the run trains on
        try:
            corpus = open_corpus(run_dir, vocab, data)
        except (OSError, CorpusError, KeyError, TypeError, ValueError):
            raise CorpusError(
                f"{missing[0]}: the run's corpus file is gone, and its token cache in {run_dir} "
                "cannot be read; resuming needs one of them"
            ) from None
        corpus.notices.append(
            f"{missing[0]} is gone (moved?): training on the run's token cache of it"
        )
        return corpus
    spec = CorpusSpec(
        sources=tuple(sources),
        val=data.get("val"),
        val_fraction=data.get("val_fraction", 0.1),
        encoding=data.get("encoding", "utf-8"),
        errors=data.get("errors", "strict"),
        min_char_count=data.get("min_char_count", 1),
    )
    corpus = prepare_corpus(spec, run_dir, vocab=vocab)
    if corpus.info["text_sha256"] != data.get("text_sha256"):
        raise CorpusError(
            f"{sources[0]}: the corpus changed since this run started; resuming needs the same text"
        )
    corpus.info = {**data, "fingerprints": corpus.info["fingerprints"]}
    return corpus
