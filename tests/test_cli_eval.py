"""``charrnn eval-perplexity``: the protocols agree, the defaults have one source, limits hold."""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path

import typer
from typer.testing import CliRunner

from charrnn import evaluation, protocols
from charrnn.cli import app
from charrnn.cli import eval as eval_cli
from charrnn.store import checkpoint as ck
from charrnn.training.config import TrainConfig

runner = CliRunner()


def invoke(args: list[str]):  # type: ignore[no-untyped-def]
    return runner.invoke(app, args)


def _defaults(command: str) -> dict[str, object]:
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return {p.name: p.default for p in params}


def test_eval_exact_and_parallel_agree(trained_run: Path, verses_text: str, tmp_path: Path) -> None:
    held = tmp_path / "held.txt"
    held.write_text(verses_text[-20_000:], encoding="utf-8")
    rows = {}
    for extra in (["--exact"], [], ["--streams", "1"]):
        r = invoke(["eval-perplexity", str(held), "--json", "-c", str(trained_run), *extra])
        assert r.exit_code == 0, r.output
        rows[" ".join(extra)] = json.loads(r.stdout)["files"][0]
    exact, par, one = rows["--exact"], rows[""], rows["--streams 1"]
    assert exact["protocol"] == one["protocol"] == "exact"
    assert par["protocol"] == "64 streams, burn-in 256"
    assert exact["tokens_scored"] == par["tokens_scored"] == 19_999
    assert exact["nats_per_char"] == one["nats_per_char"]
    assert abs(par["nats_per_char"] - exact["nats_per_char"]) < 2e-3 * exact["nats_per_char"]


def test_eval_defaults_are_the_evaluation_s() -> None:
    """One source: charrnn.protocols, read by the command, the scoring code and training."""
    for module in (eval_cli, evaluation):
        source = inspect.getsource(module)
        assert "DEFAULT_STREAMS =" not in source and "DEFAULT_BURN_IN =" not in source
        assert (module.DEFAULT_STREAMS, module.DEFAULT_BURN_IN) == (64, 256)
    assert TrainConfig().eval_streams == protocols.DEFAULT_STREAMS
    d = _defaults("eval-perplexity")
    assert d["streams"] == evaluation.DEFAULT_STREAMS and d["burn_in"] == evaluation.DEFAULT_BURN_IN
    score = inspect.signature(evaluation.score_text).parameters
    assert score["streams"].default == evaluation.DEFAULT_STREAMS
    assert score["burn_in"].default == evaluation.DEFAULT_BURN_IN


def test_burn_in_has_an_upper_bound_and_a_long_one_is_quiet(trained_run: Path) -> None:
    r = invoke(["eval-perplexity", "-", "-c", str(trained_run), "--burn-in", str(10**30)])
    assert r.exit_code == 2 and "--burn-in" in r.output
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's slice warning must not reach the user
        r = runner.invoke(
            app,
            ["eval-perplexity", "-", "-c", str(trained_run), "--json", "--burn-in", "1073741824"],
            input="THE WOLF OF THE NORTH\n" * 20,
        )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["files"][0]["chars"] == 22 * 20
    assert eval_cli.MAX_BURN_IN == 1073741824


def test_the_table_names_the_checkpoint_scored(trained_run: Path) -> None:
    r = runner.invoke(app, ["eval-perplexity", "-", "-c", str(trained_run)], input="THE WOLF\n" * 9)
    assert r.exit_code == 0, r.output
    header, row = r.stdout.strip().splitlines()
    best = f"{trained_run.name}/{ck.read_pointer(trained_run, ck.BEST)}"
    assert header.split()[-1] == "checkpoint" and row.split()[-1] == best
