"""Tokenise questions into multiple-choice features: one (first, second) sequence pair per option.

The layout is the model's `ReaderSettings.input_layout`. `context-first` pairs the context with `prompt [SEP]
option`, so the question and its answer sit together and only the context is cut (from its end); a question
without context, or whose prompt and option leave no room for one, is read as `prompt` / `option`.
`prompt-context` (models exported before the setting existed) pairs `prompt [SEP] context` with the option,
cutting the end of the context, then of the prompt. The option is never cut in training; at inference an
option too long for max_length alone is cut at its end so every question is scored.
"""

from __future__ import annotations

import logging

from datasets import Dataset
from transformers import DataCollatorForMultipleChoice, PreTrainedTokenizerBase

from mcq.core.data import Questions
from mcq.core.reader import ReaderSettings
from mcq.errors import DataError
from mcq.retrieve import lexical

log = logging.getLogger(__name__)

LEGACY = ReaderSettings.legacy()
MIN_CONTEXT_TOKENS = 16  # context-first: fewer tokens of room than this and the question is read without context


def first_texts(questions: Questions, sep: str) -> list[str]:
    """prompt-context's first sequence of every pair: the prompt, followed by the context when there is one."""
    if questions.contexts is None:
        return list(questions.prompts)
    return [f"{p} {sep} {c}" if c else p for p, c in zip(questions.prompts, questions.contexts)]


def encode(
    questions: Questions,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cut_long_options: bool = False,
    reader: ReaderSettings = LEGACY,
) -> Dataset:
    """A Dataset of nested per-option token ids (+ labels when answers are known, + length for grouping);
    an option too long for max_length is refused (training) or cut at its end (inference: cut_long_options)."""
    n = len(questions.letters)
    options = [opt for opts in questions.options for opt in opts]
    too_long = _options_too_long(questions, tokenizer, max_length)
    if too_long and not cut_long_options:
        k, length = too_long[0]
        i, j = divmod(k, n)
        raise DataError(
            f"{questions.source}: question id '{questions.ids[i]}', column '{questions.letters[j]}': "
            f"the option alone is {length} tokens, which with the prompt does not fit max_length={max_length}. "
            "Raise max_length or shorten the option (options are never truncated)."
        )
    if too_long:
        options = _cut_options(options, too_long, tokenizer, max_length, questions)
    firsts, seconds = pair_texts(questions, options, tokenizer, max_length, reader)
    enc = tokenizer(firsts, seconds, truncation="only_first", max_length=max_length)
    _report_truncation(questions.source, [len(ids) for ids in enc["input_ids"]], max_length)
    columns = {k: [v[i : i + n] for i in range(0, len(v), n)] for k, v in enc.items()}
    columns["length"] = [max(len(ids) for ids in group) for group in columns["input_ids"]]
    if questions.answers is not None:
        columns["labels"] = list(questions.answers)
    return Dataset.from_dict(columns)


def pair_texts(
    questions: Questions,
    options: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    reader: ReaderSettings,
) -> tuple[list[str], list[str]]:
    """(first, second) texts of every pair, question-major, laid out as `reader` says."""
    n = len(questions.letters)
    sep = tokenizer.sep_token or "\n"
    contexts = list(questions.contexts) if questions.contexts is not None else [""] * len(questions)
    by_question = [options[i : i + n] for i in range(0, len(options), n)]
    if reader.input_layout == "prompt-context":
        if reader.context_select == "lexical":
            seconds_len = _lengths(tokenizer, options)
            rooms = [
                max_length - _specials(tokenizer) - len_p - 1 - max(seconds_len[i * n : (i + 1) * n])
                for i, len_p in enumerate(_lengths(tokenizer, questions.prompts))
            ]
            contexts = select_contexts(questions, contexts, rooms, tokenizer)
        firsts = [f"{p} {sep} {c}" if c else p for p, c in zip(questions.prompts, contexts)]
        return [f for f in firsts for _ in range(n)], options
    joined = [f"{p} {sep} {o}" for p, opts in zip(questions.prompts, by_question) for o in opts]
    joined_len = _lengths(tokenizer, joined)
    rooms = [max_length - _specials(tokenizer) - max(joined_len[i * n : (i + 1) * n]) for i in range(len(questions))]
    closed = [not c.strip() or room < MIN_CONTEXT_TOKENS for c, room in zip(contexts, rooms)]
    squeezed = sum(bool(c.strip()) and room < MIN_CONTEXT_TOKENS for c, room in zip(contexts, rooms))
    if squeezed:
        log.warning(
            "%s: %d question(s) leave fewer than %d tokens of max_length %d for context after their prompt and "
            "longest option; they are read without context (raise max_length to give them some)",
            questions.source, squeezed, MIN_CONTEXT_TOKENS, max_length,
        )  # fmt: skip
    if reader.context_select == "lexical":
        contexts = select_contexts(questions, contexts, rooms, tokenizer)
    firsts, seconds = [], []
    for i, (prompt, context, opts) in enumerate(zip(questions.prompts, contexts, by_question)):
        firsts += [prompt if closed[i] else context] * n
        seconds += list(opts) if closed[i] else joined[i * n : (i + 1) * n]
    return firsts, seconds


