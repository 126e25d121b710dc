"""Optuna studies of charrnn's training options, one per corpus and wall-clock budget.

    python bench/tune.py --corpus pl-fortunes --budget 60 --trials 16
    python bench/tune.py --corpus pl-fortunes --budget 60 --report   # the stored study only

Each trial is one ``charrnn train TRAIN --val VAL --max-time BUDGET`` in a child process with
the options the sampler chose (``--dropout``, ``--embed-dim``, ``--seq-len`` with
``--batch-size`` so that a step keeps 4,096 characters, ``--lr``, ``--weight-decay``,
``--hidden``), scored by ``eval-perplexity --exact`` on the validation file (nats/char, the
objective, lower is better) exactly as bench/suite.py scores its charrnn runs. The first trials
are enqueued: charrnn's defaults as they are, then the plain loop's setting (dropout 0, embedding
256, window 64, lr 5e-3, no weight decay), so that the study starts from both. Each trial also
records its steps and passes over the corpus (steps x 4,096 / training characters), the input
the rules of charrnn/run/defaults.py are keyed to.

Studies live in ``bench/studies/<corpus>-<budget>.db`` (SQLite through Optuna's storage;
``--storage`` overrides), so that a study can be continued with more trials. A summary table
(every trial, best first) goes to stdout and, as a dated section, to bench/STUDIES.md.
Optuna is a bench-only dependency: ``pip install -e '.[bench]'``. While a study runs, nothing
else may run on the machine (../shared/BENCHMARKS.md): one trial is one timed run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import suite  # noqa: E402  (bench/suite.py: corpora, machine facts, the scored charrnn run)

CHARS_PER_STEP = 4096  # batch x window held fixed, as in the defaults and the plain loop
DEFAULTS: dict[str, Any] = {}  # trial 0: nothing passed, charrnn decides everything
PLAIN_LIKE = {
    "dropout": 0.0,
    "embed_dim": 256,
    "seq_len": 64,
    "lr": 5e-3,
    "weight_decay": 0.0,
    "hidden": 256,
}


# The search space: a float's (low, high, step or None, log), or a categorical's choices.
SPACE: dict[str, tuple[float, float, float | None, bool] | list[int] | list[float]] = {
    "dropout": (0.0, 0.4, 0.05, False),
    "embed_dim": [64, 128, 256],
    "seq_len": [32, 64, 128],
    "lr": (2e-3, 1.6e-2, None, True),
    "weight_decay": [0.0, 0.01, 0.1, 0.3],
    "hidden": [128, 256, 384],
}


def suggest(trial: Any) -> dict[str, Any]:
    """The search space (Optuna's define-by-run API)."""
    out: dict[str, Any] = {}
    for name, dist in SPACE.items():
        if isinstance(dist, list):
            out[name] = trial.suggest_categorical(name, dist)
        else:
            low, high, step, log = dist
            out[name] = trial.suggest_float(name, low, high, step=step, log=log)
    return out


def in_space(name: str, value: float) -> bool:
    """Whether ``value`` is one the space holds for ``name`` (an enqueued trial outside it
    would fail inside Optuna, mid-study)."""
    dist = SPACE[name]
    if isinstance(dist, list):
        return value in dist
    low, high, step, _ = dist
    on_grid = step is None or abs((value - low) / step - round((value - low) / step)) < 1e-9
    return low <= value <= high and on_grid


def options_of(params: dict[str, Any]) -> list[str]:
    """``charrnn train`` options for a trial's parameters (empty: the defaults)."""
    if not params:
        return []
    seq = int(params["seq_len"])
    return [
        *("--dropout", f"{params['dropout']:g}", "--embed-dim", str(params["embed_dim"])),
        *("--seq-len", str(seq), "--batch-size", str(CHARS_PER_STEP // seq)),
        *("--lr", f"{params['lr']:.4g}", "--weight-decay", f"{params['weight_decay']:g}"),
        *("--hidden", str(params["hidden"])),
    ]


def train_chars(train: Path) -> int:
    return len(train.read_text(encoding="utf-8"))


def objective_for(args: argparse.Namespace) -> Any:
    train, val = suite.files_of(args.corpora, args.corpus)
    n = train_chars(train)

    def objective(trial: Any) -> float:
        params = DEFAULTS if trial.user_attrs.get("defaults") else suggest(trial)
        extra = options_of(params)
        suite.log(f"trial {trial.number}: {' '.join(extra) or '(defaults)'}")
        with tempfile.TemporaryDirectory(prefix="charrnn-tune-") as d:
            before = suite.load_check()
            nats, steps, _, setup = suite.run_charrnn(train, val, args.budget, extra, Path(d))
            load = suite.load_check() / before
        trial.set_user_attr("steps", steps)
        trial.set_user_attr("passes", round(steps * CHARS_PER_STEP / n, 2))
        trial.set_user_attr("setup", setup)
        trial.set_user_attr("load", round(load, 3))
        suite.log(f"  {nats:.4f} nats/char, {steps} steps, load {load:.2f} ({setup})")
        return nats

    return objective


def study_of(args: argparse.Namespace) -> Any:
    import optuna

    storage = args.storage or f"sqlite:///{HERE / 'studies' / f'{args.corpus}-{args.budget:g}.db'}"
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    sampler = optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=6)
    study = optuna.create_study(
        study_name=f"{args.corpus}-{args.budget:g}",
        storage=storage,
        sampler=sampler,
        direction="minimize",
        load_if_exists=True,
    )
    if not study.trials:
        study.enqueue_trial({}, user_attrs={"defaults": True})
        study.enqueue_trial(PLAIN_LIKE)
    return study


def parse_try(spec: str) -> dict[str, Any]:
    """``dropout=0.1,seq_len=32`` to trial parameters (numbers as the space holds them)."""
    out: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        if key not in SPACE:
            raise SystemExit(f"bench/tune.py: --try: unknown parameter {key!r}")
        try:
            out[key] = int(value) if isinstance(PLAIN_LIKE[key], int) else float(value)
        except ValueError:
            raise SystemExit(f"bench/tune.py: --try: {key}={value!r} is not a number") from None
        if not in_space(key, out[key]):
            raise SystemExit(
                f"bench/tune.py: --try: {key}={value} is outside the space {SPACE[key]}"
            )
    return out


def command_of(args: argparse.Namespace) -> str:
    """The command line that adds these trials (to the same stored study)."""
    tries = "".join(f" --try {t}" for t in args.tries)
    return (
        f"python bench/tune.py --corpus {args.corpus} --budget {args.budget:g} "
        f"--trials {args.trials}{tries}"
    )


def summary(study: Any, facts: str) -> list[str]:
    """Every finished trial, best first, as a markdown table."""
    done = [t for t in study.trials if t.value is not None]
    done.sort(key=lambda t: t.value)
    cols = ["dropout", "embed_dim", "seq_len", "lr", "weight_decay", "hidden"]
    out = [
        f"{len(done)} trials; {facts}",
        "",
        "| trial | nats/char | " + " | ".join(cols) + " | steps | passes | ran with |",
        "|---" * (len(cols) + 5) + "|",
    ]
    for t in done:
        vals = (
            ["(defaults)"] + [""] * (len(cols) - 1)
            if t.user_attrs.get("defaults")
            else [
                f"{t.params[c]:.4g}" if isinstance(t.params[c], float) else str(t.params[c])
                for c in cols
            ]
        )
        a = t.user_attrs
        out.append(
            f"| {t.number} | {t.value:.4f} | "
            + " | ".join(vals)
            + f" | {a.get('steps', '-')} | {a.get('passes', '-')} | {a.get('setup', '-')} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/tune.py", description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, choices=suite.CORPORA)
    ap.add_argument("--budget", type=suite.parse_seconds, default=60.0, metavar="SECONDS")
    ap.add_argument("--trials", type=int, default=16, metavar="N", help="trials to add [16]")
    ap.add_argument("--seed", type=int, default=0, help="the sampler's seed [0]")
    ap.add_argument("--storage", default=None, help="an Optuna storage URL [bench/studies/]")
    ap.add_argument("--report", action="store_true", help="only print the stored study")
    ap.add_argument(
        "--try",
        dest="tries",
        action="append",
        default=[],
        metavar="K=V,...",
        help="enqueue a setting to try first, e.g. dropout=0.1,embed_dim=256 (the rest from "
        "the plain-like setting; repeatable; counts towards --trials)",
    )
    ap.add_argument("--corpora", type=Path, default=suite.SHARED / "corpora", metavar="DIR")
    ap.add_argument("--results", type=Path, default=HERE / "STUDIES.md", metavar="FILE")
    args = ap.parse_args(argv)
    try:
        import optuna
    except ImportError:
        ap.exit(1, "bench/tune.py: needs Optuna: pip install -e '.[bench]'\n")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = study_of(args)
    for spec in args.tries:
        study.enqueue_trial({**PLAIN_LIKE, **parse_try(spec)})
    facts = suite.machine_facts()
    if not args.report:
        suite.log(f"{args.corpus}, {args.budget:g} s: {args.trials} trials ({facts})")
        study.optimize(objective_for(args), n_trials=args.trials)
    table = summary(study, facts)
    print("\n".join(table))
    if not args.report:
        title = f"{args.corpus}, {args.budget:g} s, {time.strftime('%Y-%m-%d %H:%M')}"
        suite.append_results(args.results, title, f"(command: `{command_of(args)}`)", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
