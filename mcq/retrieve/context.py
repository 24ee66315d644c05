"""A question's context: its top k passages, best first, joined within a character budget.

`retrieve_contexts` is the one function training, `infer.py`, `mcq.retrieve context` and the Kaggle kernel
call, so the context a model was trained with is the context it is scored with.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from mcq.retrieve.corpus import Passage
from mcq.retrieve.index import Index
from mcq.retrieve.settings import ContextSettings

log = logging.getLogger(__name__)

SEPARATOR = "\n"
QUERY_BATCH = 256


def query_text(prompt: str, options: Sequence[str]) -> str:
    """The query: the prompt and every non-empty option (this beat the prompt alone in the competition)."""
    return " ".join([prompt, *[o for o in options if o]]).strip()


def passage_text(passage: Passage, with_title: bool = True) -> str:
    return f"{passage.title}: {passage.text}" if with_title and passage.title else passage.text


def join_passages(texts: Sequence[str], max_chars: int) -> str:
    """Passages in order, one per line, until max_chars; the last one that does not fit is cut at a word."""
    out: list[str] = []
    used = 0
    for text in texts:
        room = max_chars - used - (len(SEPARATOR) if out else 0)
        if room <= 0:
            break
        if len(text) > room:
            cut = _cut_at_word(text, room, whole_words_only=bool(out))
            if cut:
                out.append(cut)
            break
        out.append(text)
        used += len(text) + (len(SEPARATOR) if len(out) > 1 else 0)
    return SEPARATOR.join(out)


def _cut_at_word(text: str, room: int, whole_words_only: bool) -> str:
    """The longest start of text within room characters that ends at a word's end; a first passage whose
    first word alone is too long is cut inside it (better some context than none)."""
    if text[room] == " ":
        return text[:room]
    head = text[:room]
    if " " in head:
        return head.rsplit(" ", 1)[0]
    return "" if whole_words_only else head


def retrieve_contexts(
    index: Index,
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
    settings: ContextSettings,
    progress: bool = False,
) -> list[str]:
    """One context per question, in question order."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    queries = [query_text(p, o) for p, o in zip(prompts, options)]
    with_title = index.settings.passages.title_in_text
    contexts: list[str] = []
    bar = tqdm(total=len(queries), unit=" questions", disable=not progress, mininterval=1.0, dynamic_ncols=True)
    for begin in range(0, len(queries), QUERY_BATCH):
        ids, _ = index.search(queries[begin : begin + QUERY_BATCH], settings.k)
        for row in ids:
            found = index.passages([int(i) for i in row if i >= 0])
            contexts.append(join_passages([passage_text(p, with_title) for p in found], settings.max_chars))
        bar.update(len(ids))
    bar.close()
    elapsed = time.perf_counter() - start
    log.info(
        "retrieved %d passages for %d questions from %d in %.1fs (%.0f questions/s)",
        settings.k, len(queries), len(index), elapsed, len(queries) / max(elapsed, 1e-9),
    )  # fmt: skip
    return contexts
