"""charrnn's defaults against the plain PyTorch loop, corpus by corpus, in one alternating run.

    python bench/suite.py                        # every corpus at 60 s, tinyshakespeare also 137 s
    python bench/suite.py --long                 # and tinyshakespeare at 10 minutes
    python bench/suite.py --busy                 # one core kept busy by another process throughout
    python bench/suite.py --only fortunes --extra "--precision bf16"   # a variant, one corpus
    python bench/suite.py --quick --only tinyshakespeare --no-append   # smoke test (5 s rows)

Each row trains both systems on the same train file for the same wall-clock budget and scores
them on the same validation file, in nats/char (mean cross-entropy over every validation
character, state carried through the whole text; see ../shared/BENCHMARKS.md):

* charrnn with its defaults, in a child process: ``python -m charrnn train TRAIN --val VAL
  --max-time BUDGETs --out RUN`` plus ``--extra`` (its latest checkpoint's config.json gives
  the model, threads and precision it chose: the table's last column); then its best
  checkpoint scored by
  ``python -m charrnn eval-perplexity VAL -c RUN --exact --json``;
* the yardstick, ../shared/bench/plain_loop.py, run unchanged from where it is: ``python
  plain_loop.py gru 2 256 64 64 0.005 BUDGET TRAIN VAL``; its last line gives ``val_nats=``.

The two alternate (charrnn first on even rows, the plain loop first on odd ones) so that a busy
spell on a shared machine falls on both. Note that charrnn's ``--max-time`` includes its final
evaluation, while the plain loop evaluates after its budget: the wall columns show both.
Corpora: ``../shared/corpora`` (``--corpora DIR``): tinyshakespeare.{train,val}.txt and
suite/{fortunes,zh-prose,linux-c}.{train,val}.txt. Goals are differences charrnn - plain:
-0.02 at 60 s, -0.03 at 137 s, -0.05 at 10 minutes. One markdown table goes to stdout and, as a
dated section, to bench/RESULTS.md (not with ``--quick`` or ``--no-append``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
CORPORA = (
    *("tinyshakespeare", "fortunes", "zh-prose", "linux-c"),
    *("es-fortunes", "pl-fortunes", "ru-fortunes"),
)
# Goals (charrnn - plain, nats/char, at most) by budget s, and per corpus where they differ.
GOALS = {60.0: -0.03, 137.0: -0.04, 600.0: -0.06}
CORPUS_GOALS = {("ru-fortunes", 600.0): -0.10}
DEFAULT_BUDGETS = "60,tinyshakespeare:137,pl-fortunes:137"
LONG_BUDGET = "tinyshakespeare:600,ru-fortunes:600"
DEFAULT_PAIRS = 3
LOAD_TOLERANCE = 0.10  # a run whose load check moved more than this is flagged and repeated
RETRIES = 2  # repeats of a flagged run before it is kept, flagged
SETTLE = 2.0  # seconds between a run's end and the load check after it
QUICK_BUDGET = 5.0
PLAIN_ARGS = ("gru", "2", "256", "64", "64", "0.005")  # the tuned yardstick setting
GET_SHAKESPEARE = (
    "get tinyshakespeare from karpathy/char-rnn, data/tinyshakespeare/input.txt, and split it "
    "on characters: train = text[:int(len(text)*0.9)], val = the rest"
)


# ------------------------------------------------------------------------------ pure parts


@dataclass(frozen=True)
class Run:
    """One training run of one system and what the load check saw around it."""

    nats: float  # validation nats/char
    steps: int
    wall: float  # seconds of the training process (charrnn: startup + train + eval)
    load: float = 1.0  # the load check's time after the run over before it
    setup: str = ""  # charrnn's model, threads and precision, from config.json

    @property
    def flagged(self) -> bool:
        """Whether the machine's speed moved during the run (another job, throttling)."""
        return abs(self.load - 1.0) > LOAD_TOLERANCE


@dataclass(frozen=True)
class Pair:
    """charrnn and the plain loop, one after the other on the same corpus and budget."""

    charrnn: Run
    plain: Run
    first: str  # "charrnn" or "plain"

    @property
    def diff(self) -> float:
        """charrnn - plain, nats/char (negative: charrnn is better)."""
        return self.charrnn.nats - self.plain.nats

    @property
    def flagged(self) -> bool:
        return self.charrnn.flagged or self.plain.flagged


