"""Generate extra training questions with an LLM behind any OpenAI-compatible chat endpoint.

One request per (passage, question number) slot; each reply goes through switchable checks (parse,
validity, lengths, near-duplicates, a blind verification answer) and, when it passes, is appended to
the output at once with balanced answer letters. A rerun of the same command resumes: slots already
attempted (accepted or rejected) are read back from the output and its `.progress.jsonl` sidecar.

    python -m mcq.generate --passages passages/ --out generated.csv --base-url http://127.0.0.1:8000/v1 --model M
"""
from __future__ import annotations

import argparse
import csv
import email.utils
import hashlib
import http.client
import io
import json
import logging
import os
import random
import re
import string
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import vstack
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize
from tqdm import tqdm

from .config import ConfigError, add_dataclass_flags, flag_overrides, help_field, load_config
from .data import DataError, Questions, read_questions
from .io import atomic_write_text

log = logging.getLogger(__name__)

LETTERS = ("A", "B", "C", "D", "E")
PROMPTS = Path(__file__).parent / "prompts"
GENERATE_FIELDS = frozenset({"examples", "passage", "source", "number", "n", "letters"})
VERIFY_FIELDS = frozenset({"question", "options", "letters", "passage", "source"})
# Worth another try: rate limits, overload, gateway hiccups, request timeouts.
RETRY_CODES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 600.0


@dataclass
class GenerateConfig:
    """One generation run; the API keys are not part of it (flags or environment only, never saved)."""

    out: str = help_field("", "output file, .csv or .jsonl (appended to; a rerun resumes)")
    passages: str | None = help_field(None, "grounding passages: a .txt (blank-line separated), a folder of .txt files, or a CSV/Parquet/JSONL with a 'text' or 'context' column")
    n: int = help_field(1, "questions (requests) per passage")
    n_questions: int = help_field(100, "questions (requests) in all when there are no passages")
    examples: str | None = help_field(None, "question file (with answers) to draw few-shot examples from")
    shots: int = help_field(3, "few-shot examples per request, drawn with the seed (0: zero-shot)")
    existing: list[str] = help_field([], "question files whose prompts the new ones must not near-duplicate")
    template: str | None = help_field(None, "generation prompt template (default: mcq/prompts/generate.txt, or generate_no_passage.txt without passages)")
    verify_template: str | None = help_field(None, "verification prompt template (default: mcq/prompts/verify.txt)")
    base_url: str | None = help_field(None, "OpenAI-compatible API base, e.g. http://127.0.0.1:8000/v1 (env MCQ_LLM_BASE_URL)")
    model: str | None = help_field(None, "model name the server serves (env MCQ_LLM_MODEL)")
    verify_base_url: str | None = help_field(None, "API base for verification (default: base_url; env MCQ_LLM_VERIFY_BASE_URL)")
    verify_model: str | None = help_field(None, "model for verification (default: model; env MCQ_LLM_VERIFY_MODEL)")
    temperature: float = help_field(0.8, "sampling temperature of generation requests")
    max_tokens: int = help_field(1024, "completion token limit of a generation request")
    verify_max_tokens: int = help_field(16, "completion token limit of a verification request (raise it for reasoning models)")
    json_mode: bool = help_field(False, "ask for response_format json_object (vLLM, llama-server and OpenAI support it)")
    seed: int = help_field(0, "seed of few-shot draws, request seeds and option shuffles; part of every question id")
    # checks, each switchable (--no-NAME)
    lengths: bool = help_field(True, "reject prompts and options outside the length bounds")
    min_prompt_chars: int = help_field(20, "shortest prompt kept")
    max_prompt_chars: int = help_field(1000, "longest prompt kept")
    min_option_chars: int = help_field(1, "shortest option kept")
    max_option_chars: int = help_field(400, "longest option kept")
    dedup: bool = help_field(True, "reject near-duplicates of existing, few-shot or already generated prompts")
    dedup_threshold: float = help_field(0.9, "TF-IDF cosine similarity at or above which a prompt is a near-duplicate")
    balance: bool = help_field(True, "shuffle options so every answer letter is the key equally often")
    verify: bool = help_field(True, "a second call answers each question blind; keep it only if it picks the key")
    # scale and robustness
    concurrency: int = help_field(4, "requests in flight at once")
    timeout: float = help_field(120.0, "seconds to wait for one reply before retrying")
    max_retries: int = help_field(5, "retries per request on HTTP 429/5xx, timeouts and connection errors")
    backoff: float = help_field(1.0, "first retry waits about this many seconds, doubling each time (with jitter)")
    backoff_max: float = help_field(60.0, "longest wait between retries (a server's Retry-After is honoured up to 600 s)")
    max_failures_in_row: int = help_field(20, "stop the run when this many requests in a row fail for good")
    limit: int | None = help_field(None, "attempt at most this many new slots in this run (rerun to continue)")
    passage_max_chars: int = help_field(6000, "cut passages longer than this many characters")
    write_context: bool = help_field(False, "also write the passage as a 'context' column")
    progress: bool = help_field(True, "show a progress bar on stderr")

    def __post_init__(self):
        if not self.out:
            raise ConfigError("out: no output file; pass --out generated.csv (or .jsonl)")
        if Path(self.out).suffix.lower() not in {".csv", ".jsonl"}:
            raise ConfigError(f"out: '{self.out}' must end in .csv or .jsonl")
        for name in ("n", "n_questions", "concurrency", "max_tokens", "verify_max_tokens", "max_failures_in_row", "passage_max_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("shots", "max_retries", "min_prompt_chars", "min_option_chars", "backoff", "backoff_max", "temperature"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.timeout <= 0:
            raise ConfigError(f"timeout: must be positive, got {self.timeout}")
        if not 0 < self.dedup_threshold <= 1:
            raise ConfigError(f"dedup_threshold: must be in (0, 1], got {self.dedup_threshold}")
        if self.min_prompt_chars > self.max_prompt_chars or self.min_option_chars > self.max_option_chars:
            raise ConfigError("length bounds: each min_*_chars must be <= its max_*_chars")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"limit: must be >= 0, got {self.limit}")


