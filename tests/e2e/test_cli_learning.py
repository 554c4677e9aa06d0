"""The tiny model really learns on the SST-2 sample: dev F1 well above the majority-class baseline."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import SST2_2K
from optuna_seqclf.cli.commands import cli


@pytest.mark.slow
@pytest.mark.skipif(not (SST2_2K / "train.txt").exists(), reason="needs ../shared/data/sst2-2k")
def test_tiny_bert_learns_sst2(workdir: Path, tiny_model: Path) -> None:
    result = CliRunner().invoke(cli, [
        "run", str(SST2_2K), "--model", str(tiny_model), "--batch-sizes", "16", "--learning-rates", "1e-3",
        "--epochs", "3", "--max-seq-length", "64", "--seeds", "1", "--output-dir", "out", "--no-track",
    ])
    assert result.exit_code == 0, result.output
    dev_labels = [line.rsplit("\t", 1)[1] for line in (SST2_2K / "dev.txt").read_text().splitlines()[1:]]
    majority = Counter(dev_labels).most_common(1)[0][1] / len(dev_labels)
    # Always predicting the majority class: accuracy = its share, macro-F1 = half its F1.
    majority_macro_f1 = (2 * majority / (1 + majority)) / 2
    summary = json.loads((workdir / "out" / "replicas_summary.json").read_text())
    replica = summary["replicas"][0]
    assert replica["dev_f1"] > majority_macro_f1 + 0.2, (replica, majority_macro_f1)
    assert replica["dev_accuracy"] > majority + 0.1
    assert replica["test_f1"] > 0.6
    assert replica["failed_run"] is None and summary["failed_runs"] == []  # a model that learns is not flagged
