"""Evidence scores: how well a question's context supports each option, with no trained model.

- `lexical`: the IDF mass of the option's distinguishing words and bigrams that the context holds (words every
  option shares are dropped; IDF over the index's own passages).
- `dense`: the highest cosine similarity of `prompt + option` with any sentence of the context, embedded by the
  index's own sentence-transformers model (or a named local one).

They are a reader of their own (`infer.py --reader evidence`) and members of the blend with the models' logits
(mcq.core.blend). A question without context scores 0 on every option (neutral once z-scored).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mcq.core.data import Questions
from mcq.errors import ConfigError
from mcq.retrieve import lexical

log = logging.getLogger(__name__)

KINDS = ("lexical", "dense")
ENCODE_BATCH = 64


@dataclass
class EvidenceScorer:
    """What the evidence scores need: word frequencies for lexical, an embedder for dense (None: no dense)."""

    freq: lexical.DocFreq
    embedder: object | None = None
    embedder_name: str = ""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The scores this scorer can give."""
        return KINDS if self.embedder is not None else ("lexical",)

    def scores(self, questions: Questions, kinds: Sequence[str], progress: bool = False) -> dict[str, np.ndarray]:
        """{kind: questions x options scores} for each asked kind."""
        missing = [k for k in kinds if k not in self.kinds]
        if missing:
            raise ConfigError(
                f"evidence {', '.join(missing)}: needs an embedder: an index built with --retriever dense or hybrid, "
                "or --evidence-embedder LOCAL_FOLDER (a sentence-transformers model)"
            )
        out = {}
        for kind in kinds:
            start = time.perf_counter()
            out[kind] = lexical_scores(questions, self.freq) if kind == "lexical" else self._dense(questions, progress)
            log.info("%s evidence for %d questions in %.1fs", kind, len(questions), time.perf_counter() - start)
        return out

    def _dense(self, questions: Questions, progress: bool) -> np.ndarray:
        return dense_scores(questions, lambda texts: embed(self.embedder, texts, progress))


def contexts_of(questions: Questions) -> list[str]:
    return list(questions.contexts) if questions.contexts is not None else [""] * len(questions)


def lexical_scores(questions: Questions, freq: lexical.DocFreq) -> np.ndarray:
    """Per option, the IDF mass of its distinguishing terms found in the question's context."""
    rows = [
        lexical.support(options, context, freq) if context.strip() else [0.0] * len(options)
        for options, context in zip(questions.options, contexts_of(questions))
    ]
    return np.asarray(rows, dtype=np.float32).reshape(len(questions), len(questions.letters))


def dense_scores(questions: Questions, encode) -> np.ndarray:
    """Per option, the highest cosine of `prompt + option` with a sentence of the context; `encode(texts)` gives
    L2-normalised vectors. Every sentence and every pair is encoded once, in large batches."""
    n = len(questions.letters)
    split = [lexical.split_sentences(c) for c in contexts_of(questions)]
    queries = [f"{p} {o}".strip() for p, opts in zip(questions.prompts, questions.options) for o in opts]
    sentences = [s for parts in split for s in parts]
    if not sentences:
        return np.zeros((len(questions), n), dtype=np.float32)
    vectors = encode(queries + sentences)
    pairs, found = vectors[: len(queries)], vectors[len(queries) :]
    out = np.zeros((len(questions), n), dtype=np.float32)
    at = 0
    for q, parts in enumerate(split):
        if parts:
            similarity = pairs[q * n : (q + 1) * n] @ found[at : at + len(parts)].T
            out[q] = similarity.max(axis=1)
        at += len(parts)
    return out


def embed(model, texts: list[str], progress: bool = False) -> np.ndarray:
    """L2-normalised float32 vectors of a sentence-transformers model."""
    vectors = model.encode(
        texts, batch_size=ENCODE_BATCH, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress
    )
    return np.asarray(vectors, dtype=np.float32)


def scorer_for(index, embedder: str | None = None, questions: Questions | None = None) -> EvidenceScorer:
    """The evidence scorer of an open index (its word frequencies and, dense or hybrid, its embedder); without
    an index, word frequencies over the questions' own contexts. `embedder` (a local sentence-transformers
    folder or package:<module>) gives dense evidence an embedder where the index has none, or replaces it."""
    if index is not None:
        freq = index.doc_freq()
    else:
        freq = (
            lexical.DocFreq.of(s for c in contexts_of(questions) for s in lexical.split_sentences(c))
            if questions
            else lexical.DocFreq()
        )
    if embedder:
        from mcq.retrieve.dense import load_embedder

        return EvidenceScorer(freq, load_embedder(embedder), embedder)
    model = index.embedder() if index is not None else None
    name = str(index.settings.embedder) if model is not None else ""
    return EvidenceScorer(freq, model, name)
