"""Edges a user hits: numbers at their limits, help that shows what the source says, hints that
name options of the command that printed them, resume after a finished run, text edges."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.store import checkpoint as ck

runner = CliRunner()
COMMANDS = list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def invoke(args: list[str], **kw: Any) -> Any:
    return runner.invoke(app, args, **kw)


def _command(name: str) -> Any:
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def _options(name: str) -> set[str]:
    return {o for p in _command(name).params for o in p.opts + p.secondary_opts}


def _numeric(name: str) -> list[tuple[str, type]]:
    """(option, int or float) for every numeric option of a command."""
    out = []
    for p in _command(name).params:
        kind = p.type_descriptor.annotation
        if kind in (int, float) and p.opts[0].startswith("--"):
            out.append((p.opts[0], kind))
    return out


def _strict_json(path: Path) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"{path}: {name} is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


# ------------------------------------------------------------------------------ numbers


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, small_text: str) -> Path:
    path = tmp_path_factory.mktemp("edges") / "c.txt"
    path.write_text(small_text[:8000], encoding="utf-8")
    return path


def _base(command: str, run: Path, corpus: Path, tmp: Path) -> list[str]:
    if command == "train":
        tiny = ["--hidden", "8", "--layers", "1", "--batch-size", "4", "--seq-len", "8"]
        limits = ["--max-steps", "3", "--max-time", "2s", "--eval-every", "2", "--threads", "1"]
        return ["train", str(corpus), "--out", str(tmp / "r"), "-q", *tiny, *limits]
    if command == "sample":
        return ["sample", "-c", str(run), "--length", "20", "--threads", "1", "--seed", "1"]
    if command == "eval-perplexity":
        return ["eval-perplexity", str(corpus), "-c", str(run), "--threads", "1"]
    return ["plot", str(run), "--out", str(tmp / "c.png")]


def _values(kind: type) -> list[str]:
    if kind is int:
        return ["0", "-1", "1", "1" + "0" * 30, "inf", "-inf", "nan"]
    return ["0", "-1", "1e-300", "1e300", "inf", "-inf", "nan"]


CASES = [
    (command, option, value)
    for command in ("train", "sample", "eval-perplexity", "plot")
    for option, kind in _numeric(command)
    for value in _values(kind)
    # an endless stream is what a huge --length asks for: tried with a pipe elsewhere
    if not (option == "--length" and len(value) > 10)
]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_numeric_options_at_their_limits(
    command: str, option: str, value: str, trained_run: Path, corpus: Path, tmp_path: Path
) -> None:
    """Every numeric option of every command over 0, -1, tiny, huge, inf, -inf and nan: a clean
    exit (0, or one error line with 1 or 2), never a traceback, a NaN or a broken run."""
    args = [*_base(command, trained_run, corpus, tmp_path), option, value]
    r = invoke(args, env={"CHARRNN_CHECKPOINTS": str(tmp_path / "ck")})
    text = r.output
    assert r.exit_code in (0, 1, 2), (args, r.exit_code, text, r.exception)
    assert "Traceback" not in text and not isinstance(r.exception, AssertionError)
    if value == "nan":
        assert r.exit_code == 2 and ("NaN" in text or "not an integer" in text), text
    if r.exit_code == 1:
        assert text.strip().splitlines()[-1].startswith("charrnn: error:"), text
    if r.exit_code == 0 and command == "sample":
        assert "<UNK>" not in r.stdout and "nan" not in r.stdout.lower()
    if r.exit_code == 0 and command == "train":
        for config in (tmp_path / "r").glob("step-*/config.json"):
            _strict_json(config)  # no NaN or Infinity anywhere
        assert list((tmp_path / "r").glob("step-*/model.safetensors"))


def test_infinity_means_no_clipping_and_no_epoch_limit(corpus: Path, tmp_path: Path) -> None:
    base = _base("train", Path(), corpus, tmp_path)
    r = invoke([*base, "--clip", "inf", "--max-epochs", "inf"])
    assert r.exit_code == 0, r.output
    config = _strict_json(next((tmp_path / "r").glob("step-*/config.json")))
    assert config["training"]["clip"] == 0.0 and config["training"]["max_epochs"] is None


@pytest.mark.parametrize("temp", ["1e-46", "1e-45", "1e-39", "1e-31"])
@pytest.mark.parametrize(
    "extra",
    [[], ["--num-samples", "3"], ["--top-k", "5"], ["--top-p", "0.9"], ["--prime", "TH"]],
)
def test_vanishing_temperature_is_greedy(trained_run: Path, temp: str, extra: list[str]) -> None:
    base = ["sample", "-c", str(trained_run), "--length", "80", "--seed", "3", *extra]
    greedy = invoke([*base, "--temp", "0"])
    tiny = invoke([*base, "--temp", temp])
    assert greedy.exit_code == tiny.exit_code == 0, tiny.output
    assert tiny.stdout == greedy.stdout and "<UNK>" not in tiny.stdout


# ------------------------------------------------------------------------------ help


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_option_help_as_written(command: str) -> None:
    r = invoke([command, "--help"], terminal_width=200)
    assert r.exit_code == 0
    shown = _flat(r.output)
    for p in _command(command).params:
        if p.opts and p.opts[0] in ("--help", "--install-completion", "--show-completion"):
            continue
        assert p.help, f"{command} {p.opts}: no help"
        assert _flat(p.help) in shown, f"{command} {p.opts[0]}: {p.help!r} not shown as written"
    assert "<str>" not in shown and "<bool>" not in shown and "<int>" not in shown


# ------------------------------------------------------------------------------ hints


def _mentioned(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))


@pytest.fixture(scope="module")
def latin1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("latin") / "latin1.txt"
    path.write_bytes("Caf\xe9 cr\xe8me, na\xefve.\n".encode("latin-1") * 200)
    return path


HINT_CASES = [
    ("sample", lambda run, f, tmp: ["-c", str(run), "--prime-file", str(f)]),
    ("eval-perplexity", lambda run, f, tmp: [str(f), "-c", str(run)]),
    ("train", lambda run, f, tmp: [str(f), "--out", str(tmp / "x")]),
    (
        "train",
        lambda run, f, tmp: [
            str(f),
            "--errors",
            "replace",
            "--val-fraction",
            "0.0001",
            "--max-steps",
            "1",
        ],
    ),
    ("train", lambda run, f, tmp: ["--resume", str(run), "--hidden", "8"]),
    ("train", lambda run, f, tmp: [str(f), "--out", str(run)]),
    ("info", lambda run, f, tmp: []),
    ("sample", lambda run, f, tmp: []),
    ("sample", lambda run, f, tmp: ["-c", str(run), "--prime", "a", "--prime-file", str(f)]),
]


@pytest.mark.parametrize(("command", "args"), HINT_CASES)
def test_hints_name_options_of_the_command_that_printed_them(
    command: str, args: Any, trained_run: Path, latin1: Path, tmp_path: Path
) -> None:
    env = {"CHARRNN_CHECKPOINTS": str(tmp_path / "empty")}
    (tmp_path / "empty").mkdir()
    r = invoke([command, *args(trained_run, latin1, tmp_path)], env=env)
    assert r.exit_code in (1, 2), r.output
    mentioned = _mentioned(r.output)
    assert mentioned or command == "info", f"no hint in {r.output!r}"  # info: a folder to name
    assert mentioned <= _options(command), (command, mentioned - _options(command), r.output)


def test_prime_file_in_another_encoding_is_read_with_errors_replace(
    trained_run: Path, latin1: Path
) -> None:
    args = ["sample", "-c", str(trained_run), "--prime-file", str(latin1), "--length", "5"]
    r = invoke([*args, "--errors", "replace"])
    assert r.exit_code == 0 and r.stdout.startswith("Caf\ufffd cr"), r.output


@pytest.mark.parametrize(
    "args",
    [
        ["train", "x.txt", "--device", "tpu"],
        ["sample", "--device", "gpu0"],
        ["eval-perplexity", "x.txt", "--device", "metal"],
        ["train", "x.txt", "--encoding", "nosuchcodec"],
        ["sample", "--encoding", "nosuchcodec"],
        ["eval-perplexity", "x.txt", "--encoding", "nosuchcodec"],
        ["sample", "--errors", "loud"],
    ],
)
def test_bad_option_values_exit_2(args: list[str], tmp_path: Path) -> None:
    r = invoke(args, env={"CHARRNN_CHECKPOINTS": str(tmp_path)})
    assert r.exit_code == 2, r.output
    assert args[-2] in r.output


# ------------------------------------------------------------------------------ text edges


def test_stop_string_at_the_start_never_gives_an_empty_sample(trained_run: Path) -> None:
    base = ["sample", "-c", str(trained_run), "--length", "120", "--seed", "5"]
    r = invoke([*base, "--num-samples", "12", "--stop", "\n"])
    assert r.exit_code == 0, r.output
    samples = r.stdout.split("\n\n")
    assert len(samples) == 12 and all(s.strip("\n") for s in samples), samples


def test_stop_string_the_model_cannot_write_is_noted(trained_run: Path) -> None:
    r = invoke(["sample", "-c", str(trained_run), "--length", "20", "--stop", "\\n"])
    assert r.exit_code == 0
    assert "--stop '\\n' holds characters the model never writes ('\\'): it cannot" in r.output
    assert "write --stop $'\\n'" in r.output


def test_unknown_characters_are_named(trained_run: Path, tmp_path: Path) -> None:
    r = invoke(["sample", "-c", str(trained_run), "--prime", "Жжx€", "--length", "5"])
    assert r.exit_code == 0 and "'Ж', 'ж', '€'" in r.output, r.output
    held = tmp_path / "held.txt"
    held.write_text("THE ЖЖЖЖЖЖЖЖЖЖЖЖ of the ЖЖЖ lake\n" * 5, encoding="utf-8")
    r = invoke(["eval-perplexity", str(held), "-c", str(trained_run)])
    assert r.exit_code == 0 and "75 character(s) the model never saw ('Ж';" in r.output, r.output


def test_empty_stdin_is_named_stdin(tmp_path: Path) -> None:
    r = invoke(["train", "-", "--out", str(tmp_path / "r")], input="")
    assert r.exit_code == 1
    assert "<stdin>: empty file" in r.output and "corpus-stdin" not in r.output


def test_classic_mac_line_ends_are_read_as_newlines(tmp_path: Path, small_text: str) -> None:
    corpus = tmp_path / "mac.txt"
    corpus.write_bytes(small_text[:6000].replace("\n", "\r").encode("utf-8"))
    out = tmp_path / "r"
    args = ["train", str(corpus), "--out", str(out), "--max-steps", "2", "--hidden", "8"]
    r = invoke([*args, "--layers", "1", "--batch-size", "4", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "line ends are CR only (classic Mac OS); read as LF" in r.output
    vocab = _strict_json(next(out.glob("step-*/vocab.json")))
    assert "\n" in vocab["chars"] and "\r" not in vocab["chars"]


# ------------------------------------------------------------------------------ resume


@pytest.mark.slow
def test_resuming_a_finished_time_limited_run_starts_a_new_cosine_cycle(
    corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r"
    tiny = ["--hidden", "16", "--layers", "1", "--batch-size", "4", "--seq-len", "8"]
    common = ["--warmup", "0", "--threads", "1", "-q"]
    first = ["train", str(corpus), "--out", str(out), *tiny, "--lr", "0.01", "--eval-every", "10"]
    assert invoke([*first, *common, "--max-time", "3s"]).exit_code == 0
    r = invoke(["train", "--resume", str(out), "--max-time", "2s", "--threads", "1", "-q"])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    starts = [i for i, rec in enumerate(records) if rec["event"] == "start"]
    ends = [rec for rec in records[: starts[1]] if rec["event"] == "step"]
    resumed = [rec for rec in records[starts[1] :] if rec["event"] == "step"]
    assert ends[-1]["lr"] < 0.2 * 0.01  # the first session ended near the floor (0.1 x lr)
    assert resumed[0]["lr"] > 0.9 * 0.01  # the new session starts a new cycle at the peak
    assert math.isfinite(resumed[-1]["train_loss"])


def test_a_torch_error_during_training_is_one_line_and_keeps_the_checkpoints(
    corpus: Path, tmp_path: Path
) -> None:
    import torch

    from charrnn.errors import TrainingError
    from charrnn.run.request import TrainRequest
    from charrnn.run.start import open_run
    from charrnn.store import checkpoint as ck
    from charrnn.training.events import Stepped

    out = tmp_path / "r"
    tiny = {"hidden": 8, "layers": 1, "batch_size": 4, "seq_len": 8}
    req = TrainRequest.from_options((str(corpus),), out=str(out), max_steps=6, eval_every=2, **tiny)
    run = open_run(req, torch.device("cpu"))

    def out_of_memory(event: object) -> None:
        if isinstance(event, Stepped) and event.step == 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\n(details)")

    message = r"training stopped at step 3: CUDA out of memory\. Tried to allocate 2\.00 GiB \("
    with pytest.raises(TrainingError, match=message):
        run.train(callbacks=[out_of_memory])
    assert ck.read_pointer(out, ck.LATEST) == "step-00000002"  # the save before it is kept


# ------------------------------------------------------------------------------ info and runs


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_info_and_runs_of_subword_runs_are_per_character(
    kind: str, tmp_path: Path, small_text: str
) -> None:
    import torch

    from charrnn.run.request import TrainRequest
    from charrnn.run.start import open_run

    text = small_text[:20000]
    corpus = tmp_path / "c.txt"
    corpus.write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    tiny = {"hidden": 32, "layers": 1, "embed_dim": 16, "batch_size": 8, "seq_len": 16}
    req = TrainRequest.from_options(
        sources=(str(corpus),), tokenizer=kind, vocab_size=120, max_steps=20, eval_every=10,
        out=str(out), **tiny,
    )  # fmt: skip
    open_run(req, torch.device("cpu")).train()
    r = invoke(["info", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    metrics = info["metrics"]
    per_char, per_token = (
        info["metrics"]["val_bits_per_char"],
        info["metrics"]["val_bits_per_token"],
    )
    assert per_char < per_token  # pieces hold several characters
    assert info["validation"]["bits_per_char"] == pytest.approx(per_char)
    assert info["validation"]["perplexity"] == pytest.approx(2**per_char, rel=1e-6)
    text_out = invoke(["info", str(out)]).stdout
    assert f"{per_char:.4f} bits/char" in text_out
    seen = metrics["characters_seen"]
    assert seen > metrics["tokens"] and f"{seen:,} characters seen" in text_out
    runs = json.loads(invoke(["runs", str(tmp_path), "--json"]).stdout)
    best = info["metrics"]["best_val_bits_per_char"]
    assert runs[0]["best_val_bits_per_char"] == pytest.approx(best) and best <= per_char + 1e-9
    # eval-perplexity on the validation text (the last 10% of the corpus) says the same.
    held = tmp_path / "held.txt"
    held.write_text(text[int(len(text) * 0.9) :], encoding="utf-8")
    row = json.loads(invoke(["eval-perplexity", str(held), "-c", str(out), "--json"]).stdout)
    assert row["files"][0]["bits_per_char"] == pytest.approx(per_char, rel=1e-4)


def test_info_and_runs_flag_a_truncated_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    from charrnn.store import checkpoint as ck

    run = tmp_path / "runs" / "broken"
    shutil.copytree(trained_run, run)
    model = ck.best_checkpoint(run) / ck.MODEL  # type: ignore[operator]
    model.write_bytes(model.read_bytes()[:3000])
    r = invoke(["info", str(run)])
    assert r.exit_code == 1
    assert "files:" in r.stdout  # described as far as it could be
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("charrnn: error: damaged checkpoint: ") and "model.safetensors" in last
    r = invoke(["runs", str(tmp_path / "runs")])
    assert r.exit_code == 0 and "broken (damaged)" in r.stdout
    assert "broken is damaged: " in r.output
    assert invoke(["info", str(trained_run)]).exit_code == 0  # the intact one is fine


def test_conflicting_options_are_usage_errors(
    corpus: Path, trained_run: Path, tmp_path: Path
) -> None:
    cases = [
        (["train", str(corpus), "--tie-weights", "--embed-dim", "8", "--hidden", "16"], "--tie"),
        (["train", str(corpus), "--resume", str(trained_run)], "name no FILE"),
        (["train", "--resume", str(trained_run), "--hidden", "8"], "--hidden cannot be changed"),
        (["eval-perplexity", str(corpus), "--exact", "--streams", "8"], "--exact"),
        (["train", str(corpus), "--val", "-", "--out", str(tmp_path / "v")], "--val -: "),
    ]
    for args, words in cases:
        r = invoke(args)
        assert r.exit_code in (1, 2) and words in r.output, (args, r.output)
        assert r.exit_code == (1 if "--val" in args else 2), (args, r.exit_code)
    assert not (tmp_path / "v").exists()


def test_hints_quote_a_run_folder_for_the_shell(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "my runs ✓" / "r 1"
    tiny = ["--hidden", "8", "--layers", "1", "--batch-size", "4", "--max-steps", "2"]
    r = invoke(["train", str(corpus), "--out", str(out), "--threads", "1", *tiny])
    assert r.exit_code == 0, r.output
    assert f"sample with: charrnn sample -c '{out}'" in r.output


def test_resume_of_a_folder_that_is_not_a_run_writes_nothing(
    trained_run: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "corpora"
    plain.mkdir()
    (plain / "verses.txt").write_text("some text\n")
    step = ck.resolve_checkpoint(trained_run)
    cases = [
        (plain, f"{plain}: not a run folder (no complete checkpoint in it)"),
        (step, f"{step}: a checkpoint, not a run folder; resume its run: --resume"),
        (tmp_path / "missing", "no such run folder to resume"),
    ]
    for folder, words in cases:
        before = sorted(p.name for p in folder.iterdir()) if folder.exists() else None
        r = invoke(["train", "--resume", str(folder), "--max-steps", "1"])
        assert r.exit_code == 1 and words in r.output, r.output
        assert r.output.count("\n") == 1
        after = sorted(p.name for p in folder.iterdir()) if folder.exists() else None
        assert after == before  # no .lock, nothing
