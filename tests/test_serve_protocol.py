"""Requests read field by field, and the shapes of answers."""

from __future__ import annotations

import pytest

from charrnn.serve.protocol import ApiError, Limits, logprobs_object, parse_completion, parse_score


def test_a_full_request() -> None:
    req = parse_completion(
        {"model": "m", "prompt": ["a", "b"], "max_tokens": 9, "temperature": 0, "top_p": 0.5,
         "top_k": 3, "n": 2, "stop": "\n", "seed": 2**32 - 1, "stream": True, "logprobs": 0},
        Limits(),
    )  # fmt: skip
    assert req.prompts == ["a", "b"] and req.n == 2 and req.stops == ("\n",)
    assert req.config.length == 9 and req.config.temperature == 0 and req.config.top_k == 3
    assert req.seeds() == [2**32 - 1, 0]
    assert req.stream and req.logprobs == 0


def test_defaults_and_refusals() -> None:
    req = parse_completion({}, Limits())
    assert req.prompts == [""] and req.config.length == 16 and req.config.seed is None
    with pytest.raises(ApiError) as e:
        parse_completion({"n": 3, "prompt": ["a"] * 6}, Limits())
    assert e.value.param == "n" and e.value.status == 400
    with pytest.raises(ApiError) as e:
        parse_completion({"max_tokens": True}, Limits())
    assert e.value.body()["error"]["param"] == "max_tokens"
    with pytest.raises(ApiError):
        parse_score({"text": "x" * 20}, Limits(max_prompt=10))
    assert parse_score({"text": "ab", "model": "m"}, Limits()) == ("m", "ab")


def test_logprobs_object_offsets() -> None:
    lp = logprobs_object([("a", -1.0, {"a": -1.0}), ("bc", -2.0, {})], 3)
    assert lp["text_offset"] == [3, 4] and lp["tokens"] == ["a", "bc"]
