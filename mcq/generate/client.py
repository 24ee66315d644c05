"""OpenAI-compatible chat-completions client for mcq.generate: endpoints from flags or environment,
retries with backoff, and secrets kept out of everything printed."""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mcq.errors import ConfigError, GenerateError
from mcq.secrets import redact

if TYPE_CHECKING:
    from mcq.generate.config import GenerateConfig

# Worth another try: rate limits, overload, gateway hiccups, request timeouts.
RETRY_CODES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 600.0


class RequestFailed(RuntimeError):
    """One request that failed for good (retries spent, or a 4xx that retrying will not fix)."""


# ---------------------------------------------------------------------------------------------------
# Secrets: the key goes only into the Authorization header; everything printed passes through redact.


def redact_url(url: str) -> str:
    """The URL without a password in it or values of key-like query parameters."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = re.sub(r"(?i)((?:api[_-]?)?key|token|secret)=[^&]*", r"\1=***", parts.query)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class Endpoint:
    """Where to send chat requests; the key is hidden from repr so it never lands in a log line."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def shown_url(self) -> str:
        return redact_url(self.url)


def resolve_endpoints(
    cfg: GenerateConfig, env: Mapping[str, str], api_key: str | None = None, verify_api_key: str | None = None
) -> tuple[Endpoint, Endpoint]:
    """Generation and verification endpoints from flags, then environment variables."""
    base = _base_url(cfg.base_url or env.get("MCQ_LLM_BASE_URL"), "base_url", "--base-url", "MCQ_LLM_BASE_URL")
    model = cfg.model or env.get("MCQ_LLM_MODEL")
    if not model:
        raise ConfigError(
            f"model: no model name; pass --model NAME or set MCQ_LLM_MODEL (GET {redact_url(base)}/models lists them)"
        )
    key = _clean_key(api_key or env.get("MCQ_LLM_API_KEY") or env.get("OPENAI_API_KEY"), "--api-key / MCQ_LLM_API_KEY")
    verify_base = cfg.verify_base_url or env.get("MCQ_LLM_VERIFY_BASE_URL")
    verify_base = (
        _base_url(verify_base, "verify_base_url", "--verify-base-url", "MCQ_LLM_VERIFY_BASE_URL")
        if verify_base
        else base
    )
    # The main key goes to the main server only; another server needs its own key.
    verify_key = _clean_key(
        verify_api_key or env.get("MCQ_LLM_VERIFY_API_KEY"), "--verify-api-key / MCQ_LLM_VERIFY_API_KEY"
    ) or (key if verify_base == base else None)
    verify_model = cfg.verify_model or env.get("MCQ_LLM_VERIFY_MODEL") or model
    return Endpoint(base, model, key), Endpoint(verify_base, verify_model, verify_key)


def _clean_key(key: str | None, where: str) -> str | None:
    """A key as sent: surrounding whitespace dropped (a key read from a file ends with a newline, which
    http.client would refuse in a header and quote, key and all, in its error); none inside."""
    key = (key or "").strip()
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ConfigError(f"{where}: the API key holds a space or control character; check how it was set")
    return key or None


def _base_url(value: str | None, name: str, flag: str, var: str) -> str:
    if not value:
        raise ConfigError(f"{name}: no LLM server; pass {flag} http://127.0.0.1:8000/v1 or set {var}")
    value = value.strip().rstrip("/")
    value = value.removesuffix("/chat/completions")
    if urllib.parse.urlsplit(value).scheme not in {"http", "https"}:
        raise ConfigError(f"{name}: '{redact_url(value)}' is not an http(s) URL, e.g. http://127.0.0.1:8000/v1")
    return value


# ---------------------------------------------------------------------------------------------------
# HTTP client with retries


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(
    attempt: int, base: float, cap: float, rng: random.Random, retry_after: float | None = None
) -> float:
    """Wait before retry `attempt` (0-based): the server's Retry-After if given, else capped doubling with jitter."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_S)
    ceiling = min(cap, base * 2**attempt)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are refused: following one would send the Authorization header to another address."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


@dataclass
class Usage:
    """Request, retry and token counts over all threads (tokens only where the server reports them)."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    reported: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_reply(self, usage: object) -> None:
        with self._lock:
            self.requests += 1
            if isinstance(usage, dict):
                self.reported = True
                for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
                    value = usage.get(name)
                    if isinstance(value, int):
                        setattr(self, name, getattr(self, name) + value)

    def add_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def tokens(self) -> dict | None:
        if not self.reported:
            return None
        return {"prompt": self.prompt_tokens, "completion": self.completion_tokens, "total": self.total_tokens}


