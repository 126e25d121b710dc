"""How fast charrnn's commands start, as ratios to ``python -c "import torch"`` measured alongside.

    python bench/startup.py                        # this tree
    python bench/startup.py --before /tmp/base     # and another tree (e.g. an older commit),
                                                   # in the same run, alternated with this one

Each measurement is a fresh process, run the way a shell runs it (``python -m charrnn ...``
with ``PYTHONPATH`` naming the tree), one round at a time: the yardstick ``python -c "import
torch"``, then every command of every tree, in an order that rotates between rounds, so that a
busy spell on a shared machine falls on all of them alike, after one round not counted that
compiles every module's bytecode (kept in a temporary ``PYTHONPYCACHEPREFIX``, as an installed
package keeps it: the trees themselves are not written to). Figures are medians over the rounds:

* end to end: from starting the process to its exit;
* first byte: from starting the process to the first byte on its stdout (for ``sample``, the
  first generated character; the other commands print all at once);
* peak RSS of ``sample`` (the process's own maximum resident set, from ``wait4``);
* one-stream sampling throughput (characters per second of ``generate``, the model already
  loaded, in a child process per tree) for the default 2x256 GRU and a 2x256 LSTM.

The commands: ``charrnn sample -c RUN --length 1000 --seed 1``, ``charrnn --help``, ``charrnn
runs ROOT``, ``charrnn info RUN``. RUN is a checkpoint of the default model (a 2x256 GRU,
64-wide embeddings, over the characters of corpora/verses.txt; random weights: speed does not
depend on what was learned), written by this tree's library into a temporary folder.
The table printed at the end is markdown, ready for the README's Performance section.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

GOALS = {  # the goals, as ratios to the torch import (RSS in MB)
    "sample": 0.35,
    "sample_first": 0.25,
    "help": 0.35,
    "runs": 0.35,
    "info": 0.35,
    "rss": 100.0,
}

# One child per tree and round: chars/s of one-stream generate() for each run given, the model
# loaded the way `charrnn sample` loads it on the CPU in that tree.
THROUGHPUT = """
import statistics, sys, time
from charrnn.store import checkpoint as ck
from charrnn.store import saving
from charrnn.sample.generate import generate
try:
    from charrnn.sample.policy import SampleConfig
    from charrnn.sample.load import load_for_sampling as load
except ImportError:  # an older tree
    from charrnn.sample.generate import SampleConfig
    load = getattr(ck, "load_for_sampling", None)
n = int(sys.argv[1])
for path in sys.argv[2:]:
    m = load(path, "cpu") if load else ck.load_model(path, "cpu")
    "".join(generate(m.model, m.vocab, "", SampleConfig(length=200, seed=0)))
    cfg = SampleConfig(length=n, temperature=0.8, seed=1)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        "".join(generate(m.model, m.vocab, "", cfg))
        times.append(time.perf_counter() - t)
    print(n / statistics.median(times))
"""

# The checkpoints are written by a child: the measuring process itself never imports torch, so
# that the children it starts do not begin with its memory (Linux counts a forked child's peak
# RSS from the parent's).
MAKE_RUN = (
    "import sys; sys.path.insert(0, sys.argv[1]); import startup; startup.make_run(*sys.argv[2:])"
)


def make_run(root: str, cell: str) -> None:
    """A run folder ``root/verses-CELL`` holding one checkpoint of the default model (random
    weights)."""
    import torch

    from charrnn.model.rnn import CharRNN, ModelConfig
    from charrnn.store import checkpoint as ck
    from charrnn.store import saving
    from charrnn.text.vocab import Vocab

    vocab = Vocab.build((ROOT / "corpora" / "verses.txt").read_text(encoding="utf-8"))
    torch.manual_seed(0)
    mc = ModelConfig(len(vocab), cell, layers=2, hidden=256, embed_dim=64)
    model = CharRNN(mc)
    config = {
        "format_version": ck.FORMAT_VERSION,
        "charrnn_version": "bench",
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "model": mc.to_dict(),
        "tokenizer": {"type": "char"},
        "training": {},
        "data": {"sources": ["verses.txt"]},
        "metrics": {"step": 1},
    }
    run = Path(root) / f"verses-{cell}"
    saving.write_checkpoint(
        run,
        ck.checkpoint_name(1),
        {ck.CONFIG: config, ck.VOCAB: vocab.to_dict()},
        {ck.MODEL: saving.model_tensors(model)},
    )
    for pointer in (ck.BEST, ck.LATEST):
        saving.set_pointer(run, pointer, ck.checkpoint_name(1))


def run_once(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    """(seconds to exit, seconds to the first byte on stdout, peak RSS in MB) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    assert proc.stdout is not None and proc.stderr is not None
    first = os.read(proc.stdout.fileno(), 1)
    t_first = time.perf_counter() - t0
    proc.stdout.read()
    errors = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    t_end = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or (not first and cmd[-1] != "import torch"):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {errors.decode()[-2000:]}")
    return t_end, t_first, usage.ru_maxrss / 1024  # ru_maxrss is in KB on Linux


def commands(run: Path, root: Path, length: int) -> dict[str, list[str]]:
    py = [sys.executable, "-m", "charrnn"]
    return {
        "sample": [*py, "sample", "-c", str(run), "--length", str(length), "--seed", "1"],
        "help": [*py, "--help"],
        "runs": [*py, "runs", str(root)],
        "info": [*py, "info", str(run)],
    }