class GenerateError(RuntimeError):
    """A problem that stops the whole run (bad key, wrong URL, server gone); the message says what to do."""


class RequestFailed(RuntimeError):
    """One request that failed for good (retries spent, or a 4xx that retrying will not fix)."""


class ReplyError(ValueError):
    """A reply that does not hold a question object."""


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


def redact(text: str, secrets: Sequence[str | None]) -> str:
    """Text with every secret (of 4+ characters) replaced by ***."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


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


def resolve_endpoints(cfg: GenerateConfig, env: Mapping[str, str], api_key: str | None = None,
                      verify_api_key: str | None = None) -> tuple[Endpoint, Endpoint]:
    """Generation and verification endpoints from flags, then environment variables."""
    base = _base_url(cfg.base_url or env.get("MCQ_LLM_BASE_URL"), "base_url", "--base-url", "MCQ_LLM_BASE_URL")
    model = cfg.model or env.get("MCQ_LLM_MODEL")
    if not model:
        raise ConfigError(f"model: no model name; pass --model NAME or set MCQ_LLM_MODEL (GET {redact_url(base)}/models lists them)")
    key = api_key or env.get("MCQ_LLM_API_KEY") or env.get("OPENAI_API_KEY") or None
    verify_base = cfg.verify_base_url or env.get("MCQ_LLM_VERIFY_BASE_URL")
    verify_base = _base_url(verify_base, "verify_base_url", "--verify-base-url", "MCQ_LLM_VERIFY_BASE_URL") if verify_base else base
    # The main key goes to the main server only; another server needs its own key.
    verify_key = verify_api_key or env.get("MCQ_LLM_VERIFY_API_KEY") or (key if verify_base == base else None)
    verify_model = cfg.verify_model or env.get("MCQ_LLM_VERIFY_MODEL") or model
    return Endpoint(base, model, key), Endpoint(verify_base, verify_model, verify_key)


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


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random, retry_after: float | None = None) -> float:
    """Wait before retry `attempt` (0-based): the server's Retry-After if given, else capped doubling with jitter."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_S)
    ceiling = min(cap, base * 2 ** attempt)
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

    def __init__(self, endpoint: Endpoint, usage: Usage, timeout: float, max_retries: int, backoff: float,
                 backoff_max: float, stop: threading.Event | None = None):
        self.endpoint = endpoint
        self.usage = usage
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.stop = stop or threading.Event()  # set when the run ends early: no more retries
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._rng = random.Random()

    def complete(self, messages: list[dict], temperature: float, max_tokens: int, seed: int | None = None,
                 json_mode: bool = False) -> str:
        """The reply text of one chat completion; raises RequestFailed or GenerateError."""
        body = {"model": self.endpoint.model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
        if seed is not None:
            body["seed"] = seed
        if json_mode:
            body["response_format"] = {"type": "json_object"}
        data = json.dumps(body).encode("utf-8")
        for attempt in range(self.max_retries + 1):
            try:
                reply = self._post(data)
            except _Retryable as err:
                if attempt == self.max_retries or self.stop.is_set():
                    raise RequestFailed(self._clean(f"{self.endpoint.shown_url}: {err} (gave up after {attempt + 1} tries)")) from None
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


# ---------------------------------------------------------------------------------------------------
# Pure parts: parsing replies, checking questions, balancing letters, near-duplicates


@dataclass(frozen=True)
class Candidate:
    """A question as the model wrote it; answer is an index into options, or None if unreadable."""

    prompt: str
    options: tuple[str, ...]
    answer: int | None


_THINK = re.compile(r"<think>.*?(</think>|$)", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_LETTER_PREFIX = re.compile(r"^\(?[A-Z][.):]\s+")


def parse_reply(text: str, letters: Sequence[str] = LETTERS) -> Candidate:
    """The question in a reply: one JSON object (fenced or bare) with prompt, A..E (or options) and answer."""
    obj = _json_object(text)
    fields = {str(k).strip().lower(): v for k, v in obj.items()}
    prompt = fields.get("prompt", fields.get("question"))
    if not isinstance(prompt, str):
        raise ReplyError("no 'prompt' string")
    options = _reply_options(fields, letters)
    if options is None:
        raise ReplyError(f"no options {letters[0]}-{letters[-1]}")
    return Candidate(prompt.strip(), options, _answer_index(fields.get("answer"), options, letters))


def _json_object(text: str) -> dict:
    text = _THINK.sub("", text or "")
    tries = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        tries.append(text[start:end + 1])
    for chunk in tries:
        try:
            value = json.loads(chunk.strip())
        except ValueError:
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):
            value = value[0]
        if isinstance(value, dict):
            return value
    raise ReplyError("no JSON object in the reply")


def _reply_options(fields: dict, letters: Sequence[str]) -> tuple[str, ...] | None:
    if any(x.lower() in fields for x in letters):
        return tuple(_text(fields.get(x.lower())) for x in letters)
    listed = fields.get("options", fields.get("choices"))
    if isinstance(listed, dict):
        listed = {str(k).strip().upper(): v for k, v in listed.items()}
        return tuple(_text(listed.get(x)) for x in letters)
    if isinstance(listed, list):
        return tuple(_LETTER_PREFIX.sub("", _text(v)) for v in listed)
    return None


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _answer_index(value: object, options: Sequence[str], letters: Sequence[str]) -> int | None:
    text = _text(value)
    if text in options and text.upper() not in letters:  # the option's text instead of its letter
        return options.index(text)
    match = re.fullmatch(r"(?:option\s*)?\(?([A-Za-z])\)?[.):]?(?:\s.*)?", text, re.S | re.I)
    if match and match.group(1).upper() in letters:
        return list(letters).index(match.group(1).upper())
    return None


def check_question(c: Candidate, letters: Sequence[str] = LETTERS) -> str | None:
    """Why the question cannot be used (empty or repeated options, bad key), or None if it can."""
    if not c.prompt:
        return "empty prompt"
    if len(c.options) != len(letters):
        return f"{len(c.options)} options, need {len(letters)}"
    for letter, option in zip(letters, c.options):
        if not option:
            return f"option {letter} is empty"
    seen: dict[str, str] = {}
    for letter, option in zip(letters, c.options):
        key = _normalise(option) or option
        if key in seen:
            return f"options {seen[key]} and {letter} are the same"
        seen[key] = letter
    if c.answer is None:
        return f"answer is not one of {', '.join(letters)}"
    return None


def check_lengths(c: Candidate, min_prompt: int, max_prompt: int, min_option: int, max_option: int) -> str | None:
    """Why the prompt or an option is too short or too long, or None."""
    if not min_prompt <= len(c.prompt) <= max_prompt:
        return f"prompt has {len(c.prompt)} characters, outside {min_prompt}-{max_prompt}"
    for letter, option in zip(LETTERS, c.options):
        if not min_option <= len(option) <= max_option:
            return f"option {letter} has {len(option)} characters, outside {min_option}-{max_option}"
    return None


def parse_letter(text: str, letters: Sequence[str] = LETTERS) -> int | None:
    """The option a verification reply picked ('C', '(C)', 'Answer: C', 'The answer is C.'), or None."""
    text = _THINK.sub("", text or "").strip()
    span = "".join(letters)
    patterns = (
        rf"\(?([{span}])\)?[.):]?",  # the whole reply is the letter
        rf"^\**\(?([{span}])[).:\]]",  # 'C) ...' or 'C. ...'
        rf"(?i:answer)(?:\s+is)?\s*[:\-]?\s*\**\(?([{span}])\b",
    )
    match = re.fullmatch(patterns[0], text, re.I) or re.search(patterns[1], text) or re.search(patterns[2], text)
    if match:
        return list(letters).index(match.group(1).upper())
    alone = set(re.findall(rf"\b([{span}])\b", text))
    return list(letters).index(alone.pop()) if len(alone) == 1 else None


def next_key_position(counts: Sequence[int], rng: random.Random) -> int:
    """The key position to use next: a random one among the least used, so counts never differ by more than 1."""
    low = min(counts)
    return rng.choice([i for i, n in enumerate(counts) if n == low])


def place_answer(c: Candidate, position: int, rng: random.Random) -> Candidate:
    """The same question with the correct option at `position` and the distractors shuffled around it."""
    assert c.answer is not None
    distractors = [o for i, o in enumerate(c.options) if i != c.answer]
    rng.shuffle(distractors)
    distractors.insert(position, c.options[c.answer])
    return Candidate(c.prompt, tuple(distractors), position)


def _normalise(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


class Deduper:
    """Near-duplicate prompts: cosine similarity of TF-IDF word vectors to every kept prompt.

    Words are hashed (no fitted vocabulary), so a new question's words always count, and document
    frequencies come from the kept prompts plus `vocabulary` texts (e.g. the passages), updated on
    every add. Thread-safe.
    """

    def __init__(self, references: Sequence[str], threshold: float, vocabulary: Sequence[str] = ()):
        self.threshold = threshold
        self._hasher = HashingVectorizer(n_features=2**18, alternate_sign=False, norm=None, strip_accents="unicode")
        self._df = np.zeros(self._hasher.n_features)
        self._n_docs = 0
        self._lock = threading.RLock()
        self._keys: set[str] = set()
        self._kept = None  # tf rows of kept prompts, stacked
        self._new: list = []  # tf rows kept since the last stacking
        self._weighted = None
        if vocabulary:
            self._count(self._tf(list(vocabulary)))
        for text in references:
            if text.strip():
                self._keep(text)

    def __len__(self) -> int:
        return len(self._keys)

    def similarity(self, text: str) -> float:
        """Highest cosine similarity of `text` to a kept prompt (1.0 for the same words)."""
        with self._lock:
            if _normalise(text) in self._keys:
                return 1.0
            if self._kept is None and not self._new:
                return 0.0
            query = self._tf([text])
            if query.nnz == 0:
                return 0.0
            kept, idf = self._stacked()
            query = normalize(query.multiply(idf).tocsr())
            best = (kept @ query.T).max() if kept.shape[0] else 0.0
            if self._new:
                recent = normalize(vstack(self._new).tocsr().multiply(idf).tocsr())
                best = max(best, (recent @ query.T).max())
            return float(best)

    def is_duplicate(self, text: str) -> bool:
        return self.similarity(text) >= self.threshold

    def add(self, text: str) -> bool:
        """Keep `text` unless it near-duplicates a kept prompt; True if kept."""
        with self._lock:
            if self.is_duplicate(text):
                return False
            self._keep(text)
            return True

    def _keep(self, text: str) -> None:
        tf = self._tf([text])
        self._count(tf)
        self._new.append(tf)
        self._keys.add(_normalise(text))

    def _tf(self, texts: list[str]):
        counts = self._hasher.transform(texts).tocsr()
        counts.sum_duplicates()
        counts.data = 1.0 + np.log(counts.data)  # sublinear tf: a repeated word is not 5x the evidence
        return counts

    def _count(self, tf) -> None:
        self._df += np.bincount(tf.indices, minlength=self._hasher.n_features)
        self._n_docs += tf.shape[0]

    def _stacked(self):
        """Kept rows weighted by idf; restacked (and idf refreshed) once the unstacked rows reach 5%."""
        rows = 0 if self._kept is None else self._kept.shape[0]
        if self._weighted is None or len(self._new) > max(32, rows // 20):
            self._kept = vstack(([self._kept] if self._kept is not None else []) + self._new).tocsr()
            self._new = []
            idf = np.log((1.0 + self._n_docs) / (1.0 + self._df)) + 1.0  # scikit-learn's smoothed idf
            self._weighted = (normalize(self._kept.multiply(idf).tocsr()), idf)
        return self._weighted


# ---------------------------------------------------------------------------------------------------
# Inputs: passages, few-shot examples, templates, slots


@dataclass(frozen=True)
class Passage:
    """One grounding passage; name says where it came from (file, paragraph or row)."""

    name: str
    text: str


def split_paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, stripped, empty ones dropped."""
    return [p.strip() for p in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")) if p.strip()]


def load_passages(path: str | Path, max_chars: int | None = None) -> list[Passage]:
    """Passages from a .txt file, a folder of .txt files or a table; repeated texts are dropped."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        passages = [Passage(f.relative_to(path).as_posix(), _read_text(f).strip()) for f in files]
    elif path.is_file() and path.suffix.lower() == ".txt":
        passages = [Passage(f"{path.name}#{i + 1}", p) for i, p in enumerate(split_paragraphs(_read_text(path)))]
    elif path.is_file():
        passages = _table_passages(path)
    else:
        raise DataError(f"{path}: no such file or folder of passages. Check --passages.")
    passages = _unique_passages([p for p in passages if p.text], path)
    if max_chars:
        cut = sum(len(p.text) > max_chars for p in passages)
        if cut:
            log.warning("%s: %d passage(s) cut to %d characters (--passage-max-chars)", path, cut, max_chars)
        passages = [Passage(p.name, p.text[:max_chars]) for p in passages]
    if not passages:
        raise DataError(f"{path}: no passages found (empty files, or no .txt files in the folder).")
    return passages


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 (byte {err.start}). Re-save the file as UTF-8.") from err


def _table_passages(path: Path) -> list[Passage]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix == ".jsonl":
        frame = pd.read_json(path, lines=True, dtype=False)
    else:
        raise DataError(f"{path}: unknown passage file type '{suffix}'. Use .txt, a folder of .txt, .csv, .parquet or .jsonl.")
    column = next((c for c in ("text", "context") if c in frame.columns), None)
    if column is None:
        raise DataError(f"{path}: no 'text' or 'context' column (columns are {list(frame.columns)}). Rename the passage column.")
    texts = frame[column].fillna("").astype(str).str.strip().tolist()
    return [Passage(f"{path.name}:row {i + 1}", t) for i, t in enumerate(texts)]


def _unique_passages(passages: list[Passage], path: Path) -> list[Passage]:
    seen: set[str] = set()
    unique = []
    for p in passages:
        if p.text not in seen:
            seen.add(p.text)
            unique.append(p)
    if len(unique) < len(passages):
        log.warning("%s: %d repeated passage(s) dropped", path, len(passages) - len(unique))
    return unique


def load_template(path: str | Path, allowed: frozenset[str]) -> string.Template:
    """A prompt template with $placeholders; unknown placeholders are an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: template file not found")
    template = string.Template(path.read_text(encoding="utf-8"))
    if not template.is_valid():
        raise ConfigError(f"{path}: a '$' that is not a placeholder; write $$ for a literal $")
    unknown = sorted(set(template.get_identifiers()) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown placeholder(s) {['$' + u for u in unknown]}; known: {sorted('$' + a for a in allowed)}")
    return template


def format_examples(questions: Questions | None, picks: Sequence[int]) -> str:
    """The few-shot block for $examples: a heading and one JSON object per example, or '' for none."""
    if questions is None or not picks:
        return ""
    lines = ["", "Here are example questions from the exam, each in the reply format:"]
    for i in picks:
        obj = {"prompt": questions.prompts[i], **dict(zip(questions.letters, questions.options[i]))}
        obj["answer"] = questions.letters[questions.answers[i]]
        lines.append(json.dumps(obj, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def format_options(options: Sequence[str], letters: Sequence[str] = LETTERS) -> str:
    """Options as the verification prompt shows them: 'A) ...' one per line."""
    return "\n".join(f"{x}) {o}" for x, o in zip(letters, options))


@dataclass(frozen=True)
class Slot:
    """One request: question `number` (1-based, of `total`) on `passage`; `id` is stable across reruns."""

    id: str
    number: int
    total: int
    passage: Passage | None

    @property
    def seed(self) -> int:
        return int(self.id.removeprefix("gen-")[:8], 16)


def slot_id(model: str, seed: int, passage_text: str, number: int) -> str:
    """A deterministic id from what defines the request, so a rerun recognises its own rows."""
    digest = hashlib.sha1(f"{model}\0{seed}\0{passage_text}\0{number}".encode("utf-8")).hexdigest()
    return f"gen-{digest[:16]}"


def plan_slots(passages: list[Passage] | None, n: int, n_questions: int, model: str, seed: int) -> list[Slot]:
    """Every request of the run: n per passage, or n_questions when there are no passages."""
    if not passages:
        return [Slot(slot_id(model, seed, "", q), q, n_questions, None) for q in range(1, n_questions + 1)]
    return [Slot(slot_id(model, seed, p.text, q), q, n, p) for p in passages for q in range(1, n + 1)]


# ---------------------------------------------------------------------------------------------------
# Output: rows appended and flushed one by one, a progress sidecar, and resume


def output_columns(with_context: bool) -> list[str]:
    return ["id", "prompt", *LETTERS, "answer", "source"] + (["context"] if with_context else [])


def sidecar(out: Path, suffix: str) -> Path:
    """`out` with `suffix` appended: generated.csv -> generated.csv.progress.jsonl."""
    return out.with_name(out.name + suffix)


class _AppendFile:
    """A file that each line (or CSV row) is appended to, flushed and synced, so a crash loses nothing kept."""

    def __init__(self, path: Path, header: str = ""):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "ab")
        if header and self._file.tell() == 0:
            self.write(header)

    def write(self, text: str) -> int:
        """Append text; return the file size in bytes after it."""
        self._file.write(text.encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def format_row(row: dict, columns: list[str], fmt: str) -> str:
    """One output record as text: a CSV line or a JSON line."""
    if fmt == "jsonl":
        return json.dumps({c: row[c] for c in columns}, ensure_ascii=False) + "\n"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([row[c] for c in columns])
    return buffer.getvalue()


@dataclass
class ResumeState:
    """What earlier runs into the same output left: attempted slot ids, kept prompts, key-letter counts."""

    done: set[str] = field(default_factory=set)
    prompts: list[str] = field(default_factory=list)
    key_counts: list[int] = field(default_factory=lambda: [0] * len(LETTERS))
    rows: int = 0


def read_progress(path: Path) -> list[dict]:
    """Records of the progress sidecar; a torn last line (a crash mid-write) is skipped."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            log.warning("%s: line %d unreadable (a crash mid-write?); that slot will be retried", path, number)
    return records


def load_resume_state(out: Path, columns: list[str]) -> ResumeState:
    """Read an earlier run's output and progress; cut any row written after the last recorded one."""
    progress = read_progress(sidecar(out, ".progress.jsonl"))
    state = ResumeState(done={r["id"] for r in progress if "id" in r})
    if not out.is_file():
        return state
    offsets = [r["offset"] for r in progress if r.get("status") == "accepted" and isinstance(r.get("offset"), int)]
    _cut_unrecorded_tail(out, max(offsets, default=None))
    questions = _read_output(out, columns)
    if questions is not None:
        state.done |= set(questions.ids)
        state.prompts = list(questions.prompts)
        state.rows = len(questions)
        for a in questions.answers:
            state.key_counts[a] += 1
    return state


def _cut_unrecorded_tail(out: Path, last_offset: int | None) -> None:
    """Drop bytes after the last recorded row (written but unrecorded, or torn by a crash): that slot is redone."""
    size = out.stat().st_size
    if last_offset is None:
        with open(out, "rb") as f:  # nothing recorded: only a torn last line can be told apart
            data = f.read()
        last_offset = data.rfind(b"\n") + 1 if data and not data.endswith(b"\n") else size
    if size > last_offset:
        log.warning("%s: dropping %d byte(s) written after the last recorded row", out, size - last_offset)
        os.truncate(out, last_offset)


def _read_output(out: Path, columns: list[str]) -> Questions | None:
    text = out.read_text(encoding="utf-8")
    if out.suffix.lower() == ".csv":
        header = next(csv.reader(io.StringIO(text)), [])
        if header and header != columns:
            raise GenerateError(
                f"{out}: exists with columns {header}, this run writes {columns}. "
                "Use another --out, or the same --write-context as the run that made it."
            )
        if len(text.splitlines()) <= 1:
            return None
    elif not text.strip():
        return None
    questions = read_questions(out, require_answer=True)
    if questions.letters != LETTERS:
        raise GenerateError(f"{out}: has options {''.join(questions.letters)}, not A-E; use another --out")
    return questions


# ---------------------------------------------------------------------------------------------------
# The run


@dataclass
class Outcome:
    """What one slot came to: a candidate that passed the worker's checks, or a rejection reason."""

    slot: Slot
    candidate: Candidate | None = None
    reason: str | None = None
    detail: str = ""


class Generator:
    """One generation run: plans slots, runs them on a thread pool, keeps or rejects each reply."""

    def __init__(self, cfg: GenerateConfig, gen: Endpoint, verifier: Endpoint):
        self.cfg = cfg
        self.usage = Usage()
        self.stop = threading.Event()
        self.gen_endpoint, self.verify_endpoint = gen, verifier
        client_args = dict(usage=self.usage, timeout=cfg.timeout, max_retries=cfg.max_retries,
                           backoff=cfg.backoff, backoff_max=cfg.backoff_max, stop=self.stop)
        self.gen_client = ChatClient(gen, **client_args)
        self.verify_client = ChatClient(verifier, **client_args)
        self.secrets = [gen.api_key, verifier.api_key]
        self.out = Path(cfg.out)
        self.fmt = self.out.suffix.lower().lstrip(".")
        self.columns = output_columns(cfg.write_context)
        self.passages = load_passages(cfg.passages, cfg.passage_max_chars) if cfg.passages else None
        self.examples = self._load_examples()
        default = "generate.txt" if self.passages else "generate_no_passage.txt"
        self.template = load_template(cfg.template or PROMPTS / default, GENERATE_FIELDS)
        self.verify_template = load_template(cfg.verify_template or PROMPTS / "verify.txt", VERIFY_FIELDS)
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        self.failures_in_row = 0

    def _load_examples(self) -> Questions | None:
        if not self.cfg.examples or self.cfg.shots == 0:
            return None
        questions = read_questions(self.cfg.examples, require_answer=True)
        if questions.letters != LETTERS:
            raise DataError(f"{self.cfg.examples}: few-shot examples need options A-E, got {''.join(questions.letters)}")
        if len(questions) < self.cfg.shots:
            log.warning("%s: %d question(s), fewer than --shots %d; using all", self.cfg.examples, len(questions), self.cfg.shots)
        return questions

    def _reference_prompts(self, resumed: list[str]) -> list[str]:
        prompts = list(resumed) + (list(self.examples.prompts) if self.examples else [])
        for path in self.cfg.existing:
            prompts += read_questions(path).prompts
        return prompts

    # -- building requests (pure given the slot) --

    def generation_messages(self, slot: Slot) -> list[dict]:
        """The chat messages of a slot's generation request; few-shot picks are seeded by the slot."""
        rng = random.Random(slot.seed)
        picks = []
        if self.examples is not None:
            picks = rng.sample(range(len(self.examples)), min(self.cfg.shots, len(self.examples)))
        text = self.template.substitute(
            examples=format_examples(self.examples, picks),
            passage=slot.passage.text if slot.passage else "",
            source=slot.passage.name if slot.passage else "",
            number=slot.number, n=slot.total, letters=", ".join(LETTERS),
        )
        return [{"role": "user", "content": text}]

    def verify_messages(self, slot: Slot, options: Sequence[str], question: str) -> list[dict]:
        text = self.verify_template.substitute(
            question=question, options=format_options(options), letters=", ".join(LETTERS),
            passage=slot.passage.text if slot.passage else "", source=slot.passage.name if slot.passage else "",
        )
        return [{"role": "user", "content": text}]

    # -- worker thread: one slot from request to a checked candidate --

    def attempt(self, slot: Slot) -> Outcome:
        """Request one question and run the checks that need no shared state (in a worker thread)."""
        cfg = self.cfg
        try:
            reply = self.gen_client.complete(self.generation_messages(slot), cfg.temperature, cfg.max_tokens,
                                             seed=slot.seed % 2**31, json_mode=cfg.json_mode)
        except RequestFailed as err:
            return Outcome(slot, reason="request_failed", detail=str(err))
        try:
            candidate = parse_reply(reply)
        except ReplyError as err:
            return Outcome(slot, reason="parse", detail=f"{err}: {reply[:120]!r}")
        problem = check_question(candidate)
        if problem:
            return Outcome(slot, reason="invalid", detail=problem)
        if cfg.lengths:
            problem = check_lengths(candidate, cfg.min_prompt_chars, cfg.max_prompt_chars, cfg.min_option_chars, cfg.max_option_chars)
            if problem:
                return Outcome(slot, reason="length", detail=problem)
        if cfg.dedup and self.deduper.is_duplicate(candidate.prompt):
            return Outcome(slot, reason="duplicate", detail=candidate.prompt[:80])
        if cfg.verify:
            return self._verify(slot, candidate)
        return Outcome(slot, candidate)

    def _verify(self, slot: Slot, candidate: Candidate) -> Outcome:
        """Ask for the answer without the key, options shuffled so a position bias cannot agree by luck."""
        order = list(range(len(candidate.options)))
        random.Random(slot.seed + 1).shuffle(order)
        shown = [candidate.options[i] for i in order]
        messages = self.verify_messages(slot, shown, candidate.prompt)
        try:
            reply = self.verify_client.complete(messages, 0.0, self.cfg.verify_max_tokens, seed=slot.seed % 2**31)
        except RequestFailed as err:
            return Outcome(slot, reason="request_failed", detail=str(err))
        picked = parse_letter(reply)
        if picked is None:
            return Outcome(slot, reason="verify_unclear", detail=repr(reply[:80]))
        if order[picked] != candidate.answer:
            return Outcome(slot, reason="verify_wrong", detail=f"verifier picked {LETTERS[picked]}")
        return Outcome(slot, candidate)

    # -- main thread: keep or reject --

    def keep(self, outcome: Outcome) -> None:
        """Final duplicate check, balance the key letter, append the row, then record the slot."""
        candidate, slot = outcome.candidate, outcome.slot
        if self.cfg.dedup and not self.deduper.add(candidate.prompt):
            self.reject(Outcome(slot, reason="duplicate", detail="near-duplicate of a question kept meanwhile"))
            return
        rng = random.Random(slot.seed + 2)
        if self.cfg.balance:
            candidate = place_answer(candidate, next_key_position(self.key_counts, rng), rng)
        row = {"id": slot.id, "prompt": candidate.prompt, **dict(zip(LETTERS, candidate.options)),
               "answer": LETTERS[candidate.answer], "source": slot.passage.name if slot.passage else ""}
        if self.cfg.write_context:
            row["context"] = slot.passage.text if slot.passage else ""
        offset = self.writer.write(format_row(row, self.columns, self.fmt))
        self.progress.write(json.dumps({"id": slot.id, "status": "accepted", "offset": offset}) + "\n")
        self.key_counts[candidate.answer] += 1
        self.accepted += 1

    def reject(self, outcome: Outcome) -> None:
        """Count the rejection and record the slot as done (failed requests excepted)."""
        self.rejected[outcome.reason] += 1
        log.debug("slot %s rejected (%s): %s", outcome.slot.id, outcome.reason, redact(outcome.detail, self.secrets))
        if outcome.reason == "request_failed":
            # Not recorded: a rerun tries the slot again once the server is back.
            self.failures_in_row += 1
            if self.failures_in_row >= self.cfg.max_failures_in_row:
                raise GenerateError(
                    f"stopping: {self.failures_in_row} requests in a row failed; the last: "
                    f"{redact(outcome.detail, self.secrets)}. Fix the server, then rerun the same command to resume."
                )
            return
        self.progress.write(json.dumps({"id": outcome.slot.id, "status": "rejected", "reason": outcome.reason}) + "\n")

    def handle(self, outcome: Outcome) -> None:
        """Keep or reject one finished slot (in the main thread, so writes never interleave)."""
        if outcome.reason != "request_failed":
            self.failures_in_row = 0
        if outcome.candidate is not None:
            self.keep(outcome)
        else:
            self.reject(outcome)

    # -- the loop --

    def run(self) -> dict:
        """Resume from what the output holds, request the open slots, save and return the summary."""
        start = time.perf_counter()
        state = load_resume_state(self.out, self.columns)
        self.key_counts = list(state.key_counts)
        self.deduper = Deduper(self._reference_prompts(state.prompts), self.cfg.dedup_threshold,
                               [p.text for p in self.passages or []])
        slots = plan_slots(self.passages, self.cfg.n, self.cfg.n_questions, self.gen_endpoint.model, self.cfg.seed)
        open_slots = [s for s in slots if s.id not in state.done]
        todo = open_slots if self.cfg.limit is None else open_slots[: self.cfg.limit]
        log.info("%d slot(s) planned, %d done earlier, %d to request from %s (model %s)",
                 len(slots), len(slots) - len(open_slots), len(todo), self.gen_endpoint.shown_url, self.gen_endpoint.model)
        header = ",".join(self.columns) + "\n" if self.fmt == "csv" else ""
        self.writer = _AppendFile(self.out, header)
        self.progress = _AppendFile(sidecar(self.out, ".progress.jsonl"))
        stopped = "limit" if len(todo) < len(open_slots) else None
        try:
            self._loop(todo)
        except BaseException as err:
            stopped = "interrupted" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
            raise
        finally:
            self.writer.close()
            self.progress.close()
            counts = (len(slots), len(slots) - len(open_slots), len(todo))
            summary = self.summary(counts, state, stopped, time.perf_counter() - start)
            atomic_write_text(sidecar(self.out, ".summary.json"), json.dumps(summary, indent=2) + "\n")
        return summary

    def _loop(self, todo: list[Slot]) -> None:
        pending = iter(todo)
        in_flight: dict[Future, Slot] = {}
        pool = ThreadPoolExecutor(max_workers=self.cfg.concurrency, thread_name_prefix="mcq-generate")
        bar = tqdm(total=len(todo), desc="generate", unit="q", file=sys.stderr, disable=not self.cfg.progress)
        finished = False
        try:
            while True:
                while len(in_flight) < 2 * self.cfg.concurrency and (slot := next(pending, None)) is not None:
                    in_flight[pool.submit(self.attempt, slot)] = slot
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    in_flight.pop(future)
                    self.handle(future.result())
                    bar.update(1)
                    bar.set_postfix(kept=self.accepted, rejected=sum(self.rejected.values()), refresh=False)
            finished = True
        finally:
            bar.close()
            # On an error, requests in flight are dropped (unrecorded, a rerun repeats them) and retry no more.
            if not finished:
                self.stop.set()
            pool.shutdown(wait=finished, cancel_futures=True)

    def summary(self, counts: tuple[int, int, int], state: ResumeState, stopped: str | None, seconds: float) -> dict:
        """What the run did, for <out>.summary.json: counts, rejections by reason, retries, tokens."""
        planned, done_before, requested = counts
        cfg = asdict(self.cfg)
        cfg["base_url"], cfg["verify_base_url"] = redact_url(self.gen_endpoint.base_url), redact_url(self.verify_endpoint.base_url)
        cfg["model"], cfg["verify_model"] = self.gen_endpoint.model, self.verify_endpoint.model
        return {
            "out": str(self.out),
            "slots_planned": planned,
            "done_before": done_before,
            "requested": requested,
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "rows_in_output": state.rows + self.accepted,
            "answer_letters": dict(zip(LETTERS, self.key_counts)),
            "requests": self.usage.requests,
            "retries": self.usage.retries,
            "tokens": self.usage.tokens(),
            "seconds": round(seconds, 1),
            "stopped": redact(stopped, self.secrets) if stopped else None,
            "config": cfg,
        }


def run_generation(cfg: GenerateConfig, api_key: str | None = None, verify_api_key: str | None = None,
                   env: Mapping[str, str] | None = None) -> dict:
    """Generate, check and append questions to cfg.out; return the summary (also saved as <out>.summary.json)."""
    gen, check = resolve_endpoints(cfg, os.environ if env is None else env, api_key, verify_api_key)
    return Generator(cfg, gen, check).run()


def format_summary(summary: dict) -> str:
    """The summary as a few lines for the terminal."""
    rejected = ", ".join(f"{k} {v}" for k, v in summary["rejected"].items()) or "none"
    tokens = summary["tokens"]
    lines = [
        f"requested {summary['requested']} of {summary['slots_planned']} slots ({summary['done_before']} done before)",
        f"accepted  {summary['accepted']}  -> {summary['rows_in_output']} rows in {summary['out']}",
        f"rejected  {rejected}",
        f"retries   {summary['retries']} over {summary['requests']} replies",
        f"tokens    {tokens['total'] if tokens else 'not reported'}",
        f"letters   {' '.join(f'{k}:{v}' for k, v in summary['answer_letters'].items())}",
        f"summary   {sidecar(Path(summary['out']), '.summary.json')}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mcq.generate",
        description="Generate extra training questions with an OpenAI-compatible LLM, with quality checks.",
    )
    parser.add_argument("--config", help="YAML file of the options below (flags override it)")
    add_dataclass_flags(parser, GenerateConfig)
    parser.add_argument("--api-key", help="API key (prefer env MCQ_LLM_API_KEY or OPENAI_API_KEY: flags show in `ps`)")
    parser.add_argument("--verify-api-key", help="API key of the verification server (env MCQ_LLM_VERIFY_API_KEY)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    secrets = [args.api_key, args.verify_api_key, os.environ.get("MCQ_LLM_API_KEY"),
               os.environ.get("OPENAI_API_KEY"), os.environ.get("MCQ_LLM_VERIFY_API_KEY")]
    try:
        cfg = load_config(GenerateConfig, args.config, flag_overrides(args, GenerateConfig))
        summary = run_generation(cfg, api_key=args.api_key, verify_api_key=args.verify_api_key)
    except (ConfigError, DataError, GenerateError) as err:
        print(f"error: {redact(str(err), secrets)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: kept rows are saved; rerun the same command to resume", file=sys.stderr)
        return 130
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
