"""Frozen, validated settings: identity (what a study records) apart from machine knobs."""

from __future__ import annotations

import pytest

from optuna_seqclf import ConfigError, HParams, MachineSettings, SearchSpace, TrainSettings
from optuna_seqclf.settings import parse_float_list, parse_int_list, parse_seeds


def test_train_settings_hold_only_what_makes_trials_comparable() -> None:
    settings = TrainSettings(model="m", epochs=2)
    assert settings.epochs == 2.0 and settings.epochs_label == "2" and settings.tokenizer_name == "m"
    assert not {"device", "precision", "threads", "eval_batch_size"} & set(vars(settings))


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"device": "gpu"}, "^device 'gpu'"), ({"precision": "fp8"}, "^precision 'fp8'"),
    ({"threads": 0}, "^threads must be above 0"), ({"eval_batch_size": 0}, "^eval_batch_size must be above 0"),
])
def test_machine_settings_refuse_bad_values(kwargs: dict[str, object], says: str) -> None:
    """A library error names the field a Python caller set, never a command-line flag."""
    with pytest.raises(ConfigError, match=says) as caught:
        MachineSettings(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == next(iter(kwargs)) and "--" not in str(caught.value)


def test_the_command_line_names_its_flag_where_the_library_names_the_field() -> None:
    from optuna_seqclf.cli.options import flag_message

    with pytest.raises(ConfigError) as caught:
        TrainSettings(model="m", max_steps=0)
    assert str(caught.value) == "max_steps must be above 0, got 0"
    assert flag_message(caught.value) == "--max-steps must be above 0, got 0"
    assert flag_message(ConfigError("study name 'x/y' is not allowed")) == "study name 'x/y' is not allowed"


def test_batching_is_one_of_the_known_ways() -> None:
    with pytest.raises(ConfigError, match=r"^batching 'sorted': use one of random, grouped, grouped-sh") as caught:
        TrainSettings(model="m", batching="sorted")
    assert caught.value.field == "batching"


def test_grid_values_become_plain_numbers_in_order() -> None:
    space = SearchSpace((16, 8), (1e-4, 5e-5))
    assert space.points() == [HParams(16, 1e-4), HParams(16, 5e-5), HParams(8, 1e-4), HParams(8, 5e-5)]
    assert len(space) == 4 and space.as_grid() == {"batch_size": [16, 8], "learning_rate": [1e-4, 5e-5]}
    with pytest.raises(ConfigError, match="repeated"):
        SearchSpace((8, 8), (1e-4,))


def test_list_parsers_name_the_option() -> None:
    assert parse_int_list("8, 16", "--batch-sizes") == (8, 16)
    assert parse_float_list("1e-4,5e-5", "--learning-rates") == (1e-4, 5e-5)
    with pytest.raises(ConfigError, match="--batch-sizes: 'x' is not a whole number"):
        parse_int_list("8,x", "--batch-sizes")
    with pytest.raises(ConfigError, match="repeated seed"):
        parse_seeds("1,1")


def test_metric_names() -> None:
    from optuna_seqclf.settings import METRICS, Metric

    for name in METRICS:
        assert Metric.of_record(Metric(name).stored) == Metric(name)
    assert Metric().stored == "dev_macro_f1"  # what every study before --metric recorded
    assert (Metric("mcc").key, Metric("mcc").label, Metric("macro-f1").short) == ("mcc", "MCC", "F1")
    with pytest.raises(ConfigError, match=r"^metric 'f2': use one of macro-f1, micro-f1, accuracy, mcc"):
        Metric("f2")


def test_batching_auto_is_the_task_s_and_a_given_one_is_kept() -> None:
    assert TrainSettings(model="m").batching == "grouped-shuffled"
    assert TrainSettings(model="m", task="regression").batching == "grouped-shuffled"
    assert TrainSettings(model="m", task="multi-label").batching == "random"  # bench/RESULTS.md "Issue 25"
    assert TrainSettings(model="m", task="multi-label", batching="grouped-shuffled").batching == "grouped-shuffled"
