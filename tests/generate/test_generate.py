"""Tests of mcq.generate and its parts (gen_client, gen_checks, gen_inputs, gen_output): pure
parsing/checking/balancing/dedup, and whole runs against a scripted OpenAI-compatible server on
127.0.0.1 (no network): rejections counted, retries, resume, no key leaks."""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from fixtures_llm_server import start_server

from mcq.cli import main_guard
from mcq.core.data import read_questions
from mcq.errors import ConfigError, DataError, GenerateError
from mcq.generate.checks import (
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
from mcq.generate.cli import build_parser, main
from mcq.generate.client import (
    MAX_RETRY_AFTER_S,
    ChatClient,
    RequestFailed,
    Usage,
    backoff_delay,
    redact_url,
    resolve_endpoints,
    retry_after_seconds,
)
from mcq.generate.config import GenerateConfig
from mcq.generate.inputs import (
    GENERATE_FIELDS,
    PROMPTS,
    VERIFY_FIELDS,
    Passage,
    format_examples,
    load_passages,
    load_template,
)
from mcq.generate.output import AppendFile, plan_slots, read_progress, sidecar
from mcq.generate.run import run_generation
from mcq.secrets import redact

KEY = "sk-test-SECRET123"
MODES = ["good"] * 10 + [
    "fenced",
    "think",
    "malformed",
    "invalid",
    "long",
    "dup",
    "dup",
    "dupx",
    "wrongkey",
    "wrongkey",
    "unsure",
    "r429",
    "r500",
    "slow",
]
EXPECTED_REJECTED = {"parse": 1, "invalid": 1, "length": 1, "duplicate": 2, "verify_wrong": 2, "verify_unclear": 1}
EXPECTED_ACCEPTED = len(MODES) - sum(EXPECTED_REJECTED.values())  # 16
EXAMPLES = [
    ("What is the chemical symbol for gold?", ["Ag", "Au", "Gd", "Go", "Pb"], "B"),
    ("Which planet has the shortest year?", ["Venus", "Earth", "Mercury", "Mars", "Pluto"], "C"),
    ("What particle carries no electric charge?", ["Proton", "Electron", "Positron", "Neutron", "Muon"], "D"),
    ("Which gas makes up most of Earth's atmosphere?", ["Nitrogen", "Oxygen", "Argon", "Carbon dioxide", "Neon"], "A"),
    ("What is the SI unit of force?", ["Joule", "Watt", "Pascal", "Tesla", "Newton"], "E"),
]


@pytest.fixture
def llm():
    state, server = start_server()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_proxy_no_keys(monkeypatch):
    for var in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "MCQ_LLM_BASE_URL",
        "MCQ_LLM_MODEL",
        "MCQ_LLM_API_KEY",
        "OPENAI_API_KEY",
        "MCQ_LLM_VERIFY_BASE_URL",
        "MCQ_LLM_VERIFY_MODEL",
        "MCQ_LLM_VERIFY_API_KEY",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def examples_csv(tmp_path) -> Path:
    path = tmp_path / "examples.csv"
    lines = ["prompt,A,B,C,D,E,answer"] + [",".join([f'"{p}"', *opts, a]) for p, opts, a in EXAMPLES]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def passages_dir(tmp_path) -> Path:
    folder = tmp_path / "passages"
    folder.mkdir()
    counts: Counter[str] = Counter()
    for i, mode in enumerate(MODES):
        counts[mode] += 1
        text = f"[[{mode}-{counts[mode]}]] A passage about science fact {i} for the {mode} case."
        (folder / f"p{i:02d}_{mode}.txt").write_text(text, encoding="utf-8")
    return folder


def config(llm, out, **kw) -> GenerateConfig:
    base = dict(
        out=str(out),
        base_url=llm.base_url,
        model="test-model",
        concurrency=4,
        timeout=1.0,
        backoff=0.01,
        backoff_max=0.05,
        max_retries=3,
        progress=False,
    )
    return GenerateConfig(**{**base, **kw})


def run(llm, out, **kw) -> dict:
    return run_generation(config(llm, out, **kw), api_key=KEY, env={})


def rows_of(path: Path):
    return read_questions(path, require_answer=True)


def assert_true_keys_and_balance(questions) -> None:
    for opts, a in zip(questions.options, questions.answers):
        assert opts[a].startswith("TRUEFACT"), opts
    counts = Counter(questions.answers)
    per_letter = [counts.get(i, 0) for i in range(5)]
    assert max(per_letter) - min(per_letter) <= 1, per_letter


# --------------------------------------------------------------------------------------------------
# whole runs against the scripted server


def test_run_counts_every_rejection_and_keeps_valid_balanced_rows(
    llm, tmp_path, passages_dir, examples_csv, capsys, caplog
):
    caplog.set_level(logging.DEBUG, logger="mcq.generate")
    out = tmp_path / "gen.csv"
    summary = run(llm, out, passages=str(passages_dir), examples=str(examples_csv), shots=2)

    assert summary["accepted"] == EXPECTED_ACCEPTED
    assert summary["rejected"] == EXPECTED_REJECTED
    assert summary["requested"] == len(MODES)
    assert summary["retries"] >= 3  # a 429, a 500 and a timeout
    assert summary["tokens"]["total"] == 15 * summary["requests"]
    questions = rows_of(out)
    assert len(questions) == EXPECTED_ACCEPTED
    assert len(set(questions.ids)) == len(questions) and all(i.startswith("gen-") for i in questions.ids)
    assert len(set(questions.prompts)) == len(questions)
    assert_true_keys_and_balance(questions)
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["id", "prompt", "A", "B", "C", "D", "E", "answer", "source"]
    assert set(frame["source"]) <= {p.name for p in passages_dir.iterdir()}
    assert json.loads(sidecar(out, ".summary.json").read_text()) == summary
    # few-shot examples were in the prompts, and every call carried the key
    assert any("Which planet has the shortest year?" in c.content for c in llm.calls if c.kind == "generate")
    assert {c.auth for c in llm.calls} == {f"Bearer {KEY}"}
    assert_no_key(capsys, caplog, tmp_path)


def assert_no_key(capsys, caplog, folder: Path) -> None:
    captured = capsys.readouterr()
    assert "SECRET123" not in captured.out + captured.err
    assert "SECRET123" not in caplog.text
    for path in folder.rglob("*"):
        if path.is_file():
            assert "SECRET123" not in path.read_text(encoding="utf-8", errors="replace"), path


def test_switching_checks_off_keeps_what_they_would_reject(llm, tmp_path, passages_dir):
    out = tmp_path / "gen.jsonl"
    summary = run(llm, out, passages=str(passages_dir), verify=False, dedup=False, lengths=False, balance=False)
    assert summary["rejected"] == {"parse": 1, "invalid": 1}
    assert summary["accepted"] == len(MODES) - 2
    assert not any(c.kind == "verify" for c in llm.calls)
    questions = rows_of(out)
    assert Counter(questions.answers)[0] >= len(MODES) - 4  # the server's keys (A, or C) untouched


def test_resume_after_limit_does_not_repeat_slots(llm, tmp_path, passages_dir, examples_csv):
    full = run(llm, tmp_path / "full.csv", passages=str(passages_dir), examples=str(examples_csv))
    llm.reset()
    out = tmp_path / "part.csv"
    first = run(llm, out, passages=str(passages_dir), examples=str(examples_csv), limit=7)
    assert first["requested"] == 7 and first["stopped"] == "limit"
    second = run(llm, out, passages=str(passages_dir), examples=str(examples_csv))
    assert second["done_before"] == 7 and second["requested"] == len(MODES) - 7
    third = run(llm, out, passages=str(passages_dir), examples=str(examples_csv))
    assert third["requested"] == 0 and third["rows_in_output"] == full["accepted"]

    questions = rows_of(out)
    assert len(questions) == full["accepted"] == EXPECTED_ACCEPTED
    assert set(questions.prompts) == set(rows_of(tmp_path / "full.csv").prompts)
    assert len(set(questions.ids)) == len(questions)
    assert_true_keys_and_balance(questions)
    # every slot was requested once, rejected ones included (the retry modes' retries aside)
    calls = llm.generation_calls()
    assert len(calls) == len(MODES)
    assert all(n == 1 for (topic, _), n in calls.items() if topic.split("-")[0] not in {"r429", "r500", "slow"})


def test_resume_after_crash_between_row_and_progress(llm, tmp_path, passages_dir, examples_csv, monkeypatch):
    out = tmp_path / "crash.csv"
    real_write = AppendFile.write
    accepted_records = []

    def crashing_write(self, text):
        if self.path.name.endswith(".progress.jsonl") and '"accepted"' in text:
            accepted_records.append(text)
            if len(accepted_records) == 4:
                raise RuntimeError("simulated crash")  # the 4th row is written, its record is not
        return real_write(self, text)

    monkeypatch.setattr(AppendFile, "write", crashing_write)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(llm, out, passages=str(passages_dir), examples=str(examples_csv), concurrency=2)
    monkeypatch.setattr(AppendFile, "write", real_write)
    with open(out, "a", encoding="utf-8") as f:
        f.write('gen-torn,"Half a ro')  # and a torn row from a kill mid-write
    assert json.loads(sidecar(out, ".summary.json").read_text())["stopped"].startswith("RuntimeError")

    summary = run(llm, out, passages=str(passages_dir), examples=str(examples_csv))
    questions = rows_of(out)
    assert len(questions) == EXPECTED_ACCEPTED == summary["rows_in_output"]
    assert len(set(questions.ids)) == len(questions) and len(set(questions.prompts)) == len(questions)
    assert_true_keys_and_balance(questions)


def test_without_passages_jsonl_and_main_with_env(llm, tmp_path, examples_csv, monkeypatch, capsys, caplog):
    monkeypatch.setenv("MCQ_LLM_BASE_URL", llm.base_url)
    monkeypatch.setenv("MCQ_LLM_MODEL", "test-model")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the fallback key variable
    out = tmp_path / "free.jsonl"
    code = main(
        [
            "--out",
            str(out),
            "--n-questions",
            "6",
            "--examples",
            str(examples_csv),
            "--shots",
            "2",
            "--no-progress",
            "--backoff",
            "0.01",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "accepted  6" in printed and "free.jsonl.summary.json" in printed
    questions = rows_of(out)
    assert len(questions) == 6
    assert_true_keys_and_balance(questions)
    assert {c.auth for c in llm.calls} == {f"Bearer {KEY}"}
    assert all("Passage" not in c.content for c in llm.calls)
    assert_no_key(capsys, caplog, tmp_path)


def test_line_breaks_in_replies_never_break_the_output_or_its_resume(llm, tmp_path):
    folder = tmp_path / "cr"
    folder.mkdir()
    for i in (1, 2):
        (folder / f"p{i}.txt").write_text(f"[[carriage-{i}]] A passage about tides {i}.", encoding="utf-8")
    out = tmp_path / "cr.csv"
    assert run(llm, out, passages=str(folder), limit=1)["accepted"] == 1
    assert run(llm, out, passages=str(folder))["accepted"] == 1  # the resume reads the first row back
    questions = rows_of(out)
    assert len(questions) == 2 and all("\nis correct?" in p and "\r" not in p for p in questions.prompts)


def test_a_key_read_from_a_file_keeps_working_and_never_shows(
    llm, tmp_path, examples_csv, monkeypatch, capsys, caplog
):
    monkeypatch.setenv("MCQ_LLM_API_KEY", KEY + "\n")  # open("key.txt").read()
    args = [
        "--out",
        str(tmp_path / "nl.csv"),
        "--n-questions",
        "2",
        "--examples",
        str(examples_csv),
        "--base-url",
        llm.base_url,
        "--model",
        "m",
        "--no-progress",
    ]
    assert main(args) == 0
    assert {c.auth for c in llm.calls} == {f"Bearer {KEY}"}
    monkeypatch.setenv("MCQ_LLM_API_KEY", KEY[:4] + " " + KEY[4:])
    assert main_guard(lambda: main(args)) == 2
    assert "holds a space or control character" in capsys.readouterr().err
    assert_no_key(capsys, caplog, tmp_path)


def test_an_append_after_a_torn_line_starts_a_line_of_its_own(tmp_path):
    path = tmp_path / "o.csv.progress.jsonl"
    path.write_text('{"id": "a", "status": "accepted"}\n{"id": "b", "sta', encoding="utf-8")  # crash mid-write
    f = AppendFile(path)
    f.write('{"id": "c", "status": "accepted"}\n')
    f.close()
    assert [r["id"] for r in read_progress(path)] == ["a", "c"]


def test_an_output_shortened_by_hand_still_resumes(llm, tmp_path, passages_dir, caplog):
    out = tmp_path / "short.csv"
    run(llm, out, passages=str(passages_dir), limit=4, verify=False)
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + 'gen-torn,"Half a ro', encoding="utf-8")  # 3 rows deleted, then a torn one
    run(llm, out, passages=str(passages_dir), limit=2, verify=False)
    assert "shorter" in caplog.text
    questions = rows_of(out)
    assert len(questions) == 3 and "gen-torn" not in questions.ids


def test_custom_templates_are_used(llm, tmp_path, passages_dir):
    gen = tmp_path / "gen.txt"
    gen.write_text("CUSTOM-GEN question $number of $n, $letters\n$passage\n$examples", encoding="utf-8")
    ver = tmp_path / "ver.txt"
    ver.write_text("CUSTOM-VERIFY: answer with a single letter.\n$question\n$options\n", encoding="utf-8")
    run(llm, tmp_path / "t.csv", passages=str(passages_dir), template=str(gen), verify_template=str(ver), limit=3)
    assert all(c.content.startswith("CUSTOM-GEN") for c in llm.calls if c.kind == "generate")
    assert all(c.content.startswith("CUSTOM-VERIFY") for c in llm.calls if c.kind == "verify")
    bad = tmp_path / "bad.txt"
    bad.write_text("$passage $topic", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.txt.*\$topic"):
        run(llm, tmp_path / "u.csv", passages=str(passages_dir), template=str(bad))


def test_wrong_key_stops_with_clear_redacted_error(llm, tmp_path, passages_dir, capsys, caplog):
    llm.required_key = "sk-the-right-one"
    with pytest.raises(GenerateError) as err:
        run(llm, tmp_path / "k.csv", passages=str(passages_dir))
    message = str(err.value)
    assert "401" in message and "API key" in message and llm.base_url in message
    assert "SECRET123" not in message and "***" in message  # the server echoed the header back
    code = main_guard(
        lambda: main(
            [
                "--out",
                str(tmp_path / "k2.csv"),
                "--passages",
                str(passages_dir),
                "--base-url",
                llm.base_url,
                "--model",
                "m",
                "--api-key",
                KEY,
                "--no-progress",
            ]
        )
    )
    assert code == 2
    assert "401" in capsys.readouterr().err
    assert_no_key(capsys, caplog, tmp_path)


def test_wrong_base_url_and_redirects_stop_the_run(llm, tmp_path, passages_dir):
    root = llm.base_url.removesuffix("/v1")
    with pytest.raises(GenerateError, match=r"HTTP 404.*--base-url"):
        run(llm, tmp_path / "a.csv", passages=str(passages_dir), base_url=root)
    llm.reset()
    with pytest.raises(GenerateError, match="redirect"):
        run(llm, tmp_path / "b.csv", passages=str(passages_dir), base_url=root + "/redirect/v1", concurrency=1)
    assert {c.kind for c in llm.calls} == {"redirect"}  # the key was not carried to the new address


def test_unreachable_server_names_url_not_key(tmp_path, passages_dir, caplog, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    cfg = GenerateConfig(
        out=str(tmp_path / "x.csv"),
        passages=str(passages_dir),
        base_url=base,
        model="m",
        max_retries=1,
        backoff=0.01,
        max_failures_in_row=2,
        concurrency=1,
        progress=False,
    )
    with pytest.raises(GenerateError) as err:
        run_generation(cfg, api_key=KEY, env={})
    assert f"127.0.0.1:{port}" in str(err.value) and "cannot connect" in str(err.value)
    assert "SECRET123" not in str(err.value)
    assert read_progress(sidecar(tmp_path / "x.csv", ".progress.jsonl")) == []  # failed slots stay open
    assert_no_key(capsys, caplog, tmp_path)


# --------------------------------------------------------------------------------------------------
# pure functions


def test_parse_reply_forms():
    q = {"prompt": "What is 2+2?", "A": "3", "B": "4", "C": "5", "D": "6", "E": "7", "answer": "B"}
    plain = parse_reply(json.dumps(q))
    assert plain == Candidate("What is 2+2?", ("3", "4", "5", "6", "7"), 1)
    assert parse_reply("Sure:\n```json\n" + json.dumps(q) + "\n```\nDone.") == plain
    assert parse_reply("<think>hmm {not json}</think>\n" + json.dumps(q)) == plain
    assert parse_reply("The question: " + json.dumps(q) + " hope it helps") == plain
    listed = {"question": "What is 2+2?", "options": ["A) 3", "B) 4", "C) 5", "D) 6", "E) 7"], "answer": "(b)"}
    assert parse_reply(json.dumps(listed)) == plain
    assert parse_reply(json.dumps({**q, "answer": "4"})).answer == 1  # the option text
    assert parse_reply(json.dumps({**q, "answer": "B. 4"})).answer == 1
    assert parse_reply(json.dumps({**q, "answer": "F"})).answer is None
    cells = {
        "prompt": "Which cells make antibodies?",
        "A": "T cells",
        "B": "Macrophages",
        "C": "Neutrophils",
        "D": "B cells",
        "E": "NK cells",
    }
    for answer, want in (
        ("B cells.", 3),
        ("D", 3),
        ("Option D", 3),
        ("D) B cells", 3),
        ("the answer is D", 3),
        ("A or C", None),
        ("E. coli", None),
        ("B. T cells", None),
    ):
        assert parse_reply(json.dumps({**cells, "answer": answer})).answer == want, answer
    for bad in ("no json here", '{"prompt": "x"', json.dumps({"A": "1"}), json.dumps({**q, "prompt": 3})):
        with pytest.raises(ReplyError):
            parse_reply(bad)


def problem(found: str | None) -> str:
    """The problem a check reported; None (no problem) fails the test."""
    assert found is not None
    return found


def test_check_question_and_lengths():
    good = Candidate("What is 2+2?", ("3", "4", "5", "6", "7"), 1)
    assert check_question(good) is None
    assert "option C is empty" in problem(check_question(Candidate("Q?", ("3", "4", "", "6", "7"), 1)))
    assert "B and D" in problem(check_question(Candidate("Q?", ("3", "Four", "5", "four.", "7"), 1)))
    for signs in (("+1/2", "-1/2"), ("10^3 m", "10^-3 m"), ("x > 0", "x < 0"), ("H+", "H-")):
        assert check_question(Candidate("Q?", (*signs, "5", "6", "7"), 1)) is None, signs  # different answers
    assert "answer" in problem(check_question(Candidate("Q?", ("3", "4", "5", "6", "7"), None)))
    assert "4 options" in problem(check_question(Candidate("Q?", ("3", "4", "5", "6"), 1)))
    assert check_lengths(good, 5, 100, 1, 10) is None
    assert "prompt" in problem(check_lengths(good, 20, 100, 1, 10))
    assert "option A" in problem(check_lengths(good, 5, 100, 2, 10))


def test_parse_letter():
    for text, want in [
        ("C", 2),
        ("c", 2),
        ("(D)", 3),
        ("E.", 4),
        ("B) Four", 1),
        ("Answer: A", 0),
        ("The answer is **D**.", 3),
        ("<think>A or B?</think>B", 1),
        ("I think it is E", 4),
    ]:
        assert parse_letter(text) == want, text
    for text in ("I cannot tell.", "A or B", ""):
        assert parse_letter(text) is None, text


def test_balance_keeps_letters_within_one_and_the_key_correct():
    rng = random.Random(0)
    counts = [0] * 5
    for i in range(103):
        c = Candidate(f"q{i}", ("right", "w1", "w2", "w3", "w4"), 0)
        placed = place_answer(c, next_key_position(counts, rng), rng)
        assert placed.answer is not None
        assert placed.options[placed.answer] == "right" and sorted(placed.options) == sorted(c.options)
        counts[placed.answer] += 1
        assert max(counts) - min(counts) <= 1
    assert sum(counts) == 103
    assert next_key_position([3, 2, 3, 2, 3], random.Random(1)) in {1, 3}


def test_dedup_threshold():
    reference = "Which organelle produces most of the ATP in a eukaryotic cell?"
    d = Deduper([reference], threshold=0.9)
    assert d.similarity("which organelle produces most of the ATP in a eukaryotic cell") == 1.0
    near = "Which organelle produces most of the ATP in the eukaryotic cell?"  # 'a' -> 'the'
    assert 0.9 <= d.similarity(near) < 1.0 and d.is_duplicate(near)
    assert not Deduper([reference], threshold=0.99).is_duplicate(near)
    assert d.similarity("What is the half-life of carbon-14?") < 0.3
    assert d.add("What is the half-life of carbon-14?") and not d.add("what is the half life of carbon 14")
    assert len(d) == 2
    empty = Deduper([], 0.9)
    assert (
        empty.similarity("anything at all") == 0.0
        and empty.add("anything at all")
        and empty.is_duplicate("Anything at all!")
    )


def test_a_stopping_run_sends_no_new_request(llm, tmp_path):
    """After Ctrl-C or a fatal error, a worker waking from its back-off, or about to verify, sends nothing."""
    gen, _ = resolve_endpoints(config(llm, tmp_path / "s.csv"), {}, api_key=KEY)
    stop = threading.Event()
    client = ChatClient(gen, Usage(), timeout=1.0, max_retries=3, backoff=0.01, backoff_max=0.05, stop=stop)
    assert client.complete([{"role": "user", "content": "[[good-1]] hi"}], 0.0, 16)
    sent = len(llm.calls)
    stop.set()
    with pytest.raises(RequestFailed, match="not sent, the run is stopping"):
        client.complete([{"role": "user", "content": "[[good-2]] hi"}], 0.0, 16)
    assert len(llm.calls) == sent


def test_backoff_and_retry_after():
    rng = random.Random(0)
    assert backoff_delay(0, 1.0, 60, rng, retry_after=0.0) == 0.0
    assert backoff_delay(0, 1.0, 60, rng, retry_after=7200) == MAX_RETRY_AFTER_S
    for attempt, lo, hi in [(0, 0.5, 1.0), (3, 4.0, 8.0), (10, 30.0, 60.0)]:
        assert lo <= backoff_delay(attempt, 1.0, 60.0, rng) <= hi
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert retry_after_seconds("soon") is None


def test_redaction_and_endpoints():
    assert redact(f"header Bearer {KEY} echoed", [KEY, None]) == "header Bearer *** echoed"
    assert redact_url("https://user:pw@api.example/v1?key=abc&x=1") == "https://***@api.example/v1?key=***&x=1"
    cfg = GenerateConfig(out="o.csv", verify_base_url="http://other.example/v1")
    env = {"MCQ_LLM_BASE_URL": "http://127.0.0.1:8000/v1/", "MCQ_LLM_MODEL": "m", "OPENAI_API_KEY": KEY}
    gen, ver = resolve_endpoints(cfg, env)
    assert gen.url == "http://127.0.0.1:8000/v1/chat/completions" and gen.api_key == KEY
    assert ver.api_key is None and ver.model == "m"  # the key is not sent to another server
    assert "SECRET" not in repr(gen)
    assert resolve_endpoints(GenerateConfig(out="o.csv"), {**env, "MCQ_LLM_API_KEY": "k2"})[0].api_key == "k2"
    with pytest.raises(ConfigError, match="MCQ_LLM_BASE_URL"):
        resolve_endpoints(GenerateConfig(out="o.csv"), {})


def test_config_validation():
    with pytest.raises(ConfigError, match="out"):
        GenerateConfig()
    with pytest.raises(ConfigError, match=".csv or .jsonl"):
        GenerateConfig(out="x.parquet")
    with pytest.raises(ConfigError, match="dedup_threshold"):
        GenerateConfig(out="x.csv", dedup_threshold=1.5)
    args = build_parser().parse_args(["--out", "x.csv", "--no-dedup", "--existing", "a.csv", "b.csv"])
    assert args.dedup is False and args.existing == ["a.csv", "b.csv"]


def test_load_passages(tmp_path):
    txt = tmp_path / "wiki.txt"
    txt.write_text("First para\nstill first.\n\n  \nSecond para.\n\n\nFirst para\nstill first.\n", encoding="utf-8")
    assert load_passages(txt) == [
        Passage("wiki.txt#1", "First para\nstill first."),
        Passage("wiki.txt#2", "Second para."),
    ]
    folder = tmp_path / "dir"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("Bee passage.", encoding="utf-8")
    (folder / "sub" / "a.txt").write_text("Ay passage, long enough to cut.", encoding="utf-8")
    (folder / "empty.txt").write_text("  ", encoding="utf-8")
    assert load_passages(folder, max_chars=10) == [Passage("b.txt", "Bee passag"), Passage("sub/a.txt", "Ay passage")]
    table = tmp_path / "t.csv"
    table.write_text('title,context\nx,"One, with comma"\ny,Two\n', encoding="utf-8")
    assert [p.name for p in load_passages(table)] == ["t.csv:row 1", "t.csv:row 2"]
    table.write_text("title,body\nx,One\n", encoding="utf-8")
    with pytest.raises(DataError, match="'text' or 'context'"):
        load_passages(table)


def test_default_templates_render_and_slots_are_stable(examples_csv):
    picks = format_examples(read_questions(examples_csv, require_answer=True), [1])
    assert '"answer": "C"' in picks and "shortest year" in picks
    assert format_examples(None, []) == ""
    for name, fields in [
        ("generate.txt", GENERATE_FIELDS),
        ("generate_no_passage.txt", GENERATE_FIELDS),
        ("verify.txt", VERIFY_FIELDS),
    ]:
        text = load_template(PROMPTS / name, fields).substitute({f: f"<{f}>" for f in fields})
        assert "$" not in text
    passages = [Passage("a", "alpha"), Passage("b", "beta")]
    slots = plan_slots(passages, 3, 99, "m", 0)
    assert len(slots) == 6 and len({s.id for s in slots}) == 6
    assert [s.id for s in slots] == [s.id for s in plan_slots(passages[::-1], 3, 99, "m", 0)][3:] + [
        s.id for s in plan_slots(passages[::-1], 3, 99, "m", 0)
    ][:3]  # ids follow the text, not the order
    assert {s.id for s in slots}.isdisjoint(s.id for s in plan_slots(passages, 3, 99, "m", 1))
    assert len(plan_slots(None, 3, 5, "m", 0)) == 5
