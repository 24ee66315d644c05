"""Generate extra training questions with an LLM behind any OpenAI-compatible chat endpoint.

One request per (passage, question number) slot; each reply goes through switchable checks (parse,
validity, lengths, near-duplicates, a blind verification answer) and, when it passes, is appended to
the output at once with balanced answer letters. A rerun of the same command resumes: slots already
attempted (accepted or rejected) are read back from the output and its `.progress.jsonl` sidecar.

    python -m mcq.generate --passages passages/ --out generated.csv --base-url http://127.0.0.1:8000/v1 --model M

This module runs the slots; the parts are gen_client (HTTP, retries, secrets), gen_checks (parsing and
checking replies), gen_inputs (passages, templates, few-shot examples) and gen_output (rows, progress, resume).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from mcq.core.data import Questions, read_questions
from mcq.errors import DataError, GenerateError
from mcq.generate.checks import (
    LETTERS,
    Candidate,
    Deduper,
    ReplyError,
    check_lengths,
    check_question,
    next_key_position,
    parse_letter,
    parse_reply,
    place_answer,
)
from mcq.generate.client import ChatClient, Endpoint, RequestFailed, Usage, redact_url, resolve_endpoints
from mcq.generate.config import GenerateConfig
from mcq.generate.inputs import (
    GENERATE_FIELDS,
    PROMPTS,
    VERIFY_FIELDS,
    format_examples,
    format_options,
    load_passages,
    load_template,
)
from mcq.generate.output import (
    AppendFile,
    ResumeState,
    Slot,
    format_row,
    load_resume_state,
    output_columns,
    plan_slots,
    sidecar,
)
from mcq.io import atomic_write_text
from mcq.secrets import redact

log = logging.getLogger(__name__)


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
        client = functools.partial(
            ChatClient,
            usage=self.usage,
            timeout=cfg.timeout,
            max_retries=cfg.max_retries,
            backoff=cfg.backoff,
            backoff_max=cfg.backoff_max,
            stop=self.stop,
        )
        self.gen_client = client(gen)
        self.verify_client = client(verifier)
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
            raise DataError(
                f"{self.cfg.examples}: few-shot examples need options A-E, got {''.join(questions.letters)}"
            )
        if len(questions) < self.cfg.shots:
            log.warning(
                "%s: %d question(s), fewer than --shots %d; using all",
                self.cfg.examples,
                len(questions),
                self.cfg.shots,
            )
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
            number=slot.number,
            n=slot.total,
            letters=", ".join(LETTERS),
        )
        return [{"role": "user", "content": text}]

    def verify_messages(self, slot: Slot, options: Sequence[str], question: str) -> list[dict]:
        text = self.verify_template.substitute(
            question=question,
            options=format_options(options),
            letters=", ".join(LETTERS),
            passage=slot.passage.text if slot.passage else "",
            source=slot.passage.name if slot.passage else "",
        )
        return [{"role": "user", "content": text}]

    # -- worker thread: one slot from request to a checked candidate --

    def attempt(self, slot: Slot) -> Outcome:
        """Request one question and run the checks that need no shared state (in a worker thread)."""
        cfg = self.cfg
        try:
            reply = self.gen_client.complete(
                self.generation_messages(slot),
                cfg.temperature,
                cfg.max_tokens,
                seed=slot.seed % 2**31,
                json_mode=cfg.json_mode,
            )
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
            problem = check_lengths(
                candidate, cfg.min_prompt_chars, cfg.max_prompt_chars, cfg.min_option_chars, cfg.max_option_chars
            )
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
        assert candidate is not None  # handle() passes only outcomes with a candidate
        if self.cfg.dedup and not self.deduper.add(candidate.prompt):
            self.reject(Outcome(slot, reason="duplicate", detail="near-duplicate of a question kept meanwhile"))
            return
        rng = random.Random(slot.seed + 2)
        if self.cfg.balance:
            candidate = place_answer(candidate, next_key_position(self.key_counts, rng), rng)
        assert candidate.answer is not None  # check_question rejected unreadable keys; place_answer keeps one
        row = {
            "id": slot.id,
            "prompt": candidate.prompt,
            **dict(zip(LETTERS, candidate.options)),
            "answer": LETTERS[candidate.answer],
            "source": slot.passage.name if slot.passage else "",
        }
        if self.cfg.write_context:
            row["context"] = slot.passage.text if slot.passage else ""
        offset = self.writer.write(format_row(row, self.columns, self.fmt))
        self.progress.write(json.dumps({"id": slot.id, "status": "accepted", "offset": offset}) + "\n")
        self.key_counts[candidate.answer] += 1
        self.accepted += 1

    def reject(self, outcome: Outcome) -> None:
        """Count the rejection and record the slot as done (failed requests excepted)."""
        assert outcome.reason is not None  # every Outcome without a candidate is built with a reason
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
        self.deduper = Deduper(
            self._reference_prompts(state.prompts), self.cfg.dedup_threshold, [p.text for p in self.passages or []]
        )
        slots = plan_slots(self.passages, self.cfg.n, self.cfg.n_questions, self.gen_endpoint.model, self.cfg.seed)
        open_slots = [s for s in slots if s.id not in state.done]
        todo = open_slots if self.cfg.limit is None else open_slots[: self.cfg.limit]
        log.info(
            "%d slot(s) planned, %d done earlier, %d to request from %s (model %s)",
            len(slots),
            len(slots) - len(open_slots),
            len(todo),
            self.gen_endpoint.shown_url,
            self.gen_endpoint.model,
        )
        header = ",".join(self.columns) + "\n" if self.fmt == "csv" else ""
        self.writer = AppendFile(self.out, header)
        self.progress = AppendFile(sidecar(self.out, ".progress.jsonl"))
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
                if in_flight:
                    log.warning(
                        "stopping: %d request(s) in flight end within --timeout (%gs) and are not kept; "
                        "no new request is sent (Ctrl-C again to quit at once)",
                        len(in_flight),
                        self.cfg.timeout,
                    )
            pool.shutdown(wait=finished, cancel_futures=True)

    def summary(self, counts: tuple[int, int, int], state: ResumeState, stopped: str | None, seconds: float) -> dict:
        """What the run did, for <out>.summary.json: counts, rejections by reason, retries, tokens."""
        planned, done_before, requested = counts
        cfg = asdict(self.cfg)
        cfg["base_url"], cfg["verify_base_url"] = (
            redact_url(self.gen_endpoint.base_url),
            redact_url(self.verify_endpoint.base_url),
        )
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


def run_generation(
    cfg: GenerateConfig,
    api_key: str | None = None,
    verify_api_key: str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict:
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