class ChatClient:
    """POST chat-completions requests to one endpoint, retrying what a retry can fix."""

    def __init__(
        self,
        endpoint: Endpoint,
        usage: Usage,
        timeout: float,
        max_retries: int,
        backoff: float,
        backoff_max: float,
        stop: threading.Event | None = None,
    ):
        self.endpoint = endpoint
        self.usage = usage
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.stop = stop or threading.Event()  # set when the run ends early: no more retries
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._rng = random.Random()

    def complete(
        self,
        messages: list[dict],
        temperature: float,
        max_tokens: int,
        seed: int | None = None,
        json_mode: bool = False,
    ) -> str:
        """The reply text of one chat completion; raises RequestFailed or GenerateError."""
        body = {
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if seed is not None:
            body["seed"] = seed
        if json_mode:
            body["response_format"] = {"type": "json_object"}
        data = json.dumps(body).encode("utf-8")
        for attempt in range(self.max_retries + 1):
            if self.stop.is_set():  # the run ended early (Ctrl-C, a fatal error): no new request, paid or not
                raise RequestFailed(f"{self.endpoint.shown_url}: not sent, the run is stopping")
            try:
                reply = self._post(data)
            except _Retryable as err:
                if attempt == self.max_retries or self.stop.is_set():
                    raise RequestFailed(
                        self._clean(f"{self.endpoint.shown_url}: {err} (gave up after {attempt + 1} tries)")
                    ) from None
                self.usage.add_retry()
                self.stop.wait(backoff_delay(attempt, self.backoff, self.backoff_max, self._rng, err.retry_after))
                continue
            self.usage.add_reply(reply.get("usage"))
            return self._content(reply)
        raise AssertionError("unreachable")

    def _post(self, data: bytes) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"
        request = urllib.request.Request(self.endpoint.url, data=data, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise self._http_error(err) from None
        except TimeoutError:
            raise _Retryable(f"no reply within {self.timeout:g} s (--timeout)") from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError):
                raise _Retryable(f"no reply within {self.timeout:g} s (--timeout)") from None
            raise _Retryable(f"cannot connect ({err.reason}); is the server running?") from None
        except (ConnectionError, http.client.HTTPException, OSError) as err:
            raise _Retryable(f"connection failed ({type(err).__name__}: {err})") from None
        try:
            reply = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise _Retryable(f"reply is not JSON: {self._clean(raw[:200].decode('utf-8', 'replace'))!r}") from None
        if not isinstance(reply, dict):
            raise RequestFailed(f"{self.endpoint.shown_url}: reply is not a JSON object")
        return reply

    def _http_error(self, err: urllib.error.HTTPError) -> Exception:
        code, url = err.code, self.endpoint.shown_url
        try:
            said = self._clean(err.read(500).decode("utf-8", "replace").strip())
        except (OSError, http.client.HTTPException):
            said = ""
        said = f"; the server said: {said}" if said else ""
        if code in RETRY_CODES or code >= 500:
            return _Retryable(f"HTTP {code}", retry_after_seconds(err.headers.get("Retry-After")))
        if code in (401, 403):
            return GenerateError(
                f"{url}: HTTP {code}: the server refused the API key. Check the key: set MCQ_LLM_API_KEY "
                f"(or OPENAI_API_KEY) or pass --api-key{said}"
            )
        if code == 404:
            return GenerateError(
                f"{url}: HTTP 404. Check --base-url (most servers want it to end in /v1) and "
                f"--model '{self.endpoint.model}'{said}"
            )
        if 300 <= code < 400:
            where = redact_url(err.headers.get("Location", "?"))
            return GenerateError(f"{url}: HTTP {code} redirect to {where}; pass the final address as --base-url")
        return RequestFailed(f"{url}: HTTP {code}{said}")

    def _content(self, reply: dict) -> str:
        try:
            content = reply["choices"][0]["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise RequestFailed(f"{self.endpoint.shown_url}: reply has no choices[0].message") from None
        return content if isinstance(content, str) else ""

    def _clean(self, text: str) -> str:
        return redact(text, [self.endpoint.api_key])
