"""A damaged exported model folder is one line naming the folder and what to do, in infer.py and in the kernel,
before any model loads: metadata of the wrong shape, truncated JSON, truncated weights."""

import json
import shutil

import pytest
from conftest import write_questions

from mcq.cli import main_guard
from mcq.core.export import check_model_folder
from mcq.core.model import export_untrained
from mcq.errors import ModelFolderError
from mcq.infer import cli as infer_cli


@pytest.fixture(scope="module")
def good(tiny_deberta, tmp_path_factory):
    return export_untrained(tiny_deberta, tmp_path_factory.mktemp("good") / "seed0", 0, 48)


def damage_meta(value):
    def damage(folder):
        (folder / "mcq_model.json").write_text(json.dumps(value(json.loads((folder / "mcq_model.json").read_text()))))

    return damage


def truncate(name, keep=0.5):
    def damage(folder):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * keep)])

    return damage


CASES = {
    "meta is a list": (damage_meta(lambda m: [m]), "mcq_model.json: expected a JSON object"),
    "no max_length": (damage_meta(lambda m: {k: v for k, v in m.items() if k != "max_length"}), "no 'max_length'"),
    "max_length not an integer": (
        damage_meta(lambda m: m | {"max_length": "256"}),
        "'max_length' must be a positive integer",
    ),
    "truncated config.json": (truncate("config.json"), "config.json: not valid JSON"),
    "truncated tokenizer.json": (truncate("tokenizer.json"), "tokenizer.json: not valid JSON"),
    "truncated weights": (truncate("model.safetensors", 0.9), "model.safetensors: truncated or damaged"),
    "weights shorter than their header": (
        truncate("model.safetensors", 0.0001),
        "model.safetensors: truncated or damaged",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_damaged_folder_is_named_before_any_model_loads(good, tmp_path, case, capsys, monkeypatch):
    damage, message = CASES[case]
    folder = tmp_path / "seed0"
    shutil.copytree(good, folder)
    damage(folder)
    with pytest.raises(ModelFolderError, match=message):
        check_model_folder(folder)
    import mcq.core.predict

    monkeypatch.setattr(mcq.core.predict, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    test = write_questions(tmp_path / "t.csv", 3, seed=1, answers=False)
    argv = ["--models", str(folder), "--test", str(test), "--out", str(tmp_path / "o" / "s.csv")]
    assert main_guard(lambda: infer_cli.main(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder}") and err.count("\n") == 1 and message.split(":")[-1].strip() in err


def test_a_sound_folder_passes_and_keeps_its_metadata(good):
    meta = check_model_folder(good)
    assert meta["max_length"] == 48 and meta["seed"] == 0