def select_contexts(
    questions: Questions, contexts: list[str], rooms: list[int], tokenizer: PreTrainedTokenizerBase
) -> list[str]:
    """Each context cut down to its sentences that share the most rare words with the prompt and options,
    kept in document order, within that question's room in tokens. Word rarity (IDF) is counted over the
    sentences of every context of the set."""
    split = [lexical.split_sentences(c) for c in contexts]
    flat = [s for sentences in split for s in sentences]
    if not flat:
        return contexts
    freq = lexical.DocFreq.of(flat)
    lengths = _lengths(tokenizer, flat)
    out, at = [], 0
    for sentences, prompt, opts, room in zip(split, questions.prompts, questions.options, rooms):
        own = lengths[at : at + len(sentences)]
        at += len(sentences)
        scores = lexical.sentence_scores(sentences, " ".join([prompt, *opts]), freq)
        out.append(" ".join(sentences[i] for i in lexical.pick_sentences(scores, own, max(room, 0))))
    return out


def _lengths(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def _specials(tokenizer: PreTrainedTokenizerBase) -> int:
    return tokenizer.num_special_tokens_to_add(pair=True)


def _report_truncation(source: str, lengths: list[int], max_length: int) -> None:
    """Say how many pairs were cut: with retrieved context, many cut pairs mean max_length is too low."""
    full = sum(length >= max_length for length in lengths)
    if full:
        log.info(
            "%s: %d of %d (question, option) pairs (%.1f%%) reach max_length %d; their context, then prompt, "
            "was cut (raise max_length to keep more)",
            source,
            full,
            len(lengths),
            100 * full / len(lengths),
            max_length,
        )


def _options_too_long(questions: Questions, tokenizer: PreTrainedTokenizerBase, max_length: int) -> list:
    """(flat pair index, option tokens) of every option that alone leaves no room for the prompt."""
    reserve = tokenizer.num_special_tokens_to_add(pair=True) + 1  # + at least one prompt token
    flat = [opt for opts in questions.options for opt in opts]
    lengths = [len(ids) for ids in tokenizer(flat, add_special_tokens=False)["input_ids"]]
    return [(k, length) for k, length in enumerate(lengths) if length + reserve > max_length]


def _cut_options(
    options: list[str], too_long: list, tokenizer: PreTrainedTokenizerBase, max_length: int, questions: Questions
) -> list[str]:
    """The options with each long one cut at its end, leaving a quarter of max_length to the prompt; one warning."""
    keep = max_length - tokenizer.num_special_tokens_to_add(pair=True) - max(1, max_length // 4)
    cut = list(options)
    for k, _ in too_long:
        offsets = tokenizer(options[k], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        cut[k] = options[k][: offsets[keep - 1][1]]
    n = len(questions.letters)
    named = [f"{questions.ids[k // n]} {questions.letters[k % n]} ({length} tokens)" for k, length in too_long[:10]]
    log.warning(
        "%s: %d option(s) longer than max_length %d alone were cut at their end to %d tokens so every question is "
        "scored (raise max_length to keep them whole): %s%s",
        questions.source,
        len(too_long),
        max_length,
        keep,
        ", ".join(named),
        f" and {len(too_long) - 10} more" if len(too_long) > 10 else "",
    )
    return cut


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def pair_examples(features: Dataset) -> list[dict]:
    """Every (question, option) pair as a one-option example, question-major (pair q*n + j)."""
    # a multiple-choice head scores each pair on its own (the options meet only in the loss), so pairs of
    # different questions can share a batch and be sorted by their own length
    columns = {c: features[c] for c in MODEL_INPUTS if c in features.column_names}
    n = len(columns["input_ids"][0])
    return [{c: [v[q][j]] for c, v in columns.items()} for q in range(len(features)) for j in range(n)]


class MultipleChoiceCollator(DataCollatorForMultipleChoice):
    """The library's multiple-choice collator, fed only model inputs (drops e.g. 'length'); it also
    takes unlabelled questions (a test file), for which it returns no labels."""

    def __call__(self, examples, return_tensors=None):
        labelled = "labels" in examples[0]
        keep = MODEL_INPUTS + ("labels",)
        examples = [
            {k: v for k, v in ex.items() if k in keep} | ({} if labelled else {"labels": 0}) for ex in examples
        ]
        batch = super().__call__(examples, return_tensors)
        if not labelled:
            del batch["labels"]
        return batch
