"""The batched generation loop: a stream's floating-point results and text do not depend on the
streams beside it, and equal ``charrnn sample``'s text for its seed."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

from charrnn.sample.generate import generate
from charrnn.sample.numpy_engine import FastRNN
from charrnn.sample.policy import SampleConfig
from charrnn.serve.batcher import BLOCK, Batcher, Busy, Stream, StreamSpec, reset_row
from charrnn.store.checkpoint import load_arrays


async def _run(batcher: Batcher, specs: list[StreamSpec]) -> list[tuple[str, list, str | None]]:
    loop = asyncio.get_running_loop()
    streams = [Stream(spec, loop, asyncio.Event()) for spec in specs]
    for s in streams:
        batcher.submit(s)
    out = []
    for s in streams:
        text, infos, finish = [], [], None
        while finish is None:
            await s.wake.wait()
            s.wake.clear()
            t, i, finish = s.take()
            text.append(t)
            infos += i
        out.append(("".join(text), infos, finish))
    return out


def run_streams(run: Path, specs: list[StreamSpec]) -> list[tuple[str, list, str | None]]:
    loaded = load_arrays(run)
    batcher = Batcher(loaded.model, loaded.vocab)
    try:
        return asyncio.run(_run(batcher, specs))
    finally:
        batcher.close()


def spec(seed: int, prompt: str = "The ", length: int = 80, **kw: object) -> StreamSpec:
    cfg = SampleConfig(length=length, temperature=0.9, seed=seed)
    return StreamSpec(prompt, cfg, logprobs=2, **kw)  # type: ignore[arg-type]


def same_stream(a: tuple[str, list, str | None], b: tuple[str, list, str | None]) -> bool:
    """The same text, end and alternatives, and log-probabilities equal to float32 rounding: a
    BLAS may round a row of a matrix product differently by its place in the block (OpenBLAS
    on an AMD EPYC: rows 6 to 15 of 16 differ from row 0 in the last bits)."""
    (text_a, infos_a, end_a), (text_b, infos_b, end_b) = a, b
    if (text_a, end_a, len(infos_a)) != (text_b, end_b, len(infos_b)):
        return False
    for (tok_a, lp_a, top_a), (tok_b, lp_b, top_b) in zip(infos_a, infos_b, strict=True):
        if tok_a != tok_b or top_a.keys() != top_b.keys():
            return False
        pairs = [(lp_a, lp_b), *((top_a[k], top_b[k]) for k in top_a)]
        if not all(math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-6) for x, y in pairs):
            return False
    return True


def test_a_stream_is_the_same_alone_and_among_many(trained_run: Path) -> None:
    """20 concurrent streams (two blocks, prompts of different lengths so that streams read
    their prompts while others generate): each stream's text, alternatives and
    log-probabilities (floats from its logits, to float32 rounding) are those it gives alone."""
    specs = [spec(i, "The " * (1 + i % 3), 60 + 7 * i) for i in range(20)]
    together = run_streams(trained_run, specs)
    for i in (0, 9, 17, 19):
        alone = run_streams(trained_run, [specs[i]])[0]
        assert same_stream(together[i], alone), i
    assert not same_stream(together[0], together[1])  # the check can tell streams apart
    nudged = [(t, lp + 1e-3, top) for t, lp, top in together[0][1]]
    assert not same_stream(together[0], (together[0][0], nudged, together[0][2]))


def test_the_text_is_charrnn_samples(trained_run: Path) -> None:
    loaded = load_arrays(trained_run)
    specs = [spec(i, "And ", 150) for i in range(10)]
    got = run_streams(trained_run, specs)
    for s, (text, infos, finish) in zip(specs, got, strict=True):
        want = "".join(generate(loaded.model, loaded.vocab, s.prompt, s.config))
        assert s.prompt + text == want
        assert finish == "length" and len(infos) == 150


def test_stops_greedy_and_no_prompt(trained_run: Path) -> None:
    loaded = load_arrays(trained_run)
    cfg = SampleConfig(length=200, temperature=0.8, seed=5)
    (text, _, finish), (empty, _, _) = run_streams(
        trained_run,
        [StreamSpec("a", cfg, stops=("\n",)), StreamSpec("", SampleConfig(length=0))],
    )
    want = "".join(generate(loaded.model, loaded.vocab, "a", cfg, stop="\n"))
    assert "a" + text == want and empty == ""
    assert finish == ("stop" if len(text) < 199 else finish)


def test_rows_reset_to_the_zero_state(trained_run: Path) -> None:
    loaded = load_arrays(trained_run)
    rnn, fresh = FastRNN(loaded.model, BLOCK), FastRNN(loaded.model, BLOCK)
    for _ in range(5):
        rnn.step(np.arange(BLOCK) % 7 + 1)
    for r in range(BLOCK):
        reset_row(rnn, r)
    for a, b in zip(rnn.out, fresh.out, strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(rnn.S, fresh.S)


def test_busy_and_cancel(trained_run: Path) -> None:
    loaded = load_arrays(trained_run)

    async def main() -> None:
        b = Batcher(loaded.model, loaded.vocab, max_streams=1, max_queue=1)
        loop = asyncio.get_running_loop()
        long = StreamSpec("a", SampleConfig(length=100_000))
        s1, s2, s3 = (Stream(long, loop, asyncio.Event()) for _ in range(3))
        b.submit(s1)
        b.submit(s2)
        with pytest.raises(Busy):
            b.submit(s3)
        s1.cancel()
        s2.cancel()
        for _ in range(200):
            if not b.active and not b.queued():
                break
            await asyncio.sleep(0.01)
        assert b.active == 0 and b.queued() == 0
        b.close()

    asyncio.run(main())


def test_the_blocks_share_one_copy_of_the_weights(trained_run: Path) -> None:
    """40 streams take three blocks of 16 rows; every block steps over the first block's weight
    arrays (built when the batcher is), so more streams cost their state, not another model."""
    loaded = load_arrays(trained_run)
    b = Batcher(loaded.model, loaded.vocab)
    assert len(b.blocks) == 1  # built with the batcher: part of a loaded server's memory
    try:
        asyncio.run(_run(b, [spec(i, length=3) for i in range(40)]))
    finally:
        b.close()
    assert len(b.blocks) == 3
    first = b.blocks[0]
    for block in b.blocks[1:]:
        assert block.table is first.table
        assert all(
            m is n
            for ms, ns in zip(block.matrices, first.matrices, strict=True)
            for m, n in zip(ms, ns, strict=True)
        )
