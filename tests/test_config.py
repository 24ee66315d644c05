"""Config files a user writes by hand: a YAML mistake or bytes that are not UTF-8 are one line naming the file,
line and column (the most common mistake of all), for --config, --define and the ablation's variants."""

import pytest

from mcq.ablate.variants import read_variants
from mcq.cli import main_guard
from mcq.config import load_config
from mcq.errors import ConfigError
from mcq.train import cli as train_cli
from mcq.train.config import TrainConfig


@pytest.mark.parametrize(
    "text, where",
    [
        ("model: x\nseeds: [0, 1\nlr: 1e-3\n", "line 3"),  # an unclosed list
        ("model: x\n  lr: 2\n", "line 2, column 5"),  # a mapping where none may start
        ("model: 'x\n", "line 1"),  # an unclosed quote
    ],
)
def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path, text, where):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and where in message and "\n" not in message


def test_non_utf8_bytes_name_the_line_and_byte(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"model: x\nvalid: caf\xe9.csv\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line 2, column 11: not UTF-8 text \(byte 0xe9\)"):
        load_config(TrainConfig, path)


def test_the_variants_file_and_train_py_report_it_in_one_line(tmp_path, capsys):
    bad = tmp_path / "v.yaml"
    bad.write_text("fast:\n  lr: [1e-3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"v\.yaml: line 3"):
        read_variants(bad)
    rc = main_guard(lambda: train_cli.main(["--config", str(bad)]))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and str(bad) in err and err.count("\n") == 1


def test_every_shipped_config_loads_and_the_demo_reads_with_the_measured_reader():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    shipped = {p.name: load_config(TrainConfig, p) for p in root.glob("*.yaml") if p.name != "ablate-variants.yaml"}
    assert {"demo.yaml", "deberta-v3-large.yaml", "minilm-llmse.yaml", "minilm-open-book.yaml"} <= set(shipped)
    for name in ("demo.yaml", "minilm-open-book.yaml"):  # what read best on stem1k (docs/BENCHMARKS.md, issue 22)
        cfg = shipped[name]
        reader = (cfg.input_layout, cfg.pooling, cfg.context_select, cfg.retrieve_k, cfg.epochs)
        assert reader == ("context-first", "mean", "lexical", 3, 3.0), name
    open_book = shipped["minilm-open-book.yaml"]
    assert open_book.index and open_book.evidence == ["lexical", "dense"]
    assert read_variants(root / "ablate-variants.yaml")
