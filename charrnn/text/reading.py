"""Text in: the text policy every file charrnn reads goes through, and character ids.

Every text file charrnn reads (a corpus, a prime, a file to score) is read by :func:`iter_text`;
a run's corpus as a whole (sources, passes, token cache) is :mod:`charrnn.run.corpus`.

Text policy, shared by train, sample and eval-perplexity: files are decoded as UTF-8 (or
``encoding``), a leading byte-order mark is dropped, and Windows line ends (CR LF) become LF.
A file with CR line ends and no LF (classic Mac OS) is read with CR as LF; elsewhere a lone CR
is kept as it is.
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import CorpusError

if TYPE_CHECKING:  # only passed through: the command line reads text without torch or NumPy
    import numpy as np

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
