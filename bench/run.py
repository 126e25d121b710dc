"""charrnn's benchmark: one run measures quality per time, and speed as ratios to this machine.

    python bench/run.py --budget 137            # about 137 s of training + ~2 minutes of probes

What it does, in order (the machine may be shared, so every speed is also given as a ratio to
something measured in the same run, right next to it, and repeats are summarised by medians):

1. fp32 GEMM peak: ``torch.mm`` of n = 512 and 1024 square matrices, GFLOP/s.
2. ``charrnn train CORPUS --val VAL --max-time BUDGET`` (defaults otherwise) in a child process:
   steps, training chars/s, % of the GEMM peak, peak RSS.
3. The best checkpoint scored on the validation file by the exact protocol (one stream, state
   carried through the whole text): nats/char and bits/char.
4. Sampling from that checkpoint: 1 stream (chars/s, and the ratio to the "matvec ceiling": the
   time the fp32 weight matrix-vector products of one step take alone in NumPy, including the
   output layer), the plain step-by-step path, 64 streams (% of the GEMM peak), peak RSS of
   ``charrnn sample`` at two lengths; the same 1-stream ratio for a 2x256 LSTM.
5. Evaluation speed: the parallel protocol of ``eval-perplexity`` (% of the GEMM peak) and how far
   its figure is from the exact one.
6. Training-step throughput probes at hidden 256 and 512 (2-layer GRU, the default batch).

FLOPs are model FLOPs: 2 multiply-adds per weight per character for the forward pass
(embedding-to-gates, recurrent and output matrices), three times that for a training step.
Results: one table on stdout, one dated row appended to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from charrnn.evaluation import evaluate_chunks  # noqa: E402
from charrnn.model.rnn import CharRNN, ModelConfig  # noqa: E402
from charrnn.run.defaults import DEFAULT_BATCH, DEFAULT_SEQ_LEN  # noqa: E402
from charrnn.sample.generate import generate, generate_many  # noqa: E402
from charrnn.sample.policy import SampleConfig  # noqa: E402
from charrnn.store import checkpoint as ck  # noqa: E402
from charrnn.training.config import TrainConfig  # noqa: E402
from charrnn.training.loop import Trainer  # noqa: E402

SHARED = ROOT.parent / "shared" / "corpora"
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


# ------------------------------------------------------------------------------ measuring


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def gemm_gflops(n: int, reps: int = 3) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return reps * 2 * n**3 / (time.perf_counter() - t) / 1e9


def gemm_peak(repeats: int = 5) -> float:
    """fp32 GEMM peak, GFLOP/s: the better of the medians at n = 512 and n = 1024."""
    return max(median([gemm_gflops(n) for _ in range(repeats)]) for n in (512, 1024))


def quick_peak() -> float:
    """A short GEMM probe taken next to each measurement (the machine's state drifts)."""
    return max(gemm_gflops(512, 4), gemm_gflops(1024, 1))


def forward_flops(cfg: ModelConfig) -> int:
    """Model FLOPs of one character through the forward pass."""
    g, h = GATES[cfg.cell], cfg.hidden
    macs = sum(g * h * ((cfg.embed_dim if k == 0 else h) + h) for k in range(cfg.layers))
    return 2 * (macs + h * cfg.vocab_size)


def matvec_seconds_per_char(model: CharRNN, iters: int) -> float:
    """The fp32 weight matrix-vector products of one step alone, in NumPy (seconds): every
    recurrent matrix, the input matrices of layers >= 1, and the output layer."""
    rnn, cfg = model.rnn, model.config
    mats = [getattr(rnn, f"weight_hh_l{k}") for k in range(cfg.layers)]
    mats += [getattr(rnn, f"weight_ih_l{k}") for k in range(1, cfg.layers)]
    mats.append(model.head.weight)
    ws = [np.ascontiguousarray(m.detach().numpy(), dtype=np.float32) for m in mats]
    x = np.random.default_rng(0).standard_normal(cfg.hidden).astype(np.float32)
    outs = [np.empty(w.shape[0], np.float32) for w in ws]
    for w, o in zip(ws, outs, strict=True):
        np.dot(w, x, out=o)
    t = time.perf_counter()
    for _ in range(iters):
        for w, o in zip(ws, outs, strict=True):
            np.dot(w, x, out=o)
    return (time.perf_counter() - t) / iters


def paired(repeats: int, measure: Callable[[], float], reference: Callable[[], float]) -> tuple:
    """Medians of ``measure``, ``reference`` and of their per-repeat ratio, taken alternately."""
    ms, rs, ratios = [], [], []
    for _ in range(repeats):
        m = measure()
        r = reference()
        ms.append(m)
        rs.append(r)
        ratios.append(m / r)
    return median(ms), median(rs), median(ratios)


def child(cmd: list[str], cwd: Path | None = None) -> tuple[int, float, float]:
    """Run a command; return its exit status, wall seconds and peak RSS in MB."""
    t = time.perf_counter()
    with open(os.devnull, "wb") as null:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=null, stderr=subprocess.PIPE)
        assert p.stderr is not None
        err = p.stderr.read()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.stderr.write(err.decode("utf-8", "replace"))
        raise SystemExit(f"bench: {' '.join(cmd)} failed with status {p.returncode}")
    return p.returncode, time.perf_counter() - t, usage.ru_maxrss / 1024.0


