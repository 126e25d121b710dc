#!/usr/bin/env python3
"""Write a small, self-made corpus of rhymed English verse for charrnn.

Every word list, rhyme group and template below was written for this project.
The output is pseudo-random but fully determined by ``--seed`` (and ``--chars``):
the same arguments always give byte-identical text.

Grammar (``|`` separates alternatives, ``[x]`` is optional, ``R:n``, ``R:a`` and
``R:v`` stand for the line's rhyme word when it is a noun, adjective or verb)::

    corpus  ::= poem+                              until at least --chars characters
    poem    ::= title NL NL stanza (NL NL stanza){1,3} NL NL NL
    stanza  ::= line NL line NL line NL line       rhyme ABAB | AABB, fixed per poem
    line    ::= Cap(body) end                      25 <= len(line) <= 60
    end     ::= "," | ";" | "." | "!" | "?"        a stanza ends in ".", "!" or "?"
    body    ::= nbody | abody | vbody              chosen by the rhyme word's tag
    nbody   ::= np v3s prep enp | pron vpast enp | conj np vpast enp
              | prep np prep enp | conj np "of" enp | adv "," np v3s prep enp
              | "O" adj noun "of" enp "!" | "Who" vpast enp "?" | "Where is" enp "?"
    abody   ::= np link [deg] R:a | conj "all the" noun linked [deg] R:a
              | (prep np | conj) pron be [deg] R:a | "Why is" np "so" R:a "?"
    vbody   ::= conj pron [adv] R:v | prep np pron R:v | np v3to "to" R:v
              | lead "let" np R:v | conj pron modal [adv] R:v | "When will" np R:v "?"
    np      ::= det [adj] noun                     "a" becomes "an" before a vowel
    enp     ::= edet [adj] R:n
    title   ::= UPPER( "the" noun "of the" noun | "the" adj noun | noun "and" noun
              | "a song of the" noun | "to" det adj noun | "when the" noun v3s
              | "on the" adj noun | "the" noun ("in" | "by" | "under") "the" noun )

Lower-case names (noun, adj, v3s, vpast, v3to, prep, adv, conj, lead, pron, be,
modal, link, linked, deg, det, edet) are hand-written word lists below.
Rhyme groups are sets of words that end-rhyme; a stanza draws its A and B words
from two different groups, without repeating a word inside the stanza.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import _generate  # the shared part, beside this script

# ---------------------------------------------------------------------------
# Vocabulary (written by hand for this project)
# ---------------------------------------------------------------------------


def words(text: str) -> tuple[str, ...]:
    """Split a whitespace-separated word list."""
    return tuple(text.split())


NOUNS: tuple[str, ...] = words(
    """
    lantern river harbour meadow orchard candle window mountain valley garden
    willow sparrow heron raven shepherd sailor miller weaver widow stranger
    traveller lover hunter ferryman chapel cottage kettle ladder compass anchor
    mirror letter ribbon thimble forest hollow hillside marsh ember cinder
    feather acorn blossom thistle bramble haystack scarecrow harvest winter summer
    autumn evening morning shadow silence whisper storm cloud frost thunder
    wave field road path wall roof hearth chimney wheel boat loom spindle needle
    cup bowl wagon apple lily oak elm birch fern beehive pebble brook lake
    pond island cliff cave owl wren lark fox hare wolf child mother father
    sister brother captain soldier beggar piper fiddler singer poet dreamer
    sleeper keeper lighthouse meadowlark kingfisher otter badger beacon cellar
    attic lamp quill parchment almanac
    """
)

ADJECTIVES: tuple[str, ...] = words(
    """
    silver golden quiet ancient hollow distant bitter gentle restless patient
    broken faithful lonely crimson pale dark little narrow tender weary early
    northern southern eastern western secret silent shining fading sleeping
    wandering burning frozen forgotten hidden careless humble heavy open empty
    velvet amber ashen dusky misty windy sudden steady honest idle ragged
    drowsy solemn sombre merry lantern-lit starless sunken unspoken
    """
)

VERBS_3S: tuple[str, ...] = words(
    """
    wanders sleeps waits turns burns sings falls rises lingers trembles
    glimmers whispers listens dreams drifts returns wakes shivers murmurs
    answers calls fades shines weeps climbs rests breathes hums kneels
    """
)

VERBS_PAST: tuple[str, ...] = words(
    """
    carried kept found lost mended followed remembered gathered painted buried
    counted welcomed forgot sheltered answered wakened lit held blessed crossed
    named sold stole left watched guarded praised built folded broke
    """
)

VERBS_TO: tuple[str, ...] = words("learns begins longs waits tries hopes stoops comes")

PREPOSITIONS: tuple[str, ...] = words(
    """
    through beneath beyond above across along beside behind under over upon
    within toward against among before after around past near
    """
)

ADVERBS: tuple[str, ...] = words(
    "softly slowly gently quietly always never still lightly sadly bravely"
)

LEAD_ADVERBS: tuple[str, ...] = tuple(a for a in ADVERBS if a not in ("always", "never"))
CONJUNCTIONS: tuple[str, ...] = words("and but where when until though while as so yet for if")
LEADS: tuple[str, ...] = ("and", "so", "now", "then", "but", "O")
PRONOUNS_PAST: tuple[str, ...] = ("I", "we", "you", "they", "she", "he")
PRONOUNS_BASE: tuple[str, ...] = ("I", "we", "you", "they")
PRONOUN_BE: tuple[tuple[str, str], ...] = (
    ("I", "am"),
    ("I", "was"),
    ("we", "are"),
    ("we", "were"),
    ("you", "are"),
    ("you", "were"),
    ("they", "are"),
    ("they", "were"),
    ("she", "is"),
    ("she", "was"),
    ("he", "is"),
    ("he", "was"),
)
MODALS: tuple[str, ...] = ("shall", "will", "must", "may", "cannot", "could", "would", "might")
LINKS: tuple[str, ...] = ("is", "was", "grows", "seems", "lies", "stands", "turns", "falls")
LINKS_PAST: tuple[str, ...] = ("was", "grew", "seemed", "lay", "stood", "turned")
DEGREES: tuple[str, ...] = ("", "", "", "so", "too", "all")
DETERMINERS: tuple[str, ...] = ("the", "the", "the", "a", "a", "my", "your", "our", "their", "that")
END_DETERMINERS: tuple[str, ...] = (
    "the",
    "the",
    "the",
    "my",
    "your",
    "our",
    "their",
    "this",
    "that",
)
DIRECTIONS: tuple[str, ...] = ("north", "south", "east", "west")

# Each group: "tag: words; tag: words" with tag n (noun), a (adjective), v (base verb).
RHYME_SPECS: tuple[str, ...] = (
    "n: night light flight height sight delight; a: bright white",
    "n: sea tree key bee plea; a: free",
    "n: rain lane plain chain grain; a: vain; v: remain",
    "n: stone bone throne; a: alone known grown; v: moan",
    "n: day way bay clay; a: grey; v: stay pray stray",
    "n: fire spire choir wire desire lyre",
    "n: sky cry sigh; a: dry high; v: die fly lie",
    "n: moon tune noon spoon dune; v: swoon",
    "n: hill mill will sill chill rill; a: still",
    "n: door shore floor oar lore roar; a: poor",
    "n: gold fold; a: cold old bold; v: hold",
    "n: song throng; a: long strong wrong; v: belong",
    "n: heart art cart chart; v: part start depart",
    "n: rose prose repose; v: doze close",
    "n: sand hand land band strand; a: grand; v: stand",
    "n: tide bride side guide pride; a: wide; v: hide ride",
    "n: bell well shell spell dell swell; v: dwell",
    "n: sleep sheep leap; a: deep steep; v: keep weep",
    "n: dream stream beam seam gleam theme",
    "n: star scar jar bar spar; a: far",
    "n: field shield; a: sealed healed concealed; v: yield",
    "n: flame name shame frame game; a: tame lame",
    "n: bread thread head bed shed; a: red dead; v: spread",
    "n: flower hour tower power shower bower",
    "n: snow crow bow glow; a: slow low; v: grow go",
    "n: queen screen scene; a: green keen lean",
    "n: ground sound mound hound; a: round bound drowned",
    "n: ice price spice vice slice",
    "n: dusk husk musk tusk",
    "n: gate slate fate weight; a: late great straight; v: wait",
    "n: year deer pier spear; a: near clear; v: appear",
    "n: grace face place lace space trace; v: embrace",
    "n: wing spring ring string king; v: sing",
)

Word = tuple[str, str]  # (tag, word)


def parse_rhyme_groups(specs: Sequence[str]) -> list[list[Word]]:
    """Turn the compact rhyme specs into lists of (tag, word) pairs."""
    groups: list[list[Word]] = []
    for spec in specs:
        group: list[Word] = []
        for part in spec.split(";"):
            tag, names = part.split(":")
            group.extend((tag.strip(), name) for name in names.split())
        groups.append(group)
    return groups


RHYME_GROUPS: list[list[Word]] = parse_rhyme_groups(RHYME_SPECS)
RHYME_NOUNS: tuple[str, ...] = tuple(w for g in RHYME_GROUPS for t, w in g if t == "n")

# ---------------------------------------------------------------------------
# Phrase builders
# ---------------------------------------------------------------------------


def maybe(rng: random.Random, p: float, text: str) -> str:
    """Return ``text`` with probability ``p``, else the empty string."""
    return text if rng.random() < p else ""


def np(rng: random.Random) -> str:
    """Build a plain noun phrase: det [adj] noun."""
    adj = maybe(rng, 0.6, rng.choice(ADJECTIVES))
    return join(rng.choice(DETERMINERS), adj, rng.choice(NOUNS))


def enp(rng: random.Random, rhyme: str) -> str:
    """Build a noun phrase that ends in the rhyme noun: edet [adj] R:n."""
    adj = maybe(rng, 0.55, rng.choice(ADJECTIVES))
    return join(rng.choice(END_DETERMINERS), adj, rhyme)


def join(*parts: str) -> str:
    """Join non-empty parts with single spaces."""
    return " ".join(p for p in parts if p)


# A body builder returns (text, forced end mark or "").
Body = tuple[str, str]
Builder = Callable[[random.Random, str], Body]


def noun_bodies() -> list[tuple[int, Builder]]:
    """Weighted templates for lines that end in a rhyme noun."""
    c = random.Random.choice
    return [
        (6, lambda r, w: (join(np(r), c(r, VERBS_3S), c(r, PREPOSITIONS), enp(r, w)), "")),
        (4, lambda r, w: (join(c(r, PRONOUNS_PAST), c(r, VERBS_PAST), enp(r, w)), "")),
        (4, lambda r, w: (join(c(r, CONJUNCTIONS), np(r), c(r, VERBS_PAST), enp(r, w)), "")),
        (3, lambda r, w: (join(c(r, PREPOSITIONS), np(r), c(r, PREPOSITIONS), enp(r, w)), "")),
        (3, lambda r, w: (join(c(r, CONJUNCTIONS), np(r), "of", enp(r, w)), "")),
        (
            2,
            lambda r, w: (
                join(
                    c(r, LEAD_ADVERBS) + ",", np(r), c(r, VERBS_3S), c(r, PREPOSITIONS), enp(r, w)
                ),
                "",
            ),
        ),
        (1, lambda r, w: (join("O", c(r, ADJECTIVES), c(r, NOUNS), "of", enp(r, w)), "!")),
        (1, lambda r, w: (join("who", c(r, VERBS_PAST), enp(r, w)), "?")),
        (1, lambda r, w: (join("where is", enp(r, w)), "?")),
    ]


def adjective_bodies() -> list[tuple[int, Builder]]:
    """Weighted templates for lines that end in a rhyme adjective."""
    c = random.Random.choice

    def pron_be(r: random.Random, w: str) -> Body:
        lead = maybe(r, 0.7, join(c(r, PREPOSITIONS), np(r)))
        pron, be = c(r, PRONOUN_BE)
        return join(lead or c(r, CONJUNCTIONS), pron, be, c(r, DEGREES), w), ""

    return [
        (5, lambda r, w: (join(np(r), c(r, LINKS), c(r, DEGREES), w), "")),
        (
            3,
            lambda r, w: (
                join(
                    c(r, CONJUNCTIONS), "all the", c(r, NOUNS), c(r, LINKS_PAST), c(r, DEGREES), w
                ),
                "",
            ),
        ),
        (5, pron_be),
        (1, lambda r, w: (join("why is", np(r), "so", w), "?")),
    ]


def verb_bodies() -> list[tuple[int, Builder]]:
    """Weighted templates for lines that end in a rhyme verb (base form)."""
    c = random.Random.choice
    return [
        (
            3,
            lambda r, w: (
                join(c(r, CONJUNCTIONS), c(r, PRONOUNS_BASE), maybe(r, 0.6, c(r, ADVERBS)), w),
                "",
            ),
        ),
        (4, lambda r, w: (join(c(r, PREPOSITIONS), np(r), c(r, PRONOUNS_BASE), w), "")),
        (4, lambda r, w: (join(np(r), c(r, VERBS_TO), "to", w), "")),
        (3, lambda r, w: (join(c(r, LEADS), "let", np(r), w), "")),
        (
            3,
            lambda r, w: (
                join(
                    c(r, CONJUNCTIONS),
                    c(r, PRONOUNS_BASE),
                    c(r, MODALS),
                    maybe(r, 0.4, c(r, ADVERBS)),
                    w,
                ),
                "",
            ),
        ),
        (1, lambda r, w: (join("when will", np(r), w), "?")),
    ]


BODIES: dict[str, list[tuple[int, Builder]]] = {
    "n": noun_bodies(),
    "a": adjective_bodies(),
    "v": verb_bodies(),
}

MIN_LINE = 25
MAX_LINE = 60


def fix_articles(text: str) -> str:
    """Use "an" before a word that starts with a vowel sound."""
    words = text.split(" ")
    for i in range(len(words) - 1):
        nxt = words[i + 1]
        if words[i] == "a" and (nxt[:1] in "aeiou" or nxt.startswith(("honest", "hour"))):
            words[i] = "an"
    return " ".join(words)


def capitalise(text: str) -> str:
    """Upper-case the first letter only."""
    return text[:1].upper() + text[1:]


def make_line(rng: random.Random, word: Word, end: str) -> str:
    """Build one verse line ending in ``word``; ``end`` is the default end mark."""
    tag, rhyme = word
    templates = BODIES[tag]
    weights = [w for w, _ in templates]
    for _ in range(500):
        build = rng.choices([b for _, b in templates], weights=weights)[0]
        body, forced = build(rng, rhyme)
        line = capitalise(fix_articles(body)) + (forced or end)
        if MIN_LINE <= len(line) <= MAX_LINE:
            return line
    raise RuntimeError(f"could not build a line for {rhyme!r}")


def end_marks(rng: random.Random, scheme: str) -> list[str]:
    """End punctuation for the four lines of a stanza."""
    middle = [",", ";", "."]
    mid_weights = [5, 3, 2] if scheme == "ABAB" else [2, 3, 5]
    return [
        rng.choices([",", ";"], weights=[9, 1])[0],
        rng.choices(middle, weights=mid_weights)[0],
        rng.choices([",", ";"], weights=[9, 1])[0],
        rng.choices([".", "!"], weights=[17, 3])[0],
    ]


def make_stanza(rng: random.Random, groups: tuple[int, int], scheme: str) -> list[str]:
    """Four rhymed lines using rhyme groups ``groups`` in ``scheme``."""
    a_words = rng.sample(RHYME_GROUPS[groups[0]], 2)
    b_words = rng.sample(RHYME_GROUPS[groups[1]], 2)
    if scheme == "ABAB":
        words = [a_words[0], b_words[0], a_words[1], b_words[1]]
    else:
        words = [a_words[0], a_words[1], b_words[0], b_words[1]]
    marks = end_marks(rng, scheme)
    return [make_line(rng, w, m) for w, m in zip(words, marks, strict=True)]


def make_title(rng: random.Random) -> str:
    """Build an upper-case title line."""
    c = rng.choice
    any_noun = NOUNS + RHYME_NOUNS
    options: list[Callable[[], str]] = [
        lambda: join("the", c(any_noun), "of the", c(any_noun + DIRECTIONS)),
        lambda: join("the", c(ADJECTIVES), c(any_noun)),
        lambda: join(c(any_noun), "and", c(any_noun)),
        lambda: join("a song of the", c(any_noun)),
        lambda: join("to", c(("a", "my", "the")), c(ADJECTIVES), c(NOUNS)),
        lambda: join("when the", c(NOUNS), c(VERBS_3S)),
        lambda: join("on the", c(ADJECTIVES), c(any_noun)),
        lambda: join("the", c(NOUNS), c(("in", "by", "under")), "the", c(RHYME_NOUNS)),
    ]
    weights = [5, 4, 3, 2, 2, 2, 1, 1]
    return fix_articles(rng.choices(options, weights=weights)[0]()).upper()


def make_poem(rng: random.Random) -> str:
    """Build a title, a blank line, 2-4 stanzas split by blank lines, then two blank lines."""
    n_stanzas = rng.choice((2, 3, 3, 4))
    scheme = rng.choice(("ABAB", "AABB"))
    group_ids = rng.sample(range(len(RHYME_GROUPS)), 2 * n_stanzas)
    stanzas = [
        "\n".join(make_stanza(rng, (group_ids[2 * i], group_ids[2 * i + 1]), scheme))
        for i in range(n_stanzas)
    ]
    return make_title(rng) + "\n\n" + "\n\n".join(stanzas) + "\n\n\n"


def make_corpus(seed: int = 1, chars: int = 300_000) -> str:
    """Whole units until the text has at least ``chars`` characters."""
    return _generate.grow(make_poem, seed, chars)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and write the corpus."""
    return _generate.main(make_corpus, __doc__.splitlines()[0], 300_000, argv)


if __name__ == "__main__":
    raise SystemExit(main())
