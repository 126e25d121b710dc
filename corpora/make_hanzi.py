#!/usr/bin/env python3
"""Write a small, self-made corpus of Chinese-like verse for charrnn (a non-Latin script).

The character lists below were chosen for this project; no poem was copied from anywhere. The
lines follow the shape of classical quatrains and regulated verse (five or seven characters, a
comma after odd lines, a full stop after even ones, even lines ending on one rhyme group), but
the sense is only loosely there: this is a corpus for a character model, not poetry.
The output is fully determined by ``--seed`` and ``--chars``.

Grammar (``|`` separates alternatives)::

    corpus ::= poem+                                until at least --chars characters
    poem   ::= title NL body NL
    title  ::= "《" n1 n1 "》" | "《" v1 n1 n1 "》" | "《" a1 n1 n1 "》"
    body   ::= couplet{2} | couplet{4}          all lines of a poem have 5 or all have 7
    couplet::= line COMMA line STOP NL            COMMA, STOP: full-width U+FF0C, U+3002
    line5  ::= a1 n1 v1 n1 R | n1 n1 a1 a1 R | a1 n1 n1 v1 R | n1 v1 a1 n1 R | n1 n1 v1 v1 R
    line7  ::= n1 n1 line5 | a a line5 | n1 place line5     a a: one adjective twice
    place  ::= one of PLACES (中 上 下 外 ...)
    R      ::= the line's last character: any n1 in a first line, the rhyme in a second

``n1``, ``a1`` and ``v1`` are single-character nouns, adjectives and verbs from the lists below;
a rhyme group is a set of characters that share a final in Mandarin.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import _generate  # the shared part, beside this script

NOUNS = (
    "山水月风花云雨雪江河湖海天地日星春秋夜晓烟雾松竹梅柳草木石泉舟桥楼台"
    "门窗灯酒琴书剑马鸟雁鹤燕蝉鱼客僧君家城村路径田野林谷峰岩沙浪潮波霜露"
)
ADJECTIVES = "青白红绿黄紫寒暖高长远深清明孤空新旧老小轻重静闲冷香淡浓苍碧幽残"
VERBS = "看听来去飞落开归照流吹留思望坐行入出过生满动鸣渡醉眠送问寻随起"
PLACES = "中上下外里前后边头"
COMMA = "\uff0c"  # full-width comma
STOP = "\u3002"  # ideographic full stop
RHYMES = (
    "光长霜乡香凉堂黄阳扬忙藏",  # -ang
    "山间闲还关斑寒难看安残弯",  # -an
    "来开回台哀催杯栽苔",  # -ai
    "中风空红东同鸿穷通蓬",  # -ong
    "明声情清生行晴平城轻青",  # -ing / -eng
    "秋流舟楼愁游留头收幽",  # -ou
)


def _line5(rng: random.Random, last: str) -> str:
    def n() -> str:
        return rng.choice(NOUNS)

    def a() -> str:
        return rng.choice(ADJECTIVES)

    def v() -> str:
        return rng.choice(VERBS)

    patterns = (
        lambda: a() + n() + v() + n() + last,
        lambda: n() + n() + a() + a() + last,
        lambda: a() + n() + n() + v() + last,
        lambda: n() + v() + a() + n() + last,
        lambda: n() + n() + v() + v() + last,
    )
    return rng.choice(patterns)()


def _line(rng: random.Random, length: int, last: str) -> str:
    five = _line5(rng, last)
    if length == 5:
        return five
    head = rng.choice(
        (
            lambda: rng.choice(NOUNS) + rng.choice(NOUNS),
            lambda: rng.choice(ADJECTIVES) * 2,
            lambda: rng.choice(NOUNS) + rng.choice(PLACES),
        )
    )()
    return head + five


def make_poem(rng: random.Random) -> str:
    length = rng.choice((5, 7))
    couplets = rng.choice((2, 4))
    group = rng.choice(RHYMES)
    ends = rng.sample(group, couplets)
    title = rng.choice(
        (
            lambda: rng.choice(NOUNS) + rng.choice(NOUNS),
            lambda: rng.choice(VERBS) + rng.choice(NOUNS) + rng.choice(NOUNS),
            lambda: rng.choice(ADJECTIVES) + rng.choice(NOUNS) + rng.choice(NOUNS),
        )
    )()
    lines = [f"《{title}》"]
    for end in ends:
        first = _line(rng, length, rng.choice(NOUNS))
        second = _line(rng, length, end)
        lines.append(f"{first}{COMMA}{second}{STOP}")
    return "\n".join(lines) + "\n\n"


def make_corpus(seed: int = 1, chars: int = 60_000) -> str:
    """Whole units until the text has at least ``chars`` characters."""
    return _generate.grow(make_poem, seed, chars)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and write the corpus."""
    return _generate.main(make_corpus, __doc__.splitlines()[0], 60_000, argv)


if __name__ == "__main__":
    raise SystemExit(main())
