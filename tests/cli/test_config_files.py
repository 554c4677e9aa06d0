"""--config files: keys checked against each command's options, values against their types, the file under the
command line, and the resolved configuration printed back as a file that reads to the same values."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT
from optuna_seqclf.cli.commands import cli


def _config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _resolved(*args: str) -> dict[str, str]:
    result = CliRunner().invoke(cli, ["config", *args])
    assert result.exit_code == 0, result.output
    return dict(line.split(" = ", 1) for line in result.output.splitlines() if " = " in line and line[0] != "#")


def test_file_under_flags_over_defaults(tmp_path: Path) -> None:
    path = _config(tmp_path / "c.toml", 'epochs = 3\nmetric = "accuracy"\n[tune]\nbatch-sizes = [8, 16]\nseed = 7\n')
    values = _resolved("tune", "data", "--config", str(path), "--seed", "2")
    assert values["epochs"] == "3.0" and values["metric"] == '"accuracy"' and values["batch-sizes"] == "[8, 16]"
    assert values["seed"] == "2"  # the flag wins over the file
    assert values["max-seq-length"] == "128"  # not in the file: the default
    assert _resolved("train", "--config", str(path))["seeds"] == "[1, 2, 3, 4, 5]"  # [tune] keys stay in [tune]


def test_printed_config_round_trips(tmp_path: Path) -> None:
    first = CliRunner().invoke(cli, ["config", "run", "my data", "--learning-rates", "1e-3,5e-5", "--epochs", "2",
                                     "--output-dir", "out", "--text-pair-column", "hypo", "--no-track"])
    assert first.exit_code == 0, first.output
    path = _config(tmp_path / "resolved.toml", first.output)
    again = CliRunner().invoke(cli, ["config", "run", "--config", str(path)])
    assert again.exit_code == 0 and again.output == first.output
    assert 'learning-rates = [0.001, 5e-05]' in first.output and '# model = (not set' in first.output


def test_yaml_works_too(tmp_path: Path) -> None:
    path = _config(tmp_path / "c.yaml", "epochs: 2\ntrain:\n  seeds: [3, 4]\n  output-dir: out\n")
    assert _resolved("train", "--config", str(path))["seeds"] == "[3, 4]"
    assert _resolved("tune", "d", "--config", str(path))["epochs"] == "2.0"


def test_missing_required_values_print_as_comments() -> None:
    result = CliRunner().invoke(cli, ["config", "tune"])
    assert result.exit_code == 0 and "# data-dir = (required)" in result.output


@pytest.mark.parametrize(("name", "text", "message"), [
    ("c.toml", "epoch = 3\n", "c.toml: unknown key 'epoch' (did you mean 'epochs'?)"),
    ("c.toml", "[tune]\nseeds = [1, 2]\n", "c.toml: [tune] unknown key 'seeds'"),
    ("c.toml", "[tunes]\nepochs = 3\n", "c.toml: unknown section [tunes]"),
    ("c.toml", 'epochs = "four"\n', 'c.toml: epochs: expected a number, got "four"'),
    ("c.toml", "max-steps = 2.5\n", "c.toml: max-steps: expected a whole number, got 2.5"),
    ("c.toml", "batch-sizes = [8, \"x\"]\n", "batch-sizes: expected a list of numbers"),
    ("c.toml", "batch-sizes = \"8,x\"\n", "c.toml: batch-sizes: --batch-sizes: 'x' is not a whole number"),
    ("c.toml", "quiet = 1\n", "c.toml: quiet: expected true or false, got 1"),
    ("c.toml", 'metric = "f2"\n', "c.toml: metric: 'f2' is not one of"),
    ("c.toml", "model = 3\n", "c.toml: model: expected a string, got 3"),
    ("c.toml", "[tune\n", "c.toml: not valid TOML (Expected ']'"),
    ("c.yaml", "epochs: [1\n", "c.yaml: not valid YAML at line 2"),
    ("c.yaml", "- epochs\n", "c.yaml: the top level must be a table"),
    ("c.json", "{}", "use a .toml, .yaml or .yml file"),
])
def test_bad_config_is_one_line_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                                   text: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    path = _config(tmp_path / name, text)
    result = CliRunner().invoke(cli, ["tune", str(ROOT / "examples" / "data" / "sentiment"), "--config", str(path)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no studies/, no logs/


def test_missing_config_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "nope.toml: cannot be read (No such file or directory)" in result.output


@pytest.mark.parametrize("example", ["reference.toml", "quick-cpu.toml"])
def test_examples_read(example: str) -> None:
    path = str(ROOT / "examples" / example)
    tune = _resolved("tune", "--config", path)
    train = _resolved("train", "--config", path)
    run = _resolved("run", "--config", path)
    assert tune["data-dir"] == run["data-dir"] == '"examples/data/sentiment"'
    assert train["output-dir"] == run["output-dir"] and tune["study-name"] == train["study-name"]
    if example == "reference.toml":
        assert tune["batch-sizes"] == "[8, 16, 32]" and tune["epochs"] == "4.0" and tune["seed"] == "1"
        assert len(tune["learning-rates"].split(",")) == 12 and train["seeds"] == "[1, 2, 3, 4, 5]"


def test_predict_takes_its_model_from_its_own_section_only(tmp_path: Path) -> None:
    path = _config(tmp_path / "c.toml", 'model = "pretrained/minilm"\ntext-column = "text"\n'
                                        '[predict]\ninput = "new.csv"\n')
    result = CliRunner().invoke(cli, ["config", "predict", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "# model = (required)" in result.output  # the trained model to predict with is not tune's --model
    assert 'input = "new.csv"' in result.output and 'text-column = "text"' in result.output
    assert _resolved("tune", "d", "--config", str(path))["model"] == '"pretrained/minilm"'
