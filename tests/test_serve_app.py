"""``charrnn serve``'s HTTP API against a real server (uvicorn in a subprocess): the official
``openai`` package as the client, raw HTTP for every bad input, the key, the limits, clients
that hang up, and SIGTERM."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from .conftest import run_cli
from .serve_helpers import KEY, Served, serve


@pytest.fixture(scope="module")
def server(trained_run: Path) -> Iterator[Served]:
    with serve(trained_run, "--max-streams", "64", "--max-prompt", "2000") as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)


def sample(run: Path, seed: int, prime: str, length: int, *extra: str) -> str:
    """What ``charrnn sample`` prints after the prime (its closing newline taken off)."""
    args = ["sample", "-c", str(run), "--seed", str(seed), "--prime", prime]
    r = run_cli([*args, "--length", str(length), *extra], cwd=run.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(prime)
    return r.stdout[len(prime) :].removesuffix("\n")


@pytest.mark.slow
def test_plain_and_streamed_text_is_charrnn_samples(
    client: openai.OpenAI, trained_run: Path
) -> None:
    want = sample(trained_run, 7, "The ", 120, "--temp", "0.8")
    plain = client.completions.create(
        model="run", prompt="The ", max_tokens=120, temperature=0.8, seed=7
    )
    assert plain.choices[0].text == want
    assert plain.choices[0].finish_reason == "length"
    assert plain.usage is not None and plain.usage.completion_tokens == 120
    chunks = list(
        client.completions.create(
            model="run", prompt="The ", max_tokens=120, temperature=0.8, seed=7, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == want
    assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.slow
def test_options_match_charrnn_sample(client: openai.OpenAI, trained_run: Path) -> None:
    want = sample(trained_run, 3, "And ", 150, "--temp", "1.2", "--top-k", "5", "--stop", "\n")
    got = client.completions.create(
        model="run", prompt="And ", max_tokens=150, temperature=1.2, seed=3, stop="\n",
        extra_body={"top_k": 5},
    )  # fmt: skip
    assert got.choices[0].text == want
    greedy = sample(trained_run, 0, "the ", 60, "--temp", "0")
    got = client.completions.create(model="run", prompt="the ", max_tokens=60, temperature=0)
    assert got.choices[0].text == greedy


def test_models_health_and_one_completion(server: Served, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["run"]
    r = httpx.get(server.url + "/health")  # no key needed
    assert r.status_code == 200 and r.json()["models"] == ["run"]
    got = client.completions.create(model="run", prompt=["a", "b"], n=2, max_tokens=5, seed=1)
    assert sorted(c.index for c in got.choices) == [0, 1, 2, 3]
    assert all(len(c.text) == 5 for c in got.choices)
    assert got.choices[0].text != got.choices[1].text or got.choices[0].text == ""


def test_logprobs(client: openai.OpenAI) -> None:
    got = client.completions.create(model="run", prompt="The ", max_tokens=10, seed=2, logprobs=3)
    lp = got.choices[0].logprobs
    assert lp is not None and lp.tokens is not None and lp.token_logprobs is not None
    assert "".join(lp.tokens) == got.choices[0].text
    assert all(x is not None and x <= 0 for x in lp.token_logprobs)
    assert lp.top_logprobs is not None and all(len(t) == 3 for t in lp.top_logprobs)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"prompt": "a", "max_tokens": "ten"}, 400, "max_tokens"),
        ({"prompt": "a", "max_tokens": 100_001}, 400, "max_tokens"),
        ({"prompt": "a", "max_tokens": -1}, 400, "max_tokens"),
        ({"prompt": "a", "n": 17}, 400, "n"),
        ({"prompt": "a", "temperature": -1}, 400, "temperature"),
        ({"prompt": "a", "temperature": "hot"}, 400, "temperature"),
        ({"prompt": "a", "top_p": 0}, 400, "top_p"),
        ({"prompt": "a", "top_k": -3}, 400, "top_k"),
        ({"prompt": "a", "seed": -1}, 400, "seed"),
        ({"prompt": "a", "seed": 2**40}, 400, "seed"),
        ({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
        ({"prompt": "a", "stop": 5}, 400, "stop"),
        ({"prompt": 5}, 400, "prompt"),
        ({"prompt": []}, 400, "prompt"),
        ({"prompt": "x" * 2001}, 400, "prompt"),
        ({"prompt": "a", "stream": "yes"}, 400, "stream"),
        ({"prompt": "a", "logprobs": 99}, 400, "logprobs"),
        ({"prompt": "a", "echo": True}, 400, "echo"),
        ({"prompt": "a", "model": "../../etc/passwd"}, 404, "model"),
        ({"prompt": "a", "model": 3}, 400, "model"),
        ([1, 2], 400, None),
    ],
)
def test_bad_completion_requests(server: Served, body: object, status: int, param: str) -> None:
    r = httpx.post(server.url + "/v1/completions", json=body, headers=server.headers())
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"] and error["type"]
    assert "Traceback" not in r.text
    assert server.healthy()


def test_bad_bodies_routes_and_key(server: Served) -> None:
    url, h = server.url, server.headers()
    r = httpx.post(url + "/v1/completions", content=b"{not json", headers=h)
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = httpx.post(url + "/v1/completions", content=b"\xff\xfe", headers=h)
    assert r.status_code == 400
    r = httpx.post(url + "/v1/completions", content=b"x" * (1 << 20 + 1), headers=h)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert httpx.get(url + "/v1/nothing", headers=h).status_code == 404
    assert httpx.get(url + "/v1/completions", headers=h).status_code == 405
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.get(url + "/v1/models", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(url + "/v1/score", json={"text": "a"}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["param"] == "text"
    assert server.healthy()


def test_metrics(server: Served) -> None:
    text = httpx.get(server.url + "/metrics", headers=server.headers()).text
    for name in (
        "charrnn_requests_total",
        "charrnn_generated_tokens_total",
        "charrnn_active_streams",
        "charrnn_queued_streams",
        "charrnn_time_to_first_character_seconds",
        "charrnn_step_seconds",
    ):
        assert name in text


@pytest.mark.slow
def test_score_gives_eval_perplexitys_figures(server: Served, trained_run: Path) -> None:
    text = "The sea is wide and the night is long.\nAnd the stars are bright.\n" * 3
    r = httpx.post(server.url + "/v1/score", json={"text": text}, headers=server.headers())
    assert r.status_code == 200, r.text
    got = r.json()
    held = trained_run.parent / "held.txt"
    held.write_text(text, encoding="utf-8")
    import json

    e = run_cli(["eval-perplexity", str(held), "-c", str(trained_run), "--json"], cwd=held.parent)
    want = json.loads(e.stdout)["files"][0]
    assert got["chars"] == want["chars"] and got["tokens_scored"] == want["tokens_scored"]
    assert got["nats_per_char"] == pytest.approx(want["nats_per_char"], rel=1e-6)
    assert len(got["tokens"]) == len(text) and got["tokens"][0]["nats"] is None
    per_token = sum(t["nats"] for t in got["tokens"][1:])
    assert per_token == pytest.approx(got["nats"], rel=1e-4)


@pytest.mark.slow
def test_clients_that_hang_up_free_their_streams(server: Served) -> None:
    Holders(server, 50, hold=False).release()  # each reads its first chunk and hangs up
    deadline = time.monotonic() + 10
    while server.gauge("charrnn_active_streams") > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.gauge("charrnn_active_streams") == 0
    assert server.healthy()


class Holders:
    """``count`` streaming requests kept open (reading) until :meth:`release`; with ``hold``
    False each hangs up after its first chunk."""

    def __init__(
        self, server: Served, count: int, max_tokens: int = 100_000, hold: bool = True
    ) -> None:
        self.server, self.stop = server, threading.Event()
        if not hold:
            self.stop.set()
        self.statuses: list[int] = []
        body = {"prompt": "x", "max_tokens": max_tokens, "stream": True, "temperature": 1.0}

        def hold() -> None:
            with (
                httpx.Client(timeout=30) as c,
                c.stream(
                    "POST", server.url + "/v1/completions", json=body, headers=server.headers()
                ) as r,
            ):
                self.statuses.append(r.status_code)
                for _ in r.iter_bytes():
                    if self.stop.is_set():
                        break

        self.threads = [threading.Thread(target=hold, daemon=True) for _ in range(count)]
        for t in self.threads:
            t.start()

    def wait_active(self, at_least: int) -> None:
        deadline = time.monotonic() + 20
        while self.server.gauge("charrnn_active_streams") < at_least:
            assert time.monotonic() < deadline, "the streams did not start"
            time.sleep(0.05)

    def release(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


@pytest.mark.slow
def test_a_seeded_request_beside_63_streams_is_charrnn_sample(
    server: Served, client: openai.OpenAI, trained_run: Path
) -> None:
    want = sample(trained_run, 11, "What ", 200, "--temp", "0.9", "--top-p", "0.95")
    others = Holders(server, 63)
    try:
        others.wait_active(63)
        got = client.completions.create(
            model="run", prompt="What ", max_tokens=200, temperature=0.9, top_p=0.95, seed=11
        )
        assert server.gauge("charrnn_active_streams") >= 63  # they were still running
    finally:
        others.release()
    assert got.choices[0].text == want
    assert set(others.statuses) == {200}


@pytest.mark.slow
def test_a_full_server_answers_503_with_retry_after(trained_run: Path) -> None:
    with serve(trained_run, "--max-streams", "2", "--max-queue", "1") as s:
        holders = Holders(s, 3)  # two run, one waits in the queue
        try:
            holders.wait_active(2)
            deadline = time.monotonic() + 10
            while s.gauge("charrnn_queued_streams") < 1:
                assert time.monotonic() < deadline, "the third stream did not queue"
                time.sleep(0.05)
            r = httpx.post(
                s.url + "/v1/completions",
                json={"prompt": "a", "max_tokens": 5},
                headers=s.headers(),
                timeout=10,
            )
        finally:
            holders.release()
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "server_error"
        assert "busy" in r.json()["error"]["message"]
        # the server keeps serving once the streams are gone
        ok = httpx.post(
            s.url + "/v1/completions",
            json={"prompt": "a", "max_tokens": 5},
            headers=s.headers(),
            timeout=10,
        )
        assert ok.status_code == 200 and len(ok.json()["choices"][0]["text"]) == 5
