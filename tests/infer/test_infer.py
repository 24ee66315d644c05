"""Inference: exported folders -> checked ensemble submission; the bad-folder errors; the CLI."""

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import write_questions

from mcq.cli import main_guard
from mcq.core.batching import token_budget_batches
from mcq.core.data import read_questions
from mcq.core.export import META_FILE, find_model_folders
from mcq.core.metrics import mean_logits
from mcq.core.model import export_untrained
from mcq.errors import ModelFolderError
from mcq.infer import cli as infer_cli
from mcq.infer.config import InferConfig
from mcq.infer.run import run_inference


def export_random(backbone, dest, seed, max_length=48, fp16=False):
    return export_untrained(backbone, dest, seed, max_length, fp16=fp16)


@pytest.fixture
def models(tiny_deberta, tmp_path):
    return [export_random(tiny_deberta, tmp_path / "models" / f"seed{s}", s) for s in range(3)]


def test_ensemble_submission_logits_and_scores(models, question_files, tmp_path):
    out = tmp_path / "out" / "submission.csv"
    result = run_inference(InferConfig(models=[tmp_path / "models"], test=question_files["valid"], out=out))
    sub = pd.read_csv(out, dtype=str)
    valid = read_questions(question_files["valid"])
    assert list(sub.columns) == ["id", "prediction"] and sub["id"].tolist() == valid.ids
    assert all(len(set(p.split())) == 3 for p in sub["prediction"])
    per_model = [np.load(out.parent / f"logits_seed{s}.npy") for s in range(3)]
    ensemble = np.load(out.parent / "logits_ensemble.npy")
    np.testing.assert_allclose(ensemble, mean_logits(per_model), rtol=1e-6)
    assert not np.allclose(per_model[0], per_model[1])
    assert set(result.map3) == {"seed0", "seed1", "seed2", "ensemble"}
    top = np.argmax(ensemble, axis=1)
    assert [p.split()[0] for p in sub["prediction"]] == ["ABCDE"[i] for i in top]


def test_leftovers_of_an_interrupted_export_are_never_ensembled(models, tiny_deberta, tmp_path, caplog):
    """A crash while a seed is scored leaves `.seedN.tmp-PID` holding a whole model and its metadata."""
    shutil.copytree(models[0], tmp_path / "models" / ".seed0.tmp-99999")
    shutil.copytree(models[1], tmp_path / "models" / ".seed1.old-12345")
    assert find_model_folders([tmp_path / "models"]) == models
    assert "ignoring" in caplog.text and ".seed0.tmp-99999" in caplog.text
    export_random(tiny_deberta, tmp_path / "models" / "seed0", 0)  # the next export of seed0 cleans its own
    assert not (tmp_path / "models" / ".seed0.tmp-99999").exists()
    assert (tmp_path / "models" / ".seed1.old-12345").exists()  # another seed's: left to its own export


def test_weights_shift_the_ensemble(models, question_files, tmp_path):
    run_inference(
        InferConfig(models=models, test=question_files["valid"], out=tmp_path / "a" / "s.csv", weights=[1, 0, 0])
    )
    only_first = np.load(tmp_path / "a" / "logits_ensemble.npy")
    np.testing.assert_allclose(only_first, np.load(tmp_path / "a" / "logits_seed0.npy"), rtol=1e-6)
    with pytest.raises(ValueError, match="2 weights for 3 models"):
        run_inference(
            InferConfig(models=models, test=question_files["valid"], out=tmp_path / "b" / "s.csv", weights=[1, 1])
        )


