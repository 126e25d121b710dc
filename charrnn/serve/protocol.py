"""The API's shapes: requests read and checked field by field, OpenAI-style errors, and the
completion objects and stream chunks that the ``openai`` package reads.

Every problem with a request is an :class:`ApiError`: a 4xx status and an error object
``{"error": {"message", "type", "param", "code"}}`` naming the field (``param``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..sample.policy import DEFAULT_TEMPERATURE, SampleConfig

MAX_SEED = 2**32 - 1
MAX_STOPS = 4
MAX_STOP_LENGTH = 256
MAX_LOGPROBS = 20
DEFAULT_MAX_TOKENS = 16  # the OpenAI API's default
MAX_STREAMS = 256  # streams generated at once, per model (``--max-streams``)
MAX_QUEUE = 256  # streams that may wait for a free one, then 503 (``--max-queue``)


@dataclass(frozen=True)
class Limits:
    """What one request may ask (each a ``charrnn serve`` option)."""

    max_body: int = 1 << 20  # bytes (413 above)
    max_prompt: int = 16_384  # characters, all prompts of a request together
    max_tokens: int = 100_000
    max_n: int = 16
    time_limit: float = 300.0  # seconds a stream may run


class ApiError(Exception):
    """A request the server refuses: ``status``, a one-line ``message``, the field ``param``."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.headers: dict[str, str] | None = None
        self.status, self.message, self.param, self.kind, self.code = (
            status,
            message,
            param,
            kind,
            code,
        )

    def body(self) -> dict[str, Any]:
        """The OpenAI-style error object."""
        error = {"message": self.message, "type": self.kind, "param": self.param}
        return {"error": {**error, "code": self.code}}


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, f"{param}: {message}", param)


def _int(body: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(name, f"expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise _bad(name, f"{value} is out of range ({low} to {high:,})")
    return value


def _number(
    body: dict[str, Any], name: str, default: float | None, low: float, high: float, open_low: bool
) -> float | None:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _bad(name, f"expected a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < low or value > high or (open_low and value == low):
        bound = "<" if open_low else "<="
        raise _bad(name, f"{value:g} is out of range ({low:g} {bound} x <= {high:g})")
    return value


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(name, f"expected true or false, got {type(value).__name__}")
    return value


def _strings(body: dict[str, Any], name: str, default: list[str], most: int) -> list[str]:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(name, "expected a string or a list of strings")
    if not value and name == "prompt":
        raise _bad(name, "expected at least one prompt")
    if len(value) > most:
        raise _bad(name, f"at most {most} strings, got {len(value)}")
    return value


@dataclass(frozen=True)
class CompletionRequest:
    """A checked ``POST /v1/completions`` body."""

    model: str | None
    prompts: list[str]
    config: SampleConfig  # length = max_tokens; seed of the first choice
    n: int
    stops: tuple[str, ...]
    logprobs: int | None
    stream: bool
    include_usage: bool

    def seeds(self) -> list[int | None]:
        """The seed of each of the n choices of a prompt: seed, seed + 1, ... (mod 2**32)."""
        seed = self.config.seed
        return [None if seed is None else (seed + i) % (MAX_SEED + 1) for i in range(self.n)]


def model_field(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("model", f"expected a string, got {type(model).__name__}")
    return model


def parse_completion(body: Any, limits: Limits) -> CompletionRequest:
    """``body`` (parsed JSON) as a :class:`CompletionRequest`; raises :class:`ApiError`."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    prompts = _strings(body, "prompt", [""], limits.max_n)
    if sum(len(p) for p in prompts) > limits.max_prompt:
        raise _bad("prompt", f"longer than the limit of {limits.max_prompt:,} characters")
    stops = tuple(_strings(body, "stop", [], MAX_STOPS))
    if any(len(s) > MAX_STOP_LENGTH for s in stops):
        raise _bad("stop", f"a stop string is longer than {MAX_STOP_LENGTH} characters")
    length = _int(body, "max_tokens", DEFAULT_MAX_TOKENS, 0, limits.max_tokens)
    n = _int(body, "n", 1, 1, limits.max_n) or 1
    if n * len(prompts) > limits.max_n:
        raise _bad("n", f"n times the prompts is {n * len(prompts)}, above {limits.max_n}")
    temperature = _number(body, "temperature", DEFAULT_TEMPERATURE, 0.0, 100.0, False)
    top_p = _number(body, "top_p", None, 0.0, 1.0, True)
    top_k = _int(body, "top_k", None, 1, 1 << 20)
    if top_k == 0:
        top_k = None
    seed = _int(body, "seed", None, 0, MAX_SEED)
    logprobs = _int(body, "logprobs", None, 0, MAX_LOGPROBS)
    if _bool(body, "echo"):
        raise _bad("echo", "echo is not supported (the text never repeats the prompt)")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _bad("stream_options", "expected an object")
    config = SampleConfig(
        length=length or 0,
        temperature=DEFAULT_TEMPERATURE if temperature is None else temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
    )
    return CompletionRequest(
        model_field(body),
        prompts,
        config,
        n,
        stops,
        logprobs,
        _bool(body, "stream"),
        bool(options.get("include_usage")),
    )


def parse_score(body: Any, limits: Limits) -> tuple[str | None, str]:
    """(model, text) of a ``POST /v1/score`` body; raises :class:`ApiError`."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    text = body.get("text")
    if not isinstance(text, str):
        raise _bad("text", "expected a string")
    if len(text) < 2:
        raise _bad("text", "at least 2 characters are needed to score a text")
    if len(text) > limits.max_prompt:
        raise _bad("text", f"longer than the limit of {limits.max_prompt:,} characters")
    return model_field(body), text


def logprobs_object(
    infos: list[tuple[str, float | None, dict[str, float]]], offset: int
) -> dict[str, list[Any]]:
    """The legacy completions ``logprobs`` object for tokens ``infos`` starting at character
    ``offset`` of the choice's text."""
    tokens: list[str] = []
    lps: list[float | None] = []
    tops: list[dict[str, float]] = []
    offsets: list[int] = []
    for piece, lp, top in infos:
        tokens.append(piece)
        lps.append(lp)
        tops.append(top)
        offsets.append(offset)
        offset += len(piece)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def completion_object(
    cid: str, created: int, model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None
) -> dict[str, Any]:
    """A completion (or, with ``usage`` None, a stream chunk) in the OpenAI shape."""
    out: dict[str, Any] = {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        out["usage"] = usage
    return out


def usage_object(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
