"""Text in, token ids out: the text policy, character ids, streams and TBPTT windows.

Every text file charrnn reads (a corpus, a prime, a file to score) is read by :func:`iter_text`;
a run's corpus as a whole (sources, passes, token cache) is :mod:`charrnn.run.corpus`.

Text policy, shared by train, sample and eval-perplexity: files are decoded as UTF-8 (or
``encoding``), a leading byte-order mark is dropped, and Windows line ends (CR LF) become LF.
A file with CR line ends and no LF (classic Mac OS) is read with CR as LF; elsewhere a lone CR
is kept as it is.

Batching into contiguous streams and walking them in windows (truncated BPTT)::

    ids   a b c d e f g h i j k l m n o p q r s t u v w x y    N = 25, batch_size B = 3
                                                               L = N // B = 8 per stream
    data  row 0: a b c d e f g h      (B, L): each row is a contiguous stretch of the text
          row 1: i j k l m n o p
          row 2: q r s t u v w x      (y is dropped: it does not fill a row)

    seq_len T = 3, window k starts at column i = k*T:
          x = data[:, i : i+T]        y = data[:, i+1 : i+T+1]   (the next character)
          k=0  x: a b c   y: b c d     k=1  x: d e f   y: e f g     k=2  x: g   y: h
               i j k      j k l             l m n      m n o             o       p
               ...                          ...                          w       x

The hidden state that row b ends window k with is the state row b starts window k+1 with
(detached from the graph), so every stream reads its stretch of text as one long sequence.
The last window of an epoch is shorter when T does not divide L - 1.
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import CorpusError

if TYPE_CHECKING:  # only passed through: the command line reads text without torch or NumPy
    import numpy as np
    import torch

STDIN = "-"
DECODE_ERRORS = ("strict", "replace", "ignore")  # what --errors accepts (Python codec handlers)


def _open(path: str | Path) -> tuple[BinaryIO, str, bool]:
    """The file to read (standard input for ``-``), its name for messages, whether to close it."""
    name = str(path)
    if name == STDIN:
        return sys.stdin.buffer, "<stdin>", False
    try:
        return open(path, "rb"), name, True  # closed by the caller
    except FileNotFoundError:
        raise CorpusError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CorpusError(f"{name}: is a directory, expected a text file") from None
    except PermissionError:
        raise CorpusError(f"{name}: permission denied") from None
    except OSError as e:
        raise CorpusError(f"{name}: cannot read ({e.strerror})") from None


def iter_text(
    path: str | Path,
    encoding: str = "utf-8",
    errors: str = "strict",
    chunk_bytes: int = 1 << 20,
    notes: list[str] | None = None,
) -> Iterator[str]:
    """Decode a file (``-`` for standard input) in chunks under the shared text policy.

    Memory stays bounded by ``chunk_bytes`` however long the file is. A file whose first chunk
    has CR line ends and no LF at all (classic Mac OS) is read with every CR as LF, and a note
    saying so is appended to ``notes``. Raises :class:`CorpusError` naming the file.
    """
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors)
    except LookupError:
        raise CorpusError(f"{path}: unknown text encoding {encoding!r}") from None
    f, name, close = _open(path)
    try:
        offset = 0  # bytes handed to the decoder so far
        first = True
        cr = ""  # a CR held back in case the next chunk starts with LF
        mac: bool | None = None  # CR-only line ends, decided on the first text
        while True:
            try:
                raw = f.read(chunk_bytes)
            except OSError as e:
                raise CorpusError(f"{name}: cannot read ({e.strerror})") from None
            final = not raw
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(raw, final)
            except UnicodeDecodeError as e:
                at = offset - pending + e.start
                raise CorpusError(
                    f"{name}: not valid {encoding} at byte {at} ({e.reason}); "
                    "try --encoding latin-1 or --errors replace"
                ) from None
            offset += len(raw)
            if first and text:
                first = False
                text = text.removeprefix("\ufeff")
            text, cr = cr + text, ""
            if not final and text.endswith("\r"):
                text, cr = text[:-1], "\r"
            text = text.replace("\r\n", "\n")
            if mac is None and text:
                mac = "\r" in text and "\n" not in text
                if mac and notes is not None:
                    notes.append(f"{name}: line ends are CR only (classic Mac OS); read as LF")
            if text:
                yield text.replace("\r", "\n") if mac else text
            if final:
                return
    finally:
        if close:
            f.close()


def read_text(path: str | Path, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Read a whole text file (``-`` for standard input) under the shared text policy."""
    return "".join(iter_text(path, encoding, errors))


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """Training text and held-out validation tail (the last ``val_fraction`` of the characters)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    cut = int(len(text) * (1.0 - val_fraction))
    return text[:cut], text[cut:]


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D id stream into ``batch_size`` contiguous rows, (B, L); the remainder is dropped."""
    n = ids.numel() // batch_size
    if n < 2:
        raise ValueError(f"{ids.numel()} tokens cannot fill {batch_size} streams of 2 or more")
    return ids[: n * batch_size].view(batch_size, n)


def num_windows(length: int, seq_len: int) -> int:
    """Windows per epoch over streams of ``length`` columns (the last column is only a target)."""
    return -(-(length - 1) // seq_len)


def window(data: torch.Tensor, k: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Window ``k`` of ``data`` (B, L): inputs x and targets y = x shifted by one, both (B, T)."""
    i = k * seq_len
    t = min(seq_len, data.size(1) - 1 - i)
    return data[:, i : i + t], data[:, i + 1 : i + 1 + t]


def windows(
    data: torch.Tensor, seq_len: int, start: int = 0
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(k, x, y) for the windows of one epoch, from window ``start`` on."""
    for k in range(start, num_windows(data.size(1), seq_len)):
        x, y = window(data, k, seq_len)
        yield k, x, y


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


class Encoder:
    """Vectorised character -> id mapping through a code-point lookup table."""

    def __init__(self, stoi: dict[str, int], unk_id: int = 0) -> None:
        import numpy as np

        top = max((ord(c) for c in stoi), default=0)
        self.lut = np.full(top + 2, unk_id, dtype=np.int32)  # last slot: anything above top
        for ch, i in stoi.items():
            self.lut[ord(ch)] = i

    def __call__(self, text: str) -> np.ndarray[Any, np.dtype[np.int32]]:
        import numpy as np

        cps = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        return self.lut[np.minimum(cps, len(self.lut) - 1)]
