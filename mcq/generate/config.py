"""GenerateConfig: every setting of a generation run, with a help string and a check for each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcq.config import help_field
from mcq.errors import ConfigError


@dataclass
class GenerateConfig:
    """One generation run; the API keys are not part of it (flags or environment only, never saved)."""

    out: str = help_field("", "output file, .csv or .jsonl (appended to; a rerun resumes)")
    passages: str | None = help_field(
        None,
        "grounding passages: a .txt (blank-line separated), a folder of .txt files, "
        "or a CSV/Parquet/JSONL with a 'text' or 'context' column",
    )
    n: int = help_field(1, "questions (requests) per passage")
    n_questions: int = help_field(100, "questions (requests) in all when there are no passages")
    examples: str | None = help_field(None, "question file (with answers) to draw few-shot examples from")
    shots: int = help_field(3, "few-shot examples per request, drawn with the seed (0: zero-shot)")
    existing: list[str] = help_field([], "question files whose prompts the new ones must not near-duplicate")
    template: str | None = help_field(
        None,
        "generation prompt template (default: mcq/generate/prompts/generate.txt, "
        "or generate_no_passage.txt without passages)",
    )
    verify_template: str | None = help_field(
        None, "verification prompt template (default: mcq/generate/prompts/verify.txt)"
    )
    base_url: str | None = help_field(
        None, "OpenAI-compatible API base, e.g. http://127.0.0.1:8000/v1 (env MCQ_LLM_BASE_URL)"
    )
    model: str | None = help_field(None, "model name the server serves (env MCQ_LLM_MODEL)")
    verify_base_url: str | None = help_field(
        None, "API base for verification (default: base_url; env MCQ_LLM_VERIFY_BASE_URL)"
    )
    verify_model: str | None = help_field(None, "model for verification (default: model; env MCQ_LLM_VERIFY_MODEL)")
    temperature: float = help_field(0.8, "sampling temperature of generation requests")
    max_tokens: int = help_field(1024, "completion token limit of a generation request")
    verify_max_tokens: int = help_field(
        16, "completion token limit of a verification request (raise it for reasoning models)"
    )
    json_mode: bool = help_field(
        False, "ask for response_format json_object (vLLM, llama-server and OpenAI support it)"
    )
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
    backoff_max: float = help_field(
        60.0, "longest wait between retries (a server's Retry-After is honoured up to 600 s)"
    )
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
        for name in (
            "n",
            "n_questions",
            "concurrency",
            "max_tokens",
            "verify_max_tokens",
            "max_failures_in_row",
            "passage_max_chars",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in (
            "shots",
            "max_retries",
            "min_prompt_chars",
            "min_option_chars",
            "backoff",
            "backoff_max",
            "temperature",
        ):
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
