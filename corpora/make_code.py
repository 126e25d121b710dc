#!/usr/bin/env python3
"""Write a small, self-made corpus of Python-like source code for charrnn.

Every name, comment and template below was written for this project; no code was copied from
anywhere. The output is syntactically valid Python 3 (each module parses with ``ast.parse``)
but it is nonsense that only looks like a program: a corpus for a character model that has to
learn indentation, brackets, keywords and naming. It is fully determined by ``--seed`` and
``--chars``.

Grammar (``|`` separates alternatives, ``[x]`` is optional, ``{a,b}`` repeats a to b times)::

    corpus   ::= module+                         until at least --chars characters
    module   ::= "# " comment NL imports NL NL (func | class){2,4}
    imports  ::= ("import " mod NL){1,2} ["from " mod " import " name NL]
    class    ::= "class " Camel ":" NL IND docstring (NL method){1,3} NL NL
    method   ::= "def " name "(self" (", " arg){0,2} ") -> " type ":" NL body(2)
    func     ::= "def " name "(" arg (", " arg){0,2} ") -> " type ":" NL body(1) NL NL
    body(d)  ::= [docstring(d)] stmt(d){2,5} "return " expr
    stmt(d)  ::= var " = " expr | var " += " number | "# " comment
               | "if " cond ":" NL stmt(d+1){1,2}
               | "for " var " in " iterable ":" NL stmt(d+1){1,2}
    expr     ::= var | number | call | var op var | "[" var " for " var " in " var "]" | string
    call     ::= name "(" [var (", " var){0,2}] ")" | var "." method_name "()"
    cond     ::= var cmp expr | "not " var | var " is None"

Names are joined from the hand-written word lists below (``load_item``, ``total_count``,
``PathCache``); ``var`` is an argument or a name assigned earlier in the same function.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import _generate  # the shared part, beside this script


def words(text: str) -> tuple[str, ...]:
    """Split a whitespace-separated word list."""
    return tuple(text.split())


VERBS = words("load save read write parse build make check find count merge split join scan fetch")
NOUNS = words(
    """
    item record path name line token value cache buffer table entry node block frame
    queue index batch chunk key field header row column offset size
    """
)
ADJS = words("total last next first raw clean old new max min local default")
MODULES = words("os sys json math re time random itertools functools collections pathlib")
TYPES = words("int str bool float list dict None")
METHODS = words("strip lower upper copy keys values items split pop clear")
COMMENTS = (
    "keep the order stable",
    "this can be empty",
    "the caller owns the buffer",
    "count from one, not zero",
    "skip blank lines",
    "fall back to the default",
    "cheap check first",
    "avoid a second pass",
    "see the note above",
    "values are never negative here",
)
DOCS = (
    "Return the {n} for the given {m}.",
    "Build a {n} from each {m}.",
    "Count how many {n} values there are.",
    "Check that the {n} is valid.",
    "Merge the {n} into the {m}.",
)
OPS = (" + ", " - ", " * ", " // ", " % ")
CMPS = (" > ", " < ", " == ", " != ", " >= ")


class Gen:
    """One function body at a time; remembers which names exist."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.vars: list[str] = []

    def pick(self, seq: Sequence[str]) -> str:
        return self.rng.choice(seq)

    def name(self) -> str:
        return f"{self.pick(VERBS)}_{self.pick(NOUNS)}"

    def new_var(self) -> str:
        r = self.rng.random()
        var = f"{self.pick(ADJS)}_{self.pick(NOUNS)}" if r < 0.6 else self.pick(NOUNS)
        if var not in self.vars:
            self.vars.append(var)
        return var

    def var(self) -> str:
        return self.pick(self.vars) if self.vars else self.new_var()

    def number(self) -> str:
        return self.pick(("0", "1", "2", "8", "16", "64", "100", "-1", "0.5"))

    def expr(self) -> str:
        r = self.rng.random()
        if r < 0.25:
            return self.var()
        if r < 0.4:
            return self.number()
        if r < 0.6:
            args = ", ".join(self.var() for _ in range(self.rng.randint(0, 2)))
            return f"{self.name()}({args})"
        if r < 0.7:
            return f"{self.var()}.{self.pick(METHODS)}()"
        if r < 0.85:
            return self.var() + self.pick(OPS) + self.var()
        if r < 0.93:
            x = self.pick("xyz")
            return f"[{x} for {x} in {self.var()}]"
        return repr(f"{self.pick(ADJS)} {self.pick(NOUNS)}")

    def cond(self) -> str:
        r = self.rng.random()
        if r < 0.6:
            return self.var() + self.pick(CMPS) + self.expr()
        if r < 0.8:
            return f"not {self.var()}"
        return f"{self.var()} is None"

    def stmt(self, depth: int) -> list[str]:
        ind = "    " * depth
        r = self.rng.random()
        if r < 0.45 or depth >= 3:
            value = self.expr()
            return [f"{ind}{self.new_var()} = {value}"]
        if r < 0.55:
            return [f"{ind}{self.var()} += {self.number()}"]
        if r < 0.65:
            return [f"{ind}# {self.pick(COMMENTS)}"]
        if r < 0.85:
            head = [f"{ind}if {self.cond()}:"]
        else:
            head = [f"{ind}for {self.pick(NOUNS)} in {self.var()}:"]
        body: list[str] = []
        for _ in range(self.rng.randint(1, 2)):
            body += self.stmt(depth + 1)
        if all(line.strip().startswith("#") for line in body):
            body.append(f"{ind}    pass")
        return head + body

    def body(self, depth: int) -> list[str]:
        ind = "    " * depth
        lines = []
        if self.rng.random() < 0.6:
            doc = self.pick(DOCS).format(n=self.pick(NOUNS), m=self.pick(NOUNS))
            lines.append(f'{ind}"""{doc}"""')
        for _ in range(self.rng.randint(2, 5)):
            lines += self.stmt(depth)
        lines.append(f"{ind}return {self.expr()}")
        return lines

    def signature(self, method: bool) -> str:
        self.vars = []
        args = [self.new_var() for _ in range(self.rng.randint(0 if method else 1, 2))]
        params = ", ".join((["self"] if method else []) + args)
        return f"def {self.name()}({params}) -> {self.pick(TYPES)}:"


def make_module(rng: random.Random) -> str:
    g = Gen(rng)
    lines = [f"# {g.pick(COMMENTS)}"]
    for mod in sorted(rng.sample(MODULES, rng.randint(1, 2))):
        lines.append(f"import {mod}")
    if rng.random() < 0.5:
        lines.append(f"from {g.pick(MODULES)} import {g.pick(NOUNS)}")
    for _ in range(rng.randint(2, 4)):
        lines += ["", ""]
        if rng.random() < 0.3:
            camel = g.pick(ADJS).title() + g.pick(NOUNS).title()
            lines.append(f"class {camel}:")
            lines.append(f'    """A {g.pick(NOUNS)} of {g.pick(NOUNS)}s."""')
            for _ in range(rng.randint(1, 3)):
                lines.append("")
                lines.append("    " + g.signature(method=True))
                lines += g.body(2)
        else:
            lines.append(g.signature(method=False))
            lines += g.body(1)
    return "\n".join(lines) + "\n\n\n"


def make_corpus(seed: int = 1, chars: int = 150_000) -> str:
    """Whole units until the text has at least ``chars`` characters."""
    return _generate.grow(make_module, seed, chars)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and write the corpus."""
    return _generate.main(make_corpus, __doc__.splitlines()[0], 150_000, argv)


if __name__ == "__main__":
    raise SystemExit(main())
