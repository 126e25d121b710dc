"""Stop strings pushed piece by piece: one stop string gives ``cut_at_stop``'s text."""

from __future__ import annotations

import random

from charrnn.sample.policy import cut_at_stop
from charrnn.serve.stops import StopCutter


def cut(text: str, stops: tuple[str, ...]) -> tuple[str, list[int], bool]:
    c: StopCutter[int] = StopCutter(stops)
    out, infos, stopped = "", [], False
    for i, ch in enumerate(text):
        t, inf, stopped = c.feed(ch, i)
        out, infos = out + t, infos + inf
        if stopped:
            break
    if not stopped:
        t, inf, _ = c.flush()
        out, infos = out + t, infos + inf
    return out, infos, stopped


def test_one_stop_string_is_cut_at_stop() -> None:
    rng = random.Random(0)
    for _ in range(500):
        text = "".join(rng.choice("ab\n") for _ in range(rng.randrange(12)))
        stop = "".join(rng.choice("ab\n") for _ in range(rng.randrange(1, 3)))
        out, infos, _ = cut(text, (stop,))
        assert out == cut_at_stop(text, stop)
        assert len(infos) == len(out)


def test_several_stop_strings_and_none() -> None:
    assert cut("hello world. bye", ("!", ". "))[0] == "hello world"
    assert cut("\n\nabc\nd", ("\n", "c"))[0] == "ab"
    assert cut("abc", ()) == ("abc", [0, 1, 2], False)
    assert cut("xyz END more", ("END",))[2] is True