# ------------------------------------------------------------------------------ phases


def sample_rate(model: CharRNN, vocab, length: int, fast: bool = True) -> float:  # type: ignore[no-untyped-def]
    """Characters per second of one stream, once set up (the prime "\n" is the first piece)."""
    cfg = SampleConfig(length=length, temperature=0.8, seed=1)
    pieces = generate(model, vocab, "\n", cfg, fast=fast)
    next(pieces)
    t = time.perf_counter()
    n = sum(len(p) for p in pieces)
    return n / (time.perf_counter() - t)


def train_probe(hidden: int, steps: int, repeats: int, ids: torch.Tensor, vocab_size: int) -> dict:
    """Training-step throughput of a 2-layer GRU (the default batch) through the real Trainer."""
    torch.manual_seed(0)
    mc = ModelConfig(vocab_size=vocab_size, cell="gru", layers=2, hidden=hidden)
    model = CharRNN(mc)
    tc = TrainConfig(
        batch_size=DEFAULT_BATCH, seq_len=DEFAULT_SEQ_LEN, max_steps=2, eval_every=0, warmup_steps=0
    )
    trainer = Trainer(model, ids, None, tc)
    trainer.run()  # warm-up: allocations, optimizer state

    def measure() -> float:
        s = trainer.state
        tokens, elapsed = s.tokens, s.elapsed
        trainer.config = replace(tc, max_steps=s.step + steps)
        trainer.run()
        return (s.tokens - tokens) / (s.elapsed - elapsed)

    rate, peak, _ = paired(repeats, measure, quick_peak)
    return {"hidden": hidden, "chars_s": rate, "frac": rate * 3 * forward_flops(mc) / 1e9 / peak}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=137.0, help="training seconds [137]")
    ap.add_argument(
        "--corpus",
        default=str(SHARED / "tinyshakespeare.train.txt"),
        help="training text [tinyshakespeare's canonical split, from ../shared/corpora beside "
        "the repository: not part of it; any text with a .val.txt beside it works]",
    )
    ap.add_argument("--val", default=None, help="validation file [the .val.txt beside corpus]")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"), help="file to append to")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of each speed probe [5]")
    ap.add_argument("--quick", action="store_true", help="tiny probes (for the smoke test)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads [torch default]")
    ap.add_argument("--keep", default=None, help="keep the trained run in this folder")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = Path(args.corpus).resolve()
    val = (
        Path(args.val).resolve()
        if args.val
        else corpus.with_name(corpus.name.replace(".train.", ".val."))
    )
    if not corpus.is_file() or not val.is_file() or val == corpus:
        missing = corpus if not corpus.is_file() else val
        raise SystemExit(
            f"bench: {missing}: no such file; give --corpus TRAIN and --val VAL (two separate "
            "files: tinyshakespeare's canonical split is the default, in ../shared/corpora)"
        )
    reps = 1 if args.quick else max(1, args.repeats)
    scale = 0.1 if args.quick else 1.0
    threads = torch.get_num_threads()
    py = [sys.executable, "-m", "charrnn"]

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    class Rows(list):  # (what, figure, ratio); each row is also logged as soon as it is known
        def append(self, row: tuple[str, str, str]) -> None:
            super().append(row)
            log("  ".join(row))

    rows = Rows()

    # 1. GEMM peak
    log("GEMM peak")
    peak0 = gemm_peak(reps)
    rows.append(("fp32 GEMM peak (torch.mm n=512/1024)", f"{peak0:.0f} GFLOP/s", "1.00"))

    with tempfile.TemporaryDirectory(prefix="charrnn-bench-") as tmp:
        run_dir = Path(args.keep) if args.keep else Path(tmp) / "run"
        # 2. training with the defaults, in a child process (its own peak RSS)
        log(f"training {corpus.name} for {args.budget:g} s (defaults)")
        env_threads = ["--threads", str(args.threads)] if args.threads else []
        _, _, train_rss = child(
            [
                *py,
                "train",
                str(corpus),
                "--val",  # the canonical split: train on all of the train file
                str(val),
                "--max-time",
                f"{args.budget}s",
                "--out",
                str(run_dir),
                "--quiet",
                *env_threads,
            ],
            cwd=Path(tmp),
        )
        peak1 = gemm_peak(reps)
        peak_train = median([peak0, peak1])
        latest = ck.newest_checkpoint(run_dir)
        assert latest is not None
        metrics = json.loads((latest / ck.CONFIG).read_text())["metrics"]
        loaded = ck.load_model(run_dir)
        model, vocab, mc = loaded.model, loaded.vocab, loaded.model.config
        fwd = forward_flops(mc)
        train_rate = metrics["tokens"] / metrics["elapsed"]
        train_frac = train_rate * 3 * fwd / 1e9 / peak_train
        label = f"{mc.cell.upper()} {mc.layers}x{mc.hidden}"
        rows.append((f"train {label}: steps", f"{metrics['step']}", ""))
        rows.append(
            ("train: chars/s, % of GEMM peak", f"{train_rate / 1e3:.1f}k", f"{train_frac:.0%}")
        )
        rows.append(("train: peak RSS", f"{train_rss:.0f} MB", ""))

        # 3. exact validation figure
        log("exact validation")
        val_text = val.read_text(encoding="utf-8")
        val_ids = torch.tensor(vocab.encode(val_text), dtype=torch.long)
        t = time.perf_counter()
        exact = evaluate_chunks(model, [val_ids])
        exact_s = time.perf_counter() - t
        rows.append(("val nats/char (exact, 1 stream)", f"{exact.nats_per_char:.4f}", ""))
        rows.append(("val bits/char", f"{exact.bits_per_char:.4f}", ""))

        # 4. sampling
        log("sampling")
        length = max(200, int(3000 * scale))
        torch.manual_seed(0)
        sample_rate(model, vocab, 200)
        s1, ceil_s, s1_ratio = paired(
            reps,
            lambda: sample_rate(model, vocab, length),
            lambda: 1.0 / matvec_seconds_per_char(model, max(100, int(2000 * scale))),
        )
        rows.append((f"sample 1 stream {label}: chars/s", f"{s1 / 1e3:.1f}k", ""))
        rows.append(
            (
                "  matvec ceiling chars/s; sampling / ceiling",
                f"{ceil_s / 1e3:.1f}k",
                f"{s1_ratio:.2f}",
            )
        )
        lstm_rate = lstm_ratio = math.nan
        if not args.quick:
            plain, _, plain_ratio = paired(
                max(1, reps // 2),
                lambda: sample_rate(model, vocab, max(100, int(500 * scale)), fast=False),
                lambda: 1.0 / matvec_seconds_per_char(model, max(100, int(2000 * scale))),
            )
            rows.append(
                (
                    "  plain step-by-step path chars/s; / ceiling",
                    f"{plain / 1e3:.1f}k",
                    f"{plain_ratio:.2f}",
                )
            )
            torch.manual_seed(0)
            lstm = CharRNN(replace(mc, cell="lstm", dropout=0.0)).eval()
            lstm_rate, lstm_ceil, lstm_ratio = paired(
                reps,
                lambda: sample_rate(lstm, vocab, length),
                lambda: 1.0 / matvec_seconds_per_char(lstm, max(100, int(2000 * scale))),
            )
            rows.append(
                (
                    f"sample 1 stream LSTM {mc.layers}x{mc.hidden}: chars/s (ceiling)",
                    f"{lstm_rate / 1e3:.1f}k ({lstm_ceil / 1e3:.1f}k)",
                    f"{lstm_ratio:.2f}",
                )
            )
        n64 = 64
        len64 = max(50, int(400 * scale))

        def many() -> float:
            cfg = SampleConfig(length=len64, temperature=0.8, seed=1)
            t = time.perf_counter()
            generate_many(model, vocab, n64, "", cfg)
            return n64 * len64 / (time.perf_counter() - t)

        s64, p64, _ = paired(reps, many, quick_peak)
        rows.append(
            (
                f"sample {n64} streams: chars/s, % of GEMM peak",
                f"{s64 / 1e3:.1f}k",
                f"{s64 * fwd / 1e9 / p64:.0%}",
            )
        )
        rss = {}
        for n in (2_000, 50_000) if not args.quick else (200,):
            _, _, rss[n] = child(
                [*py, "sample", "-c", str(run_dir), "--length", str(n), "--seed", "1", *env_threads]
            )
        sizes = sorted(rss)
        r_b = rss[sizes[-1]]
        rows.append(
            (
                f"sample: peak RSS at {' / '.join(map(str, sizes))} chars",
                " / ".join(f"{rss[n]:.0f}" for n in sizes) + " MB",
                "",
            )
        )

        # 5. evaluation speed
        log("evaluation speed")
        ev_ids = val_ids if not args.quick else val_ids[:20_000]

        def ev_rate() -> float:
            t = time.perf_counter()
            res = evaluate_chunks(model, [ev_ids], streams=64, burn_in=256)
            ev_rate.res = res  # type: ignore[attr-defined]
            return res.tokens / (time.perf_counter() - t)

        ev, pev, _ = paired(reps, ev_rate, quick_peak)
        par = ev_rate.res  # type: ignore[attr-defined]
        rows.append(
            (
                "eval 64 streams + burn-in 256: chars/s, % of peak",
                f"{ev / 1e3:.1f}k",
                f"{ev * fwd / 1e9 / pev:.0%}",
            )
        )
        exact_rate = exact.tokens / exact_s
        rows.append(
            (
                "  exact (1 stream): chars/s, % of peak",
                f"{exact_rate / 1e3:.1f}k",
                f"{exact_rate * fwd / 1e9 / peak1:.0%}",
            )
        )
        if not args.quick:
            full = evaluate_chunks(model, [val_ids], streams=64, burn_in=256)
            rows.append(
                (
                    "  parallel - exact, nats/char",
                    f"{full.nats_per_char - exact.nats_per_char:+.5f}",
                    "",
                )
            )
        del par

    # 6. training-step probes
    log("training-step probes")
    ids = torch.tensor(vocab.encode(corpus.read_text(encoding="utf-8")[:400_000]))
    probes = []
    for hidden in (256, 512) if not args.quick else (32,):
        steps = 1 if args.quick else (5 if hidden <= 256 else 2)
        pr = train_probe(hidden, steps, min(reps, 3), ids, len(vocab))
        probes.append(pr)
        rows.append(
            (
                f"train step GRU 2x{hidden}, {DEFAULT_BATCH}x{DEFAULT_SEQ_LEN}: chars/s, % of peak",
                f"{pr['chars_s'] / 1e3:.1f}k",
                f"{pr['frac']:.0%}",
            )
        )

    # table
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    date = time.strftime("%Y-%m-%d %H:%M")
    print(f"charrnn bench {date}: {corpus.name}, budget {args.budget:g} s, {threads} threads")
    print(f"{'measure'.ljust(w0)}  {'figure'.rjust(w1)}  ratio")
    for what, fig, ratio in rows:
        print(f"{what.ljust(w0)}  {fig.rjust(w1)}  {ratio}".rstrip())

    # RESULTS.md row
    res_path = Path(args.results)
    header = (
        "| date | corpus | budget s | threads | model | steps | train chars/s (% peak) | "
        "val nats/char | val BPC | sample 1 chars/s (/ ceiling) | LSTM 1 (/ ceiling) | "
        "sample 64 (% peak) | eval chars/s (% peak) | train step 256 / 512 (% peak) | "
        "GEMM peak GFLOP/s | RSS train / sample MB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    probe_txt = " / ".join(f"{p['frac']:.0%}" for p in probes)
    row = (
        f"| {date}{' (quick)' if args.quick else ''} | {corpus.name} | {args.budget:g} | "
        f"{threads} | "
        f"{label} | {metrics['step']} | {train_rate / 1e3:.1f}k ({train_frac:.0%}) | "
        f"{exact.nats_per_char:.4f} | {exact.bits_per_char:.4f} | "
        f"{s1 / 1e3:.1f}k ({s1_ratio:.2f}) | "
        f"{lstm_rate / 1e3:.1f}k ({lstm_ratio:.2f}) | {s64 / 1e3:.1f}k "
        f"({s64 * fwd / 1e9 / p64:.0%}) | {ev / 1e3:.1f}k ({ev * fwd / 1e9 / pev:.0%}) | "
        f"{probe_txt} | {peak0:.0f} | {train_rss:.0f} / {r_b:.0f} |\n"
    )
    if not res_path.exists():
        res_path.write_text(
            "# bench/run.py results\n\nOne row per run of `python bench/run.py`; see its "
            "docstring for what each figure means.\n\n" + header,
            encoding="utf-8",
        )
    with res_path.open("a", encoding="utf-8") as f:
        f.write(row)
    log(f"appended a row to {res_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