@dataclass(frozen=True)
class Row:
    """One corpus at one budget: N pairs, summarised by their median difference."""

    corpus: str
    budget: float
    pairs: tuple[Pair, ...]

    @property
    def diffs(self) -> list[float]:
        return [p.diff for p in self.pairs]

    @property
    def diff(self) -> float:
        """The median difference (nan when a pair has none)."""
        d = self.diffs
        return statistics.median(d) if d and all(map(math.isfinite, d)) else math.nan

    def median(self, who: str) -> float:
        values = [getattr(p, who).nats for p in self.pairs]
        return statistics.median(values) if all(map(math.isfinite, values)) else math.nan

    @property
    def goal(self) -> float | None:
        return goal_for(self.budget, self.corpus)

    @property
    def met(self) -> str:
        """``yes`` when the median meets the goal and no single pair is worse than plain."""
        goal = self.goal
        if goal is None:
            return "-"
        ok = math.isfinite(self.diff) and self.diff <= goal and max(self.diffs) <= 0.0
        return "yes" if ok else "no"


def goal_for(budget: float, corpus: str = "") -> float | None:
    """The goal of the largest standard budget not above ``budget`` (None below 60 s), or the
    corpus's own goal at that budget."""
    known = [b for b in GOALS if b <= budget]
    if not known:
        return None
    return CORPUS_GOALS.get((corpus, max(known)), GOALS[max(known)])


def parse_seconds(text: str) -> float:
    """``60``, ``60s``, ``10m``, ``1h`` to seconds; ValueError otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text)
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"not a positive duration: {text!r}")
    return seconds


def parse_budgets(spec: str, corpora: tuple[str, ...] = CORPORA) -> list[tuple[str, float]]:
    """``60,tinyshakespeare:137`` to rows (corpus, seconds): a bare budget applies to every
    corpus, ``NAME:BUDGET`` to one. Order kept, duplicates dropped."""
    rows: list[tuple[str, float]] = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, budget = item.rpartition(":")
        if name and name not in corpora:
            raise ValueError(f"unknown corpus {name!r} (choose from {', '.join(corpora)})")
        seconds = parse_seconds(budget)
        for corpus in [name] if name else corpora:
            if (corpus, seconds) not in rows:
                rows.append((corpus, seconds))
    return rows


def parse_plain(output: str) -> tuple[float, int]:
    """The plain loop's ``val_nats`` and ``steps`` from its last non-empty line."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    nats = re.search(r"\bval_nats=(\S+)", last)
    steps = re.search(r"\bsteps=(\d+)", last)
    if not nats:
        raise ValueError(f"no val_nats= in the plain loop's last line: {last!r}")
    return float(nats.group(1)), int(steps.group(1)) if steps else -1


def fmt_nats(x: float) -> str:
    return f"{x:.4f}" if math.isfinite(x) else str(x)