PYCACHE: Path | None = None  # set by main(): where the children keep their bytecode


def tree_env(tree: Path | None) -> dict[str, str]:
    """The environment of a child: the tree on ``PYTHONPATH`` (None: none), the default engine,
    and compiled bytecode kept (outside the trees) as an installed package keeps it."""
    drop = ("CHARRNN_ENGINE", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if PYCACHE is not None:
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def measure(
    trees: dict[str, Path], run: Path, root: Path, rounds: int, length: int, cwd: Path
) -> tuple[list[float], dict[tuple[str, str], list[tuple[float, float, float]]]]:
    """Per round the yardstick, then each (tree, command) in a rotating order; a first round,
    not counted, compiles the bytecode of everything."""
    yard: list[float] = []
    out: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    jobs = [(t, c) for t in trees for c in commands(run, root, length)]
    torch_cmd = [sys.executable, "-c", "import torch"]
    for r in range(-1, rounds):
        t_torch = run_once(torch_cmd, tree_env(None), cwd)[0]
        k = r % len(jobs)
        for tree, name in jobs[k:] + jobs[:k]:
            got = run_once(commands(run, root, length)[name], tree_env(trees[tree]), cwd)
            if r >= 0:
                out.setdefault((tree, name), []).append(got)
        if r >= 0:
            yard.append(t_torch)
            print(f"round {r + 1}/{rounds}: import torch {t_torch:.2f} s", file=sys.stderr)
    return yard, out


def throughput(
    trees: dict[str, Path], runs: dict[str, Path], n: int, rounds: int, cwd: Path
) -> dict[tuple[str, str], float]:
    """Median chars/s per (tree, cell), the trees alternated round by round."""
    got: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for tree, path in trees.items():
            cmd = [sys.executable, "-c", THROUGHPUT, str(n), *map(str, runs.values())]
            r = subprocess.run(cmd, capture_output=True, text=True, env=tree_env(path), cwd=cwd)
            if r.returncode != 0:
                raise SystemExit(f"throughput in {path} failed: {r.stderr[-2000:]}")
            for cell, x in zip(runs, r.stdout.split(), strict=True):
                got.setdefault((tree, cell), []).append(float(x))
    return {k: statistics.median(v) for k, v in got.items()}


def table(
    trees: dict[str, Path],
    yard: list[float],
    res: dict[tuple[str, str], list[tuple[float, float, float]]],
    speed: dict[tuple[str, str], float],
) -> str:
    t0 = statistics.median(yard)

    def cell(tree: str, name: str, i: int) -> str:
        x = statistics.median(v[i] for v in res[(tree, name)])
        return f"{x:.2f} s ({x / t0:.2f}x)"

    rows = [
        ("`sample --length 1000`, end to end", "sample", 0, GOALS["sample"]),
        ("`sample`, first character", "sample", 1, GOALS["sample_first"]),
        ("`--help`", "help", 0, GOALS["help"]),
        ("`runs`", "runs", 0, GOALS["runs"]),
        ("`info`", "info", 0, GOALS["info"]),
    ]
    head = "| measure | " + " | ".join(trees) + " | goal |"
    lines = [head, "|---" * (len(trees) + 2) + "|"]
    lines.append(f'| `python -c "import torch"` | {t0:.2f} s (1x) |' + " |" * len(trees))
    for label, name, i, goal in rows:
        cells = " | ".join(cell(t, name, i) for t in trees)
        lines.append(f"| {label} | {cells} | <= {goal}x |")
    rss = " | ".join(f"{statistics.median(v[2] for v in res[(t, 'sample')]):.0f} MB" for t in trees)
    lines.append(f"| `sample` peak RSS | {rss} | <= {GOALS['rss']:.0f} MB |")
    for cell_type in ("gru", "lstm"):
        cells = " | ".join(f"{speed[(t, cell_type)] / 1000:.1f}k" for t in trees)
        label = f"1-stream sampling, 2x256 {cell_type.upper()}, chars/s"
        lines.append(f"| {label} | {cells} | not lower |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, help="another source tree to measure alongside")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--chars", type=int, default=20_000, help="for the throughput figure")
    args = ap.parse_args()
    trees = {"before": args.before.resolve()} if args.before else {}
    trees["after" if args.before else "this tree"] = ROOT
    global PYCACHE
    with tempfile.TemporaryDirectory(prefix="charrnn-startup-") as tmp:
        PYCACHE = Path(tmp) / "pycache"
        root = Path(tmp) / "checkpoints"
        runs = {"gru": root / "verses-gru", "lstm": Path(tmp) / "other" / "verses-lstm"}
        for cell, run in runs.items():
            cmd = [sys.executable, "-c", MAKE_RUN, str(HERE), str(run.parent), cell]
            subprocess.run(cmd, check=True, env=tree_env(ROOT))
        yard, res = measure(trees, runs["gru"], root, args.rounds, args.length, Path(tmp))
        speed = throughput(trees, runs, args.chars, max(1, args.rounds // 2), Path(tmp))
    print(f"{os.cpu_count()} CPUs, medians of {args.rounds} rounds")
    print(table(trees, yard, res, speed))


if __name__ == "__main__":
    main()