def test_batching_and_fp16_export_give_the_same_logits(tiny_deberta, question_files, tmp_path):
    full = export_random(tiny_deberta, tmp_path / "fp32" / "m", 0)
    half = export_random(tiny_deberta, tmp_path / "fp16" / "m", 0, fp16=True)
    run_inference(
        InferConfig(models=[full], test=question_files["valid"], out=tmp_path / "x" / "s.csv", batch_tokens=1)
    )
    run_inference(
        InferConfig(models=[full], test=question_files["valid"], out=tmp_path / "y" / "s.csv", batch_tokens=10**6)
    )
    run_inference(InferConfig(models=[half], test=question_files["valid"], out=tmp_path / "z" / "s.csv"))
    a, b, c = (np.load(tmp_path / d / "logits_m.npy") for d in "xyz")
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=5e-3)  # fp16 weights
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size


def test_token_budget_batches_longest_first_within_budget():
    lengths = [10, 50, 20, 8, 49]
    batches = token_budget_batches(lengths, n_options=5, budget=5 * 56 * 2)
    assert sorted(i for b in batches for i in b) == list(range(5))
    assert batches[0][0] == 1  # the longest question opens the first batch
    for b in batches:
        width = -(-max(lengths[i] for i in b) // 8) * 8
        assert len(b) * 5 * width <= 5 * 56 * 2 or len(b) == 1
    assert token_budget_batches([300], 5, 10) == [[0]]


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no_weights", "model.safetensors"),
        ("no_tokenizer", "tokenizer.json"),
        ("no_meta", META_FILE),
        ("bad_meta", "not valid JSON"),
        ("not_a_folder", "not a folder"),
    ],
)
def test_broken_model_folder_fails_before_predicting(models, question_files, tmp_path, breakage, message):
    folder = models[1]
    if breakage == "no_weights":
        (folder / "model.safetensors").unlink()
    elif breakage == "no_tokenizer":
        (folder / "tokenizer.json").unlink()
    elif breakage == "no_meta":
        (folder / META_FILE).unlink()
    elif breakage == "bad_meta":
        (folder / META_FILE).write_text("{")
    else:
        shutil.rmtree(folder)
    out = tmp_path / "o" / "submission.csv"
    with pytest.raises(ModelFolderError, match=message) as err:
        run_inference(InferConfig(models=models, test=question_files["valid"], out=out))
    assert str(folder) in str(err.value)
    assert not out.parent.exists(), "nothing may be written when a model folder is bad"


def test_models_that_disagree_on_tokenizer_or_length_fail(models, tiny_bert, question_files, tmp_path):
    bert = export_random(tiny_bert, tmp_path / "bert" / "m", 0)
    with pytest.raises(ModelFolderError, match="disagree on the tokenizer"):
        run_inference(
            InferConfig(models=[models[0], bert], test=question_files["valid"], out=tmp_path / "o" / "s.csv")
        )
    meta = json.loads((models[2] / META_FILE).read_text())
    meta["max_length"] = 64
    (models[2] / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match="max_length"):
        run_inference(InferConfig(models=models, test=question_files["valid"], out=tmp_path / "o" / "s.csv"))
    result = run_inference(
        InferConfig(
            models=[models[0], bert], test=question_files["valid"], out=tmp_path / "o" / "s.csv", allow_mixed=True
        )
    )
    assert len(result.models) == 2


