"""Candidate questions from model replies: parsing, validity and length checks, the verifier's letter,
balanced answer letters and near-duplicate prompts; nothing here does I/O."""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import vstack
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

LETTERS = ("A", "B", "C", "D", "E")


class ReplyError(ValueError):
    """A reply that does not hold a question object."""


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
        tries.append(text[start : end + 1])
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
    """The key as an index: a bare letter ('B', '(b)', 'Option B'), the option's own text ('4'), or a letter and
    that option's text ('B. 4'); anything else ('B cells.' when B is not 'cells', 'A or C') is no key (None)."""
    text = _text(value)
    same = [i for i, option in enumerate(options) if _option_key(option) == _option_key(text)]
    if same and text.upper() not in letters:  # the option's text instead of its letter
        return same[0]
    match = re.fullmatch(r"(?:(?:the\s+)?(?:answer|option)\s*(?:is)?\s*:?\s*)?\(?([A-Za-z])\)?[.):]?", text, re.I)
    if match is None:  # a letter, a separator, then text that must be that letter's option
        match = re.fullmatch(r"\(?([A-Za-z])\)?[.):]\s+(.+)", text, re.S)
        if match and match.group(1).upper() in letters:
            option = options[list(letters).index(match.group(1).upper())]
            match = match if _option_key(option) == _option_key(match.group(2)) else None
    if match and match.group(1).upper() in letters:
        return list(letters).index(match.group(1).upper())
    return None  # no key: a misread key would teach the model a wrong answer


def _option_key(text: str) -> str:
    """An option as compared with the others: case, spacing and a final full stop ignored, but never a
    sign or symbol ('+1/2' and '-1/2', 'x > 0' and 'x < 0' are different answers)."""
    return " ".join(text.lower().split()).rstrip(".").strip()


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
        key = _option_key(option)
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
    """Near-duplicate prompts: cosine similarity of TF-IDF word vectors to every kept prompt. Thread-safe."""

    def __init__(self, references: Sequence[str], threshold: float, vocabulary: Sequence[str] = ()):
        self.threshold = threshold
        # words are hashed (no fitted vocabulary), so a new question's words always count
        self._hasher = HashingVectorizer(n_features=2**18, alternate_sign=False, norm=None, strip_accents="unicode")
        # document frequencies come from the kept prompts plus `vocabulary` texts (e.g. the passages), updated
        # on every add
        self._df = np.zeros(self._hasher.n_features)
        self._n_docs = 0
        self._lock = threading.RLock()
        self._keys: set[str] = set()
        self._kept: Any = None  # tf rows of kept prompts, stacked
        self._new: list = []  # tf rows kept since the last stacking
        self._weighted: tuple[Any, np.ndarray] | None = None  # (idf-weighted kept rows, idf)
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
