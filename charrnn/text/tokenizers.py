"""Subword units with sentencepiece (BPE or unigram), behind the same interface as Vocab.

The character vocabulary (vocab.py) stays the default. A subword tokenizer is trained on the
training text and stored in the checkpoint as sentencepiece's own model file (a protobuf, not a
pickle). Choices made so that generation streams text exactly:

* the text is kept as it is: identity normalisation, no collapsing of spaces, no dummy prefix,
  newline as a piece of its own;
* every character of the training text is covered (character coverage 1.0), so each piece is a
  plain string and the output is the concatenation of the pieces; characters never seen in
  training map to the unknown piece, id 0, like ``<UNK>`` in the character vocabulary (byte
  fallback would only produce bytes the model was never trained on).

Full coverage means a piece for every distinct character (and one each for ``<UNK>`` and the
newline): :func:`char_pieces` counts them. A vocabulary size given by the user that is smaller
is refused (:class:`~charrnn.errors.OptionError` naming the smallest that works); the default
is a rule of that count (:func:`charrnn.run.defaults.subword_vocab_size`). A size larger than
the text allows is what sentencepiece then makes (it stops when no pair is left to merge), and
a notice says so.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import CorpusError, OptionError
from .vocab import REPLACEMENT_CHAR, UNK, UNK_ID, Vocab

KINDS = ("bpe", "unigram")  # subword tokenizers
TOKENIZERS = ("char", *KINDS)  # every value of --tokenizer
MODEL_FILE = "tokenizer.model"
SPACE = "\u2581"  # sentencepiece's visible space
MAX_TRAINING_CHARS = 50_000_000  # sentencepiece holds its training text in memory


class SubwordTokenizer:
    """A sentencepiece model with the attributes charrnn uses from
    :class:`~charrnn.text.vocab.Vocab`."""

    def __init__(self, model_proto: bytes, kind: str) -> None:
        import sentencepiece as spm

        if kind not in KINDS:
            raise ValueError(f"unknown subword tokenizer {kind!r}")
        self.kind = kind
        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        n = self.sp.get_piece_size()
        if self.sp.unk_id() != UNK_ID:
            raise ValueError("the tokenizer's unknown piece must have id 0")
        self.itos: list[str] = [UNK] + [
            self.sp.id_to_piece(i).replace(SPACE, " ") for i in range(1, n)
        ]
        self.stoi: dict[str, int] = {p: i for i, p in enumerate(self.itos) if i}
        self.counts: list[int] = [0] * n
        self.chars: list[str] = self.itos[1:]

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, piece: object) -> bool:
        return piece in self.stoi

    def encode(self, text: str) -> list[int]:
        return list(self.sp.encode(text))

    def count_unknown(self, text: str) -> int:
        return sum(1 for i in self.sp.encode(text) if i == UNK_ID)

    def unknown_chars(self, text: str) -> list[str]:
        """The distinct characters of ``text`` no piece covers, in order of appearance."""
        return [ch for ch in dict.fromkeys(text) if UNK_ID in self.sp.encode(ch)]

    def decode(self, ids: Iterable[int]) -> str:
        itos = self.itos
        return "".join(REPLACEMENT_CHAR if i == UNK_ID else itos[i] for i in ids)

    def unigram_entropy_bits(self) -> float:
        return float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "pieces": self.itos, "model_file": MODEL_FILE}


def _sentences(chunks: Iterable[str], limit: int) -> Iterator[str]:
    """Training text for sentencepiece: pieces of about 2,000 characters cut after a newline."""
    pending = ""
    used = 0
    for chunk in chunks:
        pending += chunk
        while len(pending) >= 2000:
            cut = pending.rfind("\n", 0, 4000) + 1 or 2000
            yield pending[:cut]
            used += cut
            pending = pending[cut:]
            if used >= limit:
                return
    if pending:
        yield pending


def char_pieces(sentences: Iterable[str]) -> int:
    """The pieces sentencepiece needs before any merge to cover every character of
    ``sentences``: one per distinct character (a space and U+2581 are one, NUL is skipped), and
    one each for ``<UNK>`` and the newline."""
    chars: set[str] = set()
    for s in sentences:
        chars.update(s)
    if " " in chars:
        chars.discard(" ")
        chars.add(SPACE)
    return len(chars - {"\n", "\0"}) + 2


def train_subword(
    chunks: Iterable[str],
    kind: str,
    vocab_size: int | Callable[[int], int],
    notes: list[str] | None = None,
    name: str = "the training text",
) -> SubwordTokenizer:
    """Train a BPE or unigram model on the training text (its first 50M characters at most).

    ``vocab_size``: the pieces asked for (``--vocab-size``), or the default's rule, which
    chooses them from the pieces the text's characters need (:func:`char_pieces`; the rule of
    0 is the plain default). Raises OptionError for a size asked for that cannot cover the
    text's characters (naming the smallest that works), CorpusError for a text with nothing to
    learn from. ``notes`` gets a line when the size is not the one asked for: grown by the
    rule, or smaller because the text allows no more pieces. ``name``: the text in messages
    (its first file)."""
    sentences = list(_sentences(chunks, MAX_TRAINING_CHARS))
    needed = char_pieces(sentences)
    if needed <= 2:
        raise CorpusError(
            f"{name}: no character but newlines and NUL for a {kind} tokenizer to learn from; "
            "use --tokenizer char"
        )
    for _ in range(2):  # again if sentencepiece counts more characters than char_pieces
        asked = vocab_size if isinstance(vocab_size, int) else max(needed, vocab_size(needed))
        if asked < needed:
            raise OptionError(_too_small(name, kind, asked, needed))
        try:
            tok = _train(sentences, kind, asked)
            break
        except RuntimeError as e:
            found = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(e))
            if found is None or int(found.group(1)) <= needed:
                detail = (str(e).splitlines() or [type(e).__name__])[0]
                raise CorpusError(
                    f"{name}: sentencepiece cannot train a {kind} tokenizer ({detail})"
                ) from None
            needed = int(found.group(1))
    else:
        raise CorpusError(f"{name}: sentencepiece cannot train a {kind} tokenizer of {asked}")
    if notes is not None:
        base = None if isinstance(vocab_size, int) else vocab_size(0)
        notes.extend(_size_notes(kind, base, needed, asked, len(tok)))
    return tok


def _too_small(name: str, kind: str, asked: int, needed: int) -> str:
    return (
        f"--vocab-size {asked}: too small for {name}, whose {needed - 2:,} distinct "
        f"characters each need a {kind} piece (with <UNK> and the newline, {needed:,}); the "
        f"smallest size that works is {needed}"
    )


def _size_notes(kind: str, base: int | None, needed: int, asked: int, got: int) -> list[str]:
    """Notices about the size a tokenizer got: ``asked`` pieces grown from the default ``base``
    (None: --vocab-size gave the size), or ``got``, fewer than asked; none for the size asked."""
    notes = []
    if base is not None and asked > base:
        notes.append(
            f"{kind} vocabulary of {asked:,} pieces instead of the default {base}: the training "
            f"text's {needed - 2:,} distinct characters each need one (with <UNK> and the "
            f"newline, {needed:,}), and {asked - needed:,} are left for longer pieces "
            "(--vocab-size sets the size)"
        )
    if got < asked:
        what = f"--vocab-size {asked}" if base is None else f"{kind} vocabulary of {asked:,}"
        notes.append(
            f"{what}: the training text is too short for more than {got:,} {kind} pieces; "
            f"using {got:,}"
        )
    return notes


def _train(sentences: list[str], kind: str, vocab_size: int) -> SubwordTokenizer:
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=out,
        model_type=kind,
        vocab_size=vocab_size,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        split_by_whitespace=True,
        allow_whitespace_only_pieces=True,
        user_defined_symbols=["\n"],
        max_sentence_length=16384,
        hard_vocab_limit=False,
        unk_id=UNK_ID,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        minloglevel=2,
    )
    return SubwordTokenizer(out.getvalue(), kind)


Tokenizer = Vocab | SubwordTokenizer


def tokenizer_info(tok: Tokenizer) -> dict[str, Any]:
    """What config.json records about a tokenizer."""
    if isinstance(tok, SubwordTokenizer):
        return {"type": tok.kind, "vocab_size": len(tok), "model_file": MODEL_FILE}
    return {"type": "char", "vocab_size": len(tok)}
