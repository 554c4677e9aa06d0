"""--lora through the CLI (tiny BERT): adapters and the head train, the rest stays frozen; the replica is a
plain model any transformers loads, with the adapter beside it; kept weights are the adapter; bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from conftest import EXAMPLE_DATA
from optuna_seqclf.cli.commands import cli
from optuna_seqclf.settings import DEFAULT_LORA_LEARNING_RATES

TUNE = ("--batch-sizes", "8", "--epochs", "1", "--no-track", "--quiet", "--confirm-top", "0", "--pruner", "none")


def test_lora_replicas_are_merged_plain_models_with_the_adapter_beside(workdir: Path, tiny_model: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from optuna_seqclf.predict.predictor import Predictor

    tuned = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--study-name", "lo",
                                     "--lora", "--lora-rank", "4", "--learning-rates", "1e-2", *TUNE])
    assert tuned.exit_code == 0, tuned.output
    trained = CliRunner().invoke(cli, ["train", "--study-name", "lo", "-o", "out", "--seeds", "1,2", "--no-track"])
    assert trained.exit_code == 0, trained.output
    assert "seed(s) 1 from the study's trial(s) 0" in trained.output  # its kept weights: the trial's adapter
    for seed in (1, 2):
        replica = next(p for p in (workdir / "out").iterdir() if p.is_dir() and p.name.endswith(f"_{seed}"))
        assert (replica / "adapter" / "adapter_config.json").is_file()
        adapter = load_file(str(replica / "adapter" / "adapter_model.safetensors"))
        assert any("lora_A" in k for k in adapter) and any("classifier" in k for k in adapter)  # the head with it
        args = json.loads((replica / "training_args.json").read_text())
        assert args["lora"]["rank"] == 4 and args["lora"]["targets"] is None
        # a plain transformers model: the adapters merged into query/value, every other backbone weight frozen
        model = AutoModelForSequenceClassification.from_pretrained(replica)
        base = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2).state_dict()
        weights = model.state_dict()
        assert not any("lora" in k for k in weights)
        layer = "bert.encoder.layer.0.attention"
        query, dense = f"{layer}.self.query.weight", f"{layer}.output.dense.weight"
        assert not torch.equal(weights[query], base[query]) and torch.equal(weights[dense], base[dense])
        texts = [line.split("\t")[0] for line in (EXAMPLE_DATA / "test.txt").read_text().splitlines()[1:] if line]
        ours = [p.label for p in Predictor([replica]).predict(texts)]
        assert ours == (replica / "test_predictions.txt").read_text().splitlines()
    # LoRA is part of the study: a resume without it is another job
    plain = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--study-name", "lo",
                                     "--learning-rates", "1e-2", *TUNE])
    assert plain.exit_code != 0 and "lora" in plain.output


def test_lora_shifts_the_default_learning_rates_up_tenfold(workdir: Path, tiny_model: Path) -> None:
    from optuna_seqclf.cli.commands import _tuning_inputs, tune
    from optuna_seqclf.settings import DEFAULT_LEARNING_RATES

    def rates(*args: str) -> tuple[float, ...]:
        ctx = tune.make_context("tune", [str(EXAMPLE_DATA), "--model", str(tiny_model), "--quiet", *args])
        return _tuning_inputs(ctx.params)[3].learning_rates

    assert rates("--lora") == DEFAULT_LORA_LEARNING_RATES and rates() == DEFAULT_LEARNING_RATES
    assert rates("--lora", "--learning-rates", "1e-3") == (1e-3,)  # given rates are kept
    assert tuple(pytest.approx(10 * lr) for lr in DEFAULT_LEARNING_RATES) == DEFAULT_LORA_LEARNING_RATES


def test_lora_bad_input_is_one_line_before_anything_trains(workdir: Path, tiny_model: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--lora",
                                     "--lora-targets", "q_proj,value", *TUNE])
    assert wrong.exit_code != 0 and "--lora-targets q_proj: no such linear layer" in wrong.output
    assert "Traceback" not in wrong.output and not (workdir / "studies").exists()
    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    missing = CliRunner().invoke(cli, ["tune", str(EXAMPLE_DATA), "--model", str(tiny_model), "--lora", *TUNE])
    assert missing.exit_code != 0 and "pip install 'optuna-seqclf[lora]'" in missing.output
    assert not (workdir / "studies").exists()
