"""`python -m mcq.retrieve build|context` in this process: the question table kept as it was but for its
context, the output format taken from --out, one error line for a user error, and a light --help."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT

from mcq.cli import main_guard
from mcq.retrieve.cli import main

TOPICS = [
    ("Volcano", "Magma rises through the crust and erupts from a volcano as lava and ash."),
    ("Jupiter", "Jupiter is the largest planet in the solar system, a gas giant with a great red spot."),
    ("Insulin", "The pancreas releases the hormone insulin to lower the sugar level in the blood."),
    ("Penicillin", "Alexander Fleming discovered penicillin, the first antibiotic, in a mould in 1928."),
]
QUESTIONS = {
    "id": ["007", "008", "009"],
    "prompt": ["Who discovered penicillin?", "What erupts from a volcano?", "Which planet is the largest?"],
    "A": ["Fleming", "lava", "Jupiter"],
    "B": ["Curie", "water", "Mars"],
    "C": ["Darwin", "", "Venus"],
    "answer": ["A", "A", "A"],
    "note": ["keep me", "", "me too"],
}
BEST = ["Penicillin:", "Volcano:", "Jupiter:"]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    pd.DataFrame([{"title": t, "text": x} for t, x in TOPICS]).to_csv(folder / "corpus.csv", index=False)
    assert main(["build", "--corpus", str(folder / "corpus.csv"), "--out", str(folder / "index")]) == 0
    return folder / "index"


def context(index, questions, out, *extra: str) -> int:
    return main(["context", "--index", str(index), "--questions", str(questions), "--out", str(out), *extra])


def test_build_prints_what_it_indexed(tmp_path, capsys):
    pd.DataFrame([{"title": t, "text": x} for t, x in TOPICS]).to_csv(tmp_path / "corpus.csv", index=False)
    code = main(
        [
            "build",
            "--corpus",
            str(tmp_path / "corpus.csv"),
            "--out",
            str(tmp_path / "ix"),
            "--retriever",
            "tfidf",
            "--max-words",
            "50",
            "--overlap-words",
            "5",
            "--no-title",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"index {tmp_path / 'ix'}: 4 passages from 4 articles (0 duplicates dropped), tfidf" in out
    from mcq.retrieve.index import read_manifest

    passages = read_manifest(tmp_path / "ix")["settings"]["passages"]
    assert passages == {"max_words": 50, "overlap_words": 5, "min_words": 5, "title_in_text": False}


def test_context_keeps_every_column_and_row_and_inserts_context_after_the_prompt(index, tmp_path, capsys):
    pd.DataFrame(QUESTIONS).to_csv(tmp_path / "q.csv", index=False)
    code = context(index, str(tmp_path / "q.csv"), str(tmp_path / "out.csv"), "--k", "1")
    assert code == 0
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert list(out.columns) == ["id", "prompt", "context", "A", "B", "C", "answer", "note"]
    for column, values in QUESTIONS.items():
        assert out[column].tolist() == values, column  # ids keep their zeros, blanks stay blank
    assert [c.split(" ")[0] for c in out["context"]] == BEST
    assert "\n" not in "".join(out["context"])  # k=1: one passage each
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "q.csv"]  # no temporary file left
    assert "3 questions with context (k=1, 0 without a match)" in capsys.readouterr().out


def test_context_replaces_an_existing_context_column_in_place(index, tmp_path):
    frame = pd.DataFrame(QUESTIONS)
    frame.insert(5, "context", ["old one", "old two", "old three"])
    frame.to_csv(tmp_path / "q.csv", index=False)
    assert context(index, str(tmp_path / "q.csv"), str(tmp_path / "q.csv")) == 0
    out = pd.read_csv(tmp_path / "q.csv", dtype=str, keep_default_na=False)
    assert list(out.columns) == list(frame.columns)
    assert [c.split(" ")[0] for c in out["context"]] == BEST
    assert out["note"].tolist() == QUESTIONS["note"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.csv"]


def test_context_writes_the_format_of_the_out_suffix(index, tmp_path):
    pd.DataFrame(QUESTIONS).to_csv(tmp_path / "q.csv", index=False)
    args = ["context", "--index", str(index), "--questions", str(tmp_path / "q.csv"), "--max-chars", "60"]
    assert main([*args, "--out", str(tmp_path / "out.parquet")]) == 0
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.columns) == ["id", "prompt", "context", "A", "B", "C", "answer", "note"]
    assert out["id"].tolist() == QUESTIONS["id"] and out["note"].tolist() == QUESTIONS["note"]
    assert [c.split(" ")[0] for c in out["context"]] == BEST
    assert all(len(c) <= 60 for c in out["context"])
    assert main([*args, "--out", str(tmp_path / "out.jsonl")]) == 0
    lines = pd.read_json(tmp_path / "out.jsonl", lines=True, dtype=False)
    assert list(lines.columns) == list(out.columns) and lines["context"].tolist() == out["context"].tolist()
    assert lines["id"].tolist() == QUESTIONS["id"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.parquet", "q.csv"]


def test_context_reads_parquet_and_writes_tsv(index, tmp_path):
    pd.DataFrame(QUESTIONS).to_parquet(tmp_path / "q.parquet", index=False)
    assert context(index, str(tmp_path / "q.parquet"), str(tmp_path / "out.tsv")) == 0
    out = pd.read_csv(tmp_path / "out.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert out["prompt"].tolist() == QUESTIONS["prompt"] and list(out.columns)[2] == "context"


def guarded(argv, capsys) -> tuple[int, list[str]]:
    code = main_guard(lambda: main(argv))
    return code, capsys.readouterr().err.splitlines()


def test_a_missing_corpus_is_one_error_line(tmp_path, capsys):
    code, err = guarded(["build", "--corpus", str(tmp_path / "nowhere.csv"), "--out", str(tmp_path / "ix")], capsys)
    errors = [line for line in err if line.startswith("error:")]
    assert code == 2 and len(errors) == 1
    assert str(tmp_path / "nowhere.csv") in errors[0] and "no such corpus" in errors[0]
    assert not any("Traceback" in line for line in err)
    assert list(tmp_path.iterdir()) == []


def test_bad_passage_flags_are_one_error_line(tmp_path, capsys):
    (tmp_path / "c.csv").write_text("text\nhello world\n")
    code, err = guarded(
        [
            "build",
            "--corpus",
            str(tmp_path / "c.csv"),
            "--out",
            str(tmp_path / "ix"),
            "--max-words",
            "20",
            "--overlap-words",
            "10",
        ],
        capsys,
    )
    assert code == 2 and [line for line in err if line.startswith("error:")] == [
        "error: overlap_words: need 0 <= overlap < max_words / 2 (10), got 10"
    ]


def test_a_dense_weight_outside_0_to_1_is_refused_when_parsed(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["build", "--corpus", "c.csv", "--out", str(tmp_path / "ix"), "--retriever", "hybrid",
              "--dense-weight", "1.5"])  # fmt: skip
    assert exit_.value.code == 2 and "--dense-weight: must be a number from 0 to 1, got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "ix").exists()


def test_context_errors_name_the_missing_file_or_index(index, tmp_path, capsys):
    code, err = guarded(
        ["context", "--index", str(index), "--questions", str(tmp_path / "q.csv"), "--out", str(tmp_path / "o.csv")],
        capsys,
    )
    assert code == 2 and err == [f"error: {tmp_path / 'q.csv'}: no such question file"]
    pd.DataFrame(QUESTIONS).to_csv(tmp_path / "q.csv", index=False)
    code, err = guarded(
        [
            "context",
            "--index",
            str(tmp_path / "noindex"),
            "--questions",
            str(tmp_path / "q.csv"),
            "--out",
            str(tmp_path / "o.csv"),
        ],
        capsys,
    )
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and "build" in err[0]
    assert not (tmp_path / "o.csv").exists()


def test_help_imports_no_heavy_library():
    code = (
        "import runpy, sys\n"
        "from mcq.retrieve.cli import build_parser\n"
        "for argv in (['build', '--help'], ['context', '--help']):\n"
        "    try:\n        build_parser().parse_args(argv)\n    except SystemExit:\n        pass\n"
        "sys.argv = ['mcq.retrieve', '--help']\n"
        "try:\n    runpy.run_module('mcq.retrieve', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'transformers', 'sentence_transformers', 'pandas', 'pyarrow', 'sklearn', 'scipy', "
        "'bm25s', 'faiss')\n"
        "print(sorted(k for k in heavy if k in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("usage:") == 3 and "--text-column" in proc.stdout and "--max-chars" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout.splitlines()[-1]


def test_context_out_an_existing_folder_is_one_line(index, tmp_path, capsys):
    pd.DataFrame(QUESTIONS).to_csv(tmp_path / "q.csv", index=False)
    (tmp_path / "folder").mkdir()
    code, err = guarded(["context", "--index", str(index), "--questions", str(tmp_path / "q.csv"),
                         "--out", str(tmp_path / "folder")], capsys)  # fmt: skip
    assert code == 2 and len(err) == 1 and "is a folder; give the question file to write" in err[0]


def test_tfidf_over_stop_words_only_is_one_line(tmp_path, capsys):
    pd.DataFrame({"text": ["the of and a is", "to in it was the"]}).to_csv(tmp_path / "c.csv", index=False)
    code, err = guarded(["build", "--corpus", str(tmp_path / "c.csv"), "--out", str(tmp_path / "ix"),
                         "--retriever", "tfidf"], capsys)  # fmt: skip
    errors = [line for line in err if line.startswith("error:")]  # the other lines are the progress bar
    assert code == 2 and len(errors) == 1 and "no word to index" in errors[0] and "Traceback" not in "".join(err)
    assert not (tmp_path / "ix").exists() and not list(tmp_path.glob(".ix.tmp-*"))


def test_verify_checks_every_checksum_and_names_a_damaged_file(index, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(index, copy)
    code, err = guarded(["verify", "--index", str(copy)], capsys)
    assert code == 0
    passages = copy / "passages.jsonl"
    data = bytearray(passages.read_bytes())
    data[3] ^= 0x20
    passages.write_bytes(bytes(data))
    code, err = guarded(["verify", "--index", str(copy)], capsys)
    assert code == 2 and len(err) == 1 and "passages.jsonl: its checksum differs" in err[0]
