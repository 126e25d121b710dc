"""A run's corpus: the train/validation cut, the vocabulary, the token cache, and reopening it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from charrnn.errors import CorpusError
from charrnn.run.corpus import (
    TOKENS_TRAIN,
    TOKENS_VAL,
    read_sources,
    reopen_corpus,
    token_dtype,
)
from charrnn.run.request import CorpusSpec

TEXT = "The wolf came down.\nA lamp, a door: ça va.\n" * 50


def _corpus(tmp_path: Path, text: str = TEXT, **spec: object):  # type: ignore[no-untyped-def]
    src = tmp_path / "c.txt"
    src.write_text(text, encoding="utf-8")
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    return src, run, read_sources(CorpusSpec(sources=(str(src),), **spec), run)  # type: ignore[arg-type]


def test_the_cut_and_the_token_cache_hold_the_text(tmp_path: Path) -> None:
    _, run, corpus = _corpus(tmp_path, val_fraction=0.1)
    cut = int(len(TEXT) * 0.9)
    vocab = corpus.vocab
    assert vocab.decode(corpus.train_ids.tolist()) == TEXT[:cut]
    assert corpus.val_ids is not None and vocab.decode(corpus.val_ids.tolist()) == TEXT[cut:]
    assert corpus.train_text_chars == cut and corpus.val_text_chars == len(TEXT) - cut
    assert corpus.train_chars_per_token == 1.0
    size = np.dtype(corpus.info["token_dtype"]).itemsize
    assert (run / TOKENS_TRAIN).stat().st_size == cut * size
    assert (run / TOKENS_VAL).stat().st_size == (len(TEXT) - cut) * size


def test_a_validation_file_and_its_unknown_characters(tmp_path: Path) -> None:
    val = tmp_path / "v.txt"
    val.write_text("The wolf 狼 came.\n", encoding="utf-8")
    _, _, corpus = _corpus(tmp_path, val=str(val))
    assert corpus.vocab.decode(corpus.train_ids.tolist()) == TEXT  # all of it trains
    assert corpus.info["val_unknown"] == 1
    assert any("not in the training vocabulary" in n and "狼" in n for n in corpus.notices)


def test_too_little_text_is_refused_with_the_file_named(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"c\.txt: the validation split"):
        _corpus(tmp_path, text="abcdefghij", val_fraction=0.1)
    with pytest.raises(CorpusError, match=r"c\.txt: only 1 training character;"):
        _corpus(tmp_path, text="a", val_fraction=0.0)


def test_reopening_uses_the_cache_or_checks_the_text_again(tmp_path: Path) -> None:
    src, run, corpus = _corpus(tmp_path)
    ids = corpus.train_ids.tolist()
    again = reopen_corpus(run, corpus.vocab, corpus.info)
    assert again.train_ids.tolist() == ids
    # touched but the same text: encoded again, accepted
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = reopen_corpus(run, corpus.vocab, corpus.info)
    assert again.train_ids.tolist() == ids
    # another text: refused
    src.write_text(TEXT.replace("wolf", "bear"), encoding="utf-8")
    with pytest.raises(CorpusError, match="the corpus changed since this run started"):
        reopen_corpus(run, corpus.vocab, corpus.info)


@pytest.mark.parametrize(
    ("size", "dtype"),
    [(2, "uint8"), (256, "uint8"), (257, "int16"), (32767, "int16"), (32768, "int32")],
)
def test_token_files_use_the_smallest_type(size: int, dtype: str) -> None:
    assert token_dtype(size).name == dtype


def test_a_file_name_that_is_not_utf8_is_stored_so_that_it_finds_the_file_again(
    tmp_path: Path,
) -> None:
    from charrnn.store.atomic import json_text

    src = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.txt"))  # Latin-1 bytes
    src.write_text(TEXT, encoding="utf-8")
    run = tmp_path / "run"
    run.mkdir()
    corpus = read_sources(CorpusSpec(sources=(str(src),), val=str(src)), run)
    # What config.json will hold: written as UTF-8, read back as the same names.
    import json

    data = json.loads(json_text(corpus.info).encode("utf-8").decode("utf-8"))
    assert os.fsencode(data["sources"][0]) == os.fsencode(str(src.resolve()))
    assert os.fsencode(data["val"]) == os.fsencode(str(src.resolve()))
    ids = corpus.train_ids.tolist()
    assert reopen_corpus(run, corpus.vocab, data).train_ids.tolist() == ids  # the token cache
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert reopen_corpus(run, corpus.vocab, data).train_ids.tolist() == ids  # read again


def test_a_moved_corpus_resumes_from_the_token_cache(tmp_path: Path) -> None:
    src, run, corpus = _corpus(tmp_path)
    src.rename(tmp_path / "moved.txt")
    again = reopen_corpus(run, corpus.vocab, corpus.info)
    assert again.train_ids.tolist() == corpus.train_ids.tolist()
    assert any(
        "c.txt is gone (moved?): training on the run's token cache" in n for n in again.notices
    )
    (run / TOKENS_TRAIN).unlink()  # and the cache too: nothing left to train on
    with pytest.raises(CorpusError, match="the run's corpus file is gone, and its token cache"):
        reopen_corpus(run, corpus.vocab, corpus.info)
