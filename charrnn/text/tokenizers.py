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
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

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


def train_subword(chunks: Iterable[str], kind: str, vocab_size: int) -> SubwordTokenizer:
    """Train a BPE or unigram model on the training text (its first 50M characters at most)."""
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=_sentences(chunks, MAX_TRAINING_CHARS),
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
