"""Tokenise questions into multiple-choice features: one (prompt [+ context], option) pair per option.

The prompt comes first and the context after it, and only the first sequence is truncated from the
right, so a long input loses the end of its context first, then the end of its prompt, and never
any of the option.
"""

from __future__ import annotations

import logging

from datasets import Dataset
from transformers import DataCollatorForMultipleChoice, PreTrainedTokenizerBase

from mcq.core.data import Questions
from mcq.errors import DataError

log = logging.getLogger(__name__)


def first_texts(questions: Questions, sep: str) -> list[str]:
    """The first sequence of every pair: the prompt, followed by the context when there is one."""
    if questions.contexts is None:
        return list(questions.prompts)
    return [f"{p} {sep} {c}" if c else p for p, c in zip(questions.prompts, questions.contexts)]


def encode(
    questions: Questions, tokenizer: PreTrainedTokenizerBase, max_length: int, cut_long_options: bool = False
) -> Dataset:
    """A Dataset of nested per-option token ids (+ labels when answers are known, + length for grouping);
    an option too long for max_length is refused (training) or cut at its end (inference: cut_long_options)."""
    n = len(questions.letters)
    firsts = first_texts(questions, tokenizer.sep_token or "\n")
    pairs_first = [text for text in firsts for _ in range(n)]
    pairs_second = [opt for opts in questions.options for opt in opts]
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
        pairs_second = _cut_options(pairs_second, too_long, tokenizer, max_length, questions)
    enc = tokenizer(pairs_first, pairs_second, truncation="only_first", max_length=max_length)
    _report_truncation(questions.source, [len(ids) for ids in enc["input_ids"]], max_length)
    columns = {k: [v[i : i + n] for i in range(0, len(v), n)] for k, v in enc.items()}
    columns["length"] = [max(len(ids) for ids in group) for group in columns["input_ids"]]
    if questions.answers is not None:
        columns["labels"] = list(questions.answers)
    return Dataset.from_dict(columns)


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