def test_cli_writes_submission_and_prints_map(models, question_files, tmp_path, capsys):
    out = tmp_path / "cli" / "submission.csv"
    assert (
        infer_cli.main(
            ["--models", str(tmp_path / "models"), "--test", str(question_files["test"]), "--out", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "MAP@3" not in printed  # the test file has no answers
    assert f"submission: {out.resolve()}" in printed
    infer_cli.main(["--models", *map(str, models), "--test", str(question_files["valid"]), "--out", str(out)])
    assert "MAP@3 ensemble:" in capsys.readouterr().out


def test_cli_bad_input_is_one_clear_line(models, tmp_path, capsys):
    bad = tmp_path / "test.csv"
    bad.write_text("id,prompt,A,B\n1,q,a\n")
    rc = main_guard(
        lambda: infer_cli.main(["--models", str(models[0]), "--test", str(bad), "--out", str(tmp_path / "s.csv")])
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and "line 2" in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()


def test_token_budget_batches_close_where_the_padded_width_steps_down():
    # widths (multiple of 8): 24, 24, 16, 16, 8 -> never pad a question by 8 or more tokens
    lengths = [17, 24, 9, 16, 3]
    batches = token_budget_batches(lengths, n_options=1, budget=10**6)
    assert batches == [[1, 0], [3, 2], [4]]


def test_parallel_loads_leave_the_default_dtype_alone(models):
    """One load per GPU runs in threads; transformers sets the process-wide default dtype while loading."""
    import threading

    import torch

    from mcq.core.predict import from_pretrained

    for _ in range(5):
        threads = [threading.Thread(target=from_pretrained, args=(m, torch.float16)) for m in models * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert torch.get_default_dtype() == torch.float32


def test_fewer_questions_than_devices(models, question_files):
    """One model, two devices (T4x2), one question: no device gets an empty shard."""
    import torch

    from mcq.core.predict import inspect_models, models_logits

    one = read_questions(question_files["valid"]).head(1)
    two_devices = [torch.device("cpu"), torch.device("cpu")]
    [logits] = models_logits(inspect_models(models[:1]), one, devices=two_devices)
    [alone] = models_logits(inspect_models(models[:1]), one, devices=two_devices[:1])
    assert logits.shape == (1, 5)
    np.testing.assert_allclose(logits, alone, rtol=1e-5)
    three = read_questions(question_files["valid"]).head(3)  # uneven shards: 2 + 1
    [sharded] = models_logits(inspect_models(models[:1]), three, devices=two_devices)
    [whole] = models_logits(inspect_models(models[:1]), three, devices=two_devices[:1])
    np.testing.assert_allclose(sharded, whole, rtol=1e-5, atol=1e-6)


def test_a_two_option_test_file_gets_a_two_letter_submission(models, tmp_path):
    from conftest import write_questions

    test = write_questions(tmp_path / "two.csv", 6, seed=4, letters="AB")
    result = run_inference(InferConfig(models=models, test=test, out=tmp_path / "two" / "submission.csv"))
    sub = pd.read_csv(result.submission, dtype=str)
    assert all(sorted(p.split()) == ["A", "B"] for p in sub["prediction"])
    assert set(result.map3) == {"seed0", "seed1", "seed2", "ensemble"}


def test_cli_flags_are_checked_before_any_model_loads(models, question_files, tmp_path, capsys, monkeypatch):
    """Wrong --weights count, a negative weight, --batch-tokens 0 and --out a folder: one line, exit 2, no model
    loaded and nothing written."""
    import mcq.core.predict

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the flags were checked")

    monkeypatch.setattr(mcq.core.predict, "load_model", no_load)
    base = ["--models", str(tmp_path / "models"), "--test", str(question_files["valid"])]
    out = ["--out", str(tmp_path / "o" / "s.csv")]
    assert main_guard(lambda: infer_cli.main([*base, *out, "--weights", "1", "1"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --weights: 2 weights for 3 models") and err.count("\n") == 1
    for flags in (["--weights", "1", "-1", "1"], ["--weights", "1", "nan", "1"], ["--batch-tokens", "0"]):
        with pytest.raises(SystemExit) as exit_:
            infer_cli.main([*base, *out, *flags])
        assert exit_.value.code == 2
        assert "must be" in capsys.readouterr().err
    (tmp_path / "dir").mkdir()
    assert main_guard(lambda: infer_cli.main([*base, "--out", str(tmp_path / "dir")])) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not list((tmp_path / "dir").iterdir())


def test_inference_scores_every_question_of_a_syntactically_valid_file(models, tmp_path, caplog):
    """The kernel must submit for any hidden test.csv: an option of 600 tokens, an empty prompt and a question
    whose options are all empty degrade with a warning naming them, never stop the run."""
    test = tmp_path / "hard.csv"
    long = " ".join(["atom", "energy", "wave"] * 200)
    test.write_text(
        "id,prompt,A,B,C,D,E\n"
        f"long,which wave is it,{long},light,heat,mass,force\n"
        "noprompt,,gravity,mass,heat,light,atom\n"
        "blank,what is an atom,,,,,\n"
        "fine,what is heat,energy,mass,light,atom,wave\n",
        encoding="utf-8",
    )
    caplog.set_level("WARNING")
    result = run_inference(InferConfig(models=models, test=test, out=tmp_path / "out" / "submission.csv"))
    sub = pd.read_csv(result.submission, dtype=str, keep_default_na=False)
    assert sub["id"].tolist() == ["long", "noprompt", "blank", "fine"]
    assert all(len(set(p.split())) == 3 for p in sub["prediction"])
    assert sub["prediction"][2] == "A B C"  # nothing to rank: the first letters, in order
    text = caplog.text
    assert "option(s) longer than max_length 48" in text and "long A (" in text
    assert "empty prompt" in text and "id noprompt" in text
    assert "every option empty" in text and "id blank" in text


def test_a_full_disk_at_the_submission_keeps_the_previous_one_and_names_it(
    models, question_files, tmp_path, capsys, monkeypatch
):
    import errno

    out = tmp_path / "out" / "submission.csv"
    argv = ["--models", str(tmp_path / "models"), "--test", str(question_files["test"]), "--out", str(out)]
    assert infer_cli.main(argv) == 0
    before = out.read_text()

    def disk_full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    capsys.readouterr()
    assert main_guard(lambda: infer_cli.main(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: could not be written (No space left on device)") and err.count("\n") == 1
    assert out.read_text() == before and not list(out.parent.glob(".submission.csv.*"))


def test_a_max_length_too_small_to_hold_a_question_is_refused_at_once(capsys):
    for value in ("4", "15"):
        with pytest.raises(SystemExit):
            infer_cli.main(["--models", "m", "--test", "t.csv", "--max-length", value])
        assert "--max-length: must be at least 16" in capsys.readouterr().err


def test_an_extra_option_column_is_not_scored_as_a_sixth_option(models, tmp_path, caplog):
    """Models trained on A-E score A-E: an F column in the test file is dropped with a warning."""
    import pandas as pd

    test = write_questions(tmp_path / "f.csv", 4, seed=3, answers=False, letters="ABCDEF")
    caplog.set_level("WARNING")
    result = run_inference(InferConfig(models=[str(m) for m in models], test=str(test), out=str(tmp_path / "s.csv")))
    sub = pd.read_csv(result.submission, dtype=str)
    assert all(set(p.split()) <= set("ABCDE") for p in sub["prediction"])
    assert "column(s) F" in caplog.text and "trained on A-E" in caplog.text


def test_the_record_written_last_vouches_for_the_files_of_one_run(models, question_files, tmp_path, monkeypatch):
    """A kill between the logits and the submission must not leave a pair that looks like one run's."""
    import hashlib

    import mcq.infer.run

    out = tmp_path / "o" / "submission.csv"
    cfg = InferConfig(models=[str(m) for m in models], test=str(question_files["valid"]), out=str(out))
    run_inference(cfg)
    record = json.loads((out.parent / "inference.json").read_text())
    assert set(record["files"]) == {"submission.csv", "logits_ensemble.npy", *(f"logits_{m.name}.npy" for m in models)}
    for name, digest in record["files"].items():
        assert hashlib.sha256((out.parent / name).read_bytes()).hexdigest() == digest

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if killed after the new logits, before the submission

    monkeypatch.setattr(mcq.infer.run, "write_submission", killed)
    with pytest.raises(KeyboardInterrupt):
        run_inference(dataclasses.replace(cfg, test=str(question_files["test"])))
    assert not (out.parent / "inference.json").exists() and out.exists()