def format_table(rows: list[Row], cpu: str = "") -> list[str]:
    """The markdown table (stdout and RESULTS.md alike): per row the median difference of its
    pairs with their min and max, each system's median, the goal, and what the load check
    flagged; ``cpu`` (model, cores, avx512_bf16, amx) in every row."""
    out = [
        "| corpus | budget s | pairs | difference median | min | max | charrnn median | "
        "plain median | goal | met? | steps charrnn / plain | flagged | charrnn ran with | cpu |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        goal = "-" if r.goal is None else f"{r.goal:+.2f}"
        d = r.diffs
        low, high = (f"{min(d):+.4f}", f"{max(d):+.4f}") if d else ("-", "-")
        diff = f"{r.diff:+.4f}" if math.isfinite(r.diff) else str(r.diff)
        steps = " ".join(f"{p.charrnn.steps}/{p.plain.steps}" for p in r.pairs)
        flagged = sum(p.flagged for p in r.pairs)
        setups = sorted({p.charrnn.setup for p in r.pairs if p.charrnn.setup})
        out.append(
            f"| {r.corpus} | {r.budget:g} | {len(r.pairs)} | {diff} | {low} | {high} | "
            f"{fmt_nats(r.median('charrnn'))} | {fmt_nats(r.median('plain'))} | {goal} | {r.met} "
            f"| {steps} | {flagged} | {'; '.join(setups) or '-'} | {cpu or '-'} |"
        )
    return out


# ------------------------------------------------------------------------------ the machine


def machine_facts() -> str:
    """CPU model, cores, native bf16, torch version: one line (torch is not imported)."""
    model, flags = "unknown CPU", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value
    except OSError:
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
            model = next(
                (
                    ln.split(":", 1)[1].strip()
                    for ln in out.splitlines()
                    if ln.startswith("Model name")
                ),
                model,
            )
            flags = next((ln for ln in out.splitlines() if ln.startswith("Flags")), "")
        except OSError:
            pass
    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "not installed"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    names = flags.split()
    bf16 = "yes" if "avx512_bf16" in names else "no"
    amx = "yes" if {"amx_bf16", "amx_tile"} & set(names) else "no"
    return f"{model}, {cores} cores, avx512_bf16 {bf16}, amx {amx}, torch {torch}"


def load_check(repeats: int = 15) -> float:
    """Seconds of a fixed small workload (float64 matrix products in NumPy, one thread's worth
    of BLAS), the fastest of ``repeats``: timed before and after each run, the ratio says
    whether the machine's speed moved while it ran."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((256, 256))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(20):
            a = a @ a
            a /= np.abs(a).max()
        best = min(best, time.perf_counter() - t0)
    return best


@contextmanager
def busy_core(on: bool) -> Iterator[None]:
    """With ``on``: a child process spinning one core (a Python busy loop) for the duration."""
    if not on:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.terminate()
        spinner.wait()


# ------------------------------------------------------------------------------ running


def log(msg: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def files_of(corpora: Path, name: str) -> tuple[Path, Path]:
    """The train and val files of a corpus."""
    folder = corpora if name == "tinyshakespeare" else corpora / "suite"
    return folder / f"{name}.train.txt", folder / f"{name}.val.txt"


def check_inputs(corpora: Path, names: list[str], plain: Path) -> None:
    """Exit with one line if a corpus file or the plain loop is missing."""
    missing = [p for n in names for p in files_of(corpora, n) if not p.is_file()]
    if missing:
        hint = (
            GET_SHAKESPEARE
            if any("tinyshakespeare" in p.name for p in missing)
            else "give --corpora DIR (default ../shared/corpora beside the repository; "
            "docs/performance.md says what each corpus is and where it comes from)"
        )
        raise SystemExit(f"bench/suite.py: missing {', '.join(str(p) for p in missing)}: {hint}")
    if not plain.is_file():
        raise SystemExit(f"bench/suite.py: the yardstick {plain} is missing (give --plain FILE)")


def run_child(cmd: list[str], cwd: Path) -> tuple[str, float, str]:
    """Run a command; return its stdout, wall seconds and stderr, or exit showing its stderr."""
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"bench/suite.py: {shlex.join(cmd)} failed with status {p.returncode}")
    return p.stdout, wall, p.stderr


def steps_of(config: dict[str, Any]) -> int:
    """The steps a checkpoint was trained for, from its config.json."""
    return int(config["metrics"]["step"])


def setup_of(config: dict[str, Any]) -> str:
    """The model, threads and precision charrnn chose, from a checkpoint's config.json (its
    ``model``, ``training`` and the run's ``plan``): ``LSTM 2x512, 2 threads, bf16 (1.41x
    fp32)``, or ``GRU 2x256, 1 thread, fp32 (bf16 0.71x)`` where bf16 was measured slower; and
    what a run-length rule changed (``9 passes expected: embedding 256, ...``)."""
    model, plan = config.get("model") or {}, config.get("plan") or {}
    parts = []
    if model:
        parts.append(f"{str(model['cell']).upper()} {model['layers']}x{model['hidden']}")
    threads = plan.get("threads")
    if threads is not None:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    precision = (config.get("training") or {}).get("precision")
    speedup = plan.get("bf16_speedup")
    if precision:
        if speedup is None:
            parts.append(precision)
        elif precision == "bf16":
            parts.append(f"bf16 ({speedup:.2f}x fp32)")
        else:
            parts.append(f"{precision} (bf16 {speedup:.2f}x)")
    for note in plan.get("notes") or []:  # the run-length rules: "about 9 passes ... expected: ..."
        m = re.match(r"about ([\d,.]+) passes over the corpus expected", str(note))
        if m:
            parts.append(f"{m.group(1)} passes expected: {str(note).split(': ', 1)[-1]}")
    return ", ".join(parts)


def run_charrnn(
    train: Path, val: Path, budget: float, extra: list[str], tmp: Path
) -> tuple[float, int, float, str]:
    """Train with the defaults (plus ``extra``), score the best checkpoint exactly: nats/char,
    steps (the latest checkpoint's), wall seconds of training, and what the machine probe chose
    (:func:`setup_of`)."""
    py = [sys.executable, "-m", "charrnn"]
    run = Path(tempfile.mkdtemp(prefix="run-", dir=tmp))  # a fresh folder for each attempt
    run.rmdir()  # charrnn creates it
    limit = ["--max-time", f"{budget:g}s", "--out", str(run)]
    _, wall, _ = run_child([*py, "train", str(train), "--val", str(val), *limit, *extra], cwd=tmp)
    out, _, _ = run_child(
        [*py, "eval-perplexity", str(val), "-c", str(run), "--exact", "--json"], cwd=tmp
    )
    nats = float(json.loads(out)["files"][0]["nats_per_char"])
    latest = run / (run / "latest").read_text().strip()
    config = json.loads((latest / "config.json").read_text())
    return nats, steps_of(config), wall, setup_of(config)


def run_plain(
    plain: Path, train: Path, val: Path, budget: float, tmp: Path
) -> tuple[float, int, float]:
    """The yardstick, unchanged: nats/char, steps, wall seconds."""
    cmd = [sys.executable, str(plain), *PLAIN_ARGS, f"{budget:g}", str(train), str(val)]
    out, wall, _ = run_child(cmd, cwd=tmp)
    nats, steps = parse_plain(out)
    return nats, steps, wall


def checked(label: str, run: Callable[[], Run], retries: int = RETRIES) -> Run:
    """``run`` between two load checks; a run whose check moved more than LOAD_TOLERANCE is
    repeated (``retries`` times at most) and kept flagged if it never settles."""
    for attempt in range(retries + 1):
        before = load_check()
        result = run()
        time.sleep(SETTLE)  # the run's process has exited; let the cores settle
        ratio = load_check() / before
        result = Run(result.nats, result.steps, result.wall, ratio, result.setup)
        if not result.flagged or attempt == retries:
            return result
        log(f"  {label}: the load check moved by {ratio:.2f}x; running it again")
    raise AssertionError("unreachable")


def run_pair(i: int, corpus: str, budget: float, args: argparse.Namespace) -> Pair:
    """Both systems on one corpus at one budget; charrnn first on even pairs."""
    train, val = files_of(args.corpora, corpus)
    first = "charrnn" if i % 2 == 0 else "plain"
    res: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="charrnn-suite-") as d:
        for who in (first, "plain" if first == "charrnn" else "charrnn"):
            log(f"{corpus} {budget:g} s, pair {i + 1}: {who}")
            if who == "charrnn":

                def go() -> Run:
                    nats, steps, wall, setup = run_charrnn(train, val, budget, args.extra, Path(d))
                    return Run(nats, steps, wall, setup=setup)
            else:

                def go() -> Run:
                    return Run(*run_plain(args.plain, train, val, budget, Path(d)))

            res[who] = checked(who, go, args.retries)
            r = res[who]
            how = f" ({r.setup})" if r.setup else ""
            log(f"  {who}: {fmt_nats(r.nats)} nats/char, {r.steps} steps, load {r.load:.2f}{how}")
    return Pair(res["charrnn"], res["plain"], first)


def run_row(start: int, corpus: str, budget: float, args: argparse.Namespace) -> Row:
    """``args.pairs`` pairs, alternating who goes first (counted on from ``start``)."""
    return Row(
        corpus, budget, tuple(run_pair(start + k, corpus, budget, args) for k in range(args.pairs))
    )


# ------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    ap = argparse.ArgumentParser(prog="bench/suite.py", description=(__doc__ or "").split("\n")[0])
    ap.add_argument(
        "--budgets",
        default=DEFAULT_BUDGETS,
        metavar="SPEC",
        help=f"comma list of SECONDS (every corpus) or NAME:SECONDS [{DEFAULT_BUDGETS}]",
    )
    ap.add_argument("--long", action="store_true", help=f"add {LONG_BUDGET} (10 minutes)")
    ap.add_argument(
        "--pairs",
        type=int,
        default=DEFAULT_PAIRS,
        metavar="N",
        help=f"pairs per corpus and budget, alternating who goes first [{DEFAULT_PAIRS}]",
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=RETRIES,
        metavar="N",
        help=f"repeats of a run whose load check moved, before it is kept flagged [{RETRIES}]",
    )
    ap.add_argument("--busy", action="store_true", help="keep one core busy (another process)")
    ap.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="NAME",
        help=f"only these corpora (repeatable or comma list): {', '.join(CORPORA)}",
    )
    ap.add_argument(
        "--extra",
        default="",
        metavar="ARGS",
        help='more `charrnn train` options, e.g. "--precision bf16" (one word: --extra=--X)',
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_BUDGET:g} s per row, nothing appended (smoke test)",
    )
    ap.add_argument("--no-append", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument(
        "--corpora",
        type=Path,
        default=SHARED / "corpora",
        metavar="DIR",
        help="corpora folder [../shared/corpora]",
    )
    ap.add_argument(
        "--plain",
        type=Path,
        default=SHARED / "bench" / "plain_loop.py",
        metavar="FILE",
        help="the plain-loop yardstick script [../shared/bench/plain_loop.py]",
    )
    ap.add_argument(
        "--results",
        type=Path,
        default=HERE / "RESULTS.md",
        metavar="FILE",
        help="file to append to [bench/RESULTS.md]",
    )
    return ap


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options, with ``plan`` (corpus, seconds) rows, ``extra`` split and ``plain`` added."""
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        plan = parse_budgets(args.budgets + ("," + LONG_BUDGET if args.long else ""))
    except ValueError as e:
        ap.error(f"--budgets: {e}")
    only = {n.strip() for s in args.only or [] for n in s.split(",") if n.strip()}
    if only - set(CORPORA):
        ap.error(f"--only: unknown {', '.join(sorted(only - set(CORPORA)))}")
    plan = [(c, QUICK_BUDGET if args.quick else b) for c, b in plan if not only or c in only]
    args.plan = list(dict.fromkeys(plan))
    if args.pairs < 1:
        ap.error("--pairs: at least 1")
    if args.retries < 0:
        ap.error("--retries: at least 0")
    if args.quick:
        args.pairs = 1
    args.extra = shlex.split(args.extra)
    return args


def append_results(path: Path, title: str, facts: str, table: list[str]) -> None:
    """A dated section after whatever the file holds."""
    text = f"\n## {title}\n\n{facts}\n\n" + "\n".join(table) + "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.plan:
        raise SystemExit("bench/suite.py: nothing to run (check --only and --budgets)")
    check_inputs(args.corpora, sorted({c for c, _ in args.plan}), args.plain)
    facts = machine_facts()
    total = sum(2 * b * args.pairs for _, b in args.plan)
    log(
        f"{len(args.plan)} rows x {args.pairs} pairs, {total / 60:.1f} min of training plus "
        "startup and scoring; run nothing else on the machine meanwhile"
    )
    rows = []
    with busy_core(args.busy):
        for i, (corpus, budget) in enumerate(args.plan):
            rows.append(run_row(i * args.pairs, corpus, budget, args))
            log("row: " + format_table(rows[-1:])[-1])  # kept in the log if the run is cut short
    date = time.strftime("%Y-%m-%d %H:%M")
    how = [w for w in ("quick" if args.quick else "", "one core busy" if args.busy else "") if w]
    if args.extra:
        how.append(f"charrnn extra: `{shlex.join(args.extra)}`")
    title = f"bench/suite.py {date}" + (f" ({'; '.join(how)})" if how else "")
    facts_line = f"machine: {facts}; {args.pairs} pairs per row, median (min, max) of the pairs"
    table = format_table(rows, facts.rsplit(", torch", 1)[0])
    print(title)
    print(facts_line)
    print("\n".join(table))
    if not (args.quick or args.no_append):
        append_results(args.results, title, facts_line, table)
        log(f"appended a section to {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
